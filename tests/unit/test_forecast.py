"""The dashboard's forecast: how long the credit lasts at the recent pace, and whether it then
runs out or expires. A fixed clock, fake lots, no app."""

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

from portal.ledger.forecast import EXPIRES, RUNS_OUT, burn_per_day, forecast

T = datetime(2026, 11, 27, 3, 0, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)
WEEK = timedelta(days=7)
YEN = 1000


@dataclass
class FakeLot:
    id: int
    remaining: int
    expires_at: datetime
    kind: str = "purchase"
    issued_at: datetime = T - DAY
    refunded_at: datetime | None = None


def at_pace(lots, yen_a_day):
    return forecast(lots, spent=yen_a_day * 7 * YEN, window=WEEK, now=T)


def test_without_spending_the_credit_lasts_until_its_last_lot_expires():
    lots = [FakeLot(1, 500 * YEN, T + 10 * DAY), FakeLot(2, 300 * YEN, T + 80 * DAY)]
    result = forecast(lots, spent=0, window=WEEK, now=T)
    assert (result.lasts_until, result.ending) == (T + 80 * DAY, EXPIRES)
    assert result.expires_unused == 800 * YEN and result.daily_burn == 0 and not result.spending


def test_spending_that_uses_the_credit_before_expiry_runs_out():
    result = at_pace([FakeLot(1, 50 * YEN, T + 90 * DAY)], 10)
    assert (result.lasts_until, result.ending, result.expires_unused) == (T + 5 * DAY, RUNS_OUT, 0)
    assert result.daily_burn == 10 * YEN


def test_credit_spent_exactly_as_it_expires_runs_out_and_none_is_lost():
    result = at_pace([FakeLot(1, 50 * YEN, T + 5 * DAY)], 10)
    assert (result.lasts_until, result.ending, result.expires_unused) == (T + 5 * DAY, RUNS_OUT, 0)


def test_one_yen_more_than_the_pace_can_spend_expires_on_the_same_day():
    result = at_pace([FakeLot(1, 51 * YEN, T + 5 * DAY)], 10)
    assert (result.lasts_until, result.ending, result.expires_unused) == (T + 5 * DAY, EXPIRES, 1 * YEN)


def test_later_lots_are_still_spent_after_the_first_one_expires():
    lots = [FakeLot(1, 100 * YEN, T + 2 * DAY), FakeLot(2, 30 * YEN, T + 90 * DAY)]
    result = at_pace(lots, 10)
    # ¥20 of the first lot is spent in two days, ¥80 expires with it; the second lasts three more days.
    assert (result.lasts_until, result.ending, result.expires_unused) == (T + 5 * DAY, RUNS_OUT, 80 * YEN)


def test_when_the_last_lot_expires_before_the_pace_reaches_its_end_the_credit_expires():
    lots = [FakeLot(1, 20 * YEN, T + 2 * DAY), FakeLot(2, 500 * YEN, T + 30 * DAY)]
    result = at_pace(lots, 10)
    assert (result.lasts_until, result.ending) == (T + 30 * DAY, EXPIRES)
    assert result.expires_unused == 500 * YEN - 28 * 10 * YEN


def test_a_lot_expiring_with_the_one_being_spent_is_lost_whole():
    lots = [FakeLot(1, 100 * YEN, T + 10 * DAY, issued_at=T - 2 * DAY), FakeLot(2, 40 * YEN, T + 10 * DAY),
            FakeLot(3, 10 * YEN, T + 60 * DAY)]
    result = at_pace(lots, 10)  # the older lot takes all ten days; the other expires untouched beside it
    assert (result.lasts_until, result.ending, result.expires_unused) == (T + 11 * DAY, RUNS_OUT, 40 * YEN)


def test_expired_and_empty_lots_are_not_credit():
    lots = [FakeLot(1, 100 * YEN, T), FakeLot(2, 0, T + 9 * DAY)]
    result = at_pace(lots, 10)
    assert (result.lasts_until, result.ending, result.expires_unused) == (None, None, 0)


@pytest.mark.parametrize(("spent_in_a_week", "per_day"), [
    (0, 0), (1, 0), (3_499, 0), (3_500, 1 * YEN), (70 * YEN, 10 * YEN), (73_500, 11 * YEN), (73_499, 10 * YEN),
])
def test_the_burn_rate_is_whole_yen_rounded_half_up(spent_in_a_week, per_day):
    assert burn_per_day(spent_in_a_week, WEEK) == per_day
    assert forecast([], spent=spent_in_a_week, window=WEEK, now=T).spending is (spent_in_a_week > 0)


def test_what_expires_unused_is_a_whole_number_of_yen():
    lots = [FakeLot(1, 30 * YEN + 600, T + 2 * DAY), FakeLot(2, 10 * YEN, T + 90 * DAY)]
    assert at_pace(lots, 10).expires_unused == 11 * YEN  # ¥10.6 of the first lot expires unused
