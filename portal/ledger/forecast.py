"""How long the credit lasts at the recent pace: a pure rule of the live lots, what was spent in
the recent window, and `now`. Spending goes on at the window's average pace through the lots in
burn order; a lot that reaches its expiry before the pace has spent it loses the rest, and the
later lots carry on. The credit ends when the last of it is spent (it runs out) or expires."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

from portal.ledger.rules import MILLI_YEN, LotLike, burn_order

RUNS_OUT, EXPIRES = "runs_out", "expires"


@dataclass(frozen=True)
class Forecast:
    daily_burn: int  # milli-yen a day, rounded to whole yen (half up)
    spending: bool  # anything was spent in the window, even under ¥0.5 a day
    lasts_until: datetime | None  # when the last credit is gone; None without live credit
    ending: str | None  # RUNS_OUT or EXPIRES: what happens at `lasts_until`
    expires_unused: int  # milli-yen that expires before the pace reaches it, rounded to whole yen


def burn_per_day(spent: int, window: timedelta) -> int:
    """The window's average spending a day, in milli-yen rounded to whole yen, half up."""
    day, span = timedelta(days=1) // timedelta(microseconds=1), window // timedelta(microseconds=1)
    return _whole_yen(spent * day, span)


def _whole_yen(numerator: int, denominator: int) -> int:
    """numerator / denominator milli-yen, rounded to whole yen (half up), in milli-yen."""
    return (2 * numerator + MILLI_YEN * denominator) // (2 * MILLI_YEN * denominator) * MILLI_YEN


def forecast(lots: Sequence[LotLike], *, spent: int, window: timedelta, now: datetime) -> Forecast:
    """`spent`: milli-yen spent in the `window` up to `now`. With nothing spent, every lot
    simply lasts until it expires. Credit spent exactly as its lot expires counts as run out."""
    window_us = window // timedelta(microseconds=1)
    moment, ending, lost = now, None, 0
    for lot in burn_order(lots, now):
        left_us = max(lot.expires_at - moment, timedelta(0)) // timedelta(microseconds=1)
        if spent and lot.remaining * window_us <= left_us * spent:
            moment, ending = moment + timedelta(microseconds=lot.remaining * window_us // spent), RUNS_OUT
        else:
            lost += lot.remaining - left_us * spent // window_us
            moment, ending = lot.expires_at, EXPIRES
    return Forecast(daily_burn=burn_per_day(spent, window), spending=spent > 0,
                    lasts_until=moment if ending else None, ending=ending, expires_unused=_whole_yen(lost, 1))
