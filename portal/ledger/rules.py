"""The ledger's rules as pure functions of their inputs and `now`. No database, no Flask."""

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Protocol, Sequence

PURCHASE_LIFETIME = timedelta(days=90)
TRIAL_LIFETIME = timedelta(days=90)
GRANT_LIFETIME = timedelta(days=90)
MILLI_YEN = 1000
# A credit line's lot (postpay) stays open until this moment unless the line is suspended: its
# `expires_at` says until when the line can be spent, not when credit is lost.
LINE_OPEN = datetime(9999, 12, 31, tzinfo=timezone.utc)


class LotKind(StrEnum):
    """Where a lot's credit came from."""

    TRIAL = "trial"
    PURCHASE = "purchase"
    GRANT = "grant"
    ADJUSTMENT = "adjustment"
    LINE = "line"  # a postpay credit line: amount = the limit, never expires, spent after every prepaid lot


class TransactionKind(StrEnum):
    """What a journal line did to the balance."""

    GRANT = "grant"
    DEBIT = "debit"
    HOLD = "hold"
    RELEASE = "release"
    EXPIRE = "expire"
    REFUND = "refund"
    LINE = "line"  # on a credit line itself: opened, limit changed, an invoice's payment given back


class LotLike(Protocol):
    id: int | None
    kind: str
    remaining: int
    issued_at: datetime
    expires_at: datetime


class InsufficientCredit(Exception):
    """The live balance cannot cover the amount; nothing was changed."""

    def __init__(self, needed: int, available: int):
        super().__init__(f"needed {needed} milli-yen, {available} available")
        self.needed, self.available = needed, available


class LotTooLong(ValueError):
    """A lot may live at most six months (Payment Services Act: outside prepaid instruments)."""


class ReasonTooLong(ValueError):
    """A reason longer than its column holds: refused, never cut short."""


def check_reason(reason: str, limit: int) -> None:
    if len(reason) > limit:
        raise ReasonTooLong(f"a reason has at most {limit} characters, this one {len(reason)}")


def add_months(moment: datetime, months: int) -> datetime:
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, [31, 29 if _leap(year) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1])
    return moment.replace(year=year, month=month, day=day)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def check_lifetime(issued_at: datetime, expires_at: datetime, kind: str = LotKind.GRANT) -> None:
    """Prepaid lots live at most six months; a credit line (postpay, not a prepaid instrument)
    has no expiry."""
    if expires_at <= issued_at:
        raise LotTooLong("a lot must expire after it is issued")
    if kind != LotKind.LINE and expires_at > add_months(issued_at, 6):
        raise LotTooLong("a lot may live at most six months")


def purchase_expiry(paid_at: datetime) -> datetime:
    """Purchased credit lasts exactly 90 days from the moment the payment was confirmed."""
    return paid_at + PURCHASE_LIFETIME


def is_live(lot: LotLike, now: datetime) -> bool:
    """Spendable until the second before `expires_at`, not at it; never once refunded. A credit
    line's `expires_at` is LINE_OPEN, or the moment it was suspended."""
    return lot.remaining > 0 and now < lot.expires_at and getattr(lot, "refunded_at", None) is None


def is_due(lot: LotLike, now: datetime) -> bool:
    """A prepaid lot past its expiry is written off; a suspended credit line never is (what is
    left on it comes back when the line resumes)."""
    return lot.kind != LotKind.LINE and lot.remaining > 0 and now >= lot.expires_at


def burn_key(lot: LotLike):
    """Every prepaid lot before a credit line; then soonest expiry first, then trial before
    paid, then oldest, then id."""
    return (lot.kind == LotKind.LINE, lot.expires_at, 0 if lot.kind == LotKind.TRIAL else 1, lot.issued_at, lot.id or 0)


def burn_order(lots: Sequence[LotLike], now: datetime) -> list[LotLike]:
    return sorted((lot for lot in lots if is_live(lot, now)), key=burn_key)


@dataclass(frozen=True)
class Take:
    lot: LotLike
    amount: int


def split(lots: Sequence[LotLike], amount: int, now: datetime) -> list[Take]:
    """How `amount` is taken from the live lots in burn order; InsufficientCredit if short."""
    if amount <= 0:
        raise ValueError("amount must be positive")
    takes, left = [], amount
    for lot in burn_order(lots, now):
        if left == 0:
            break
        taken = min(lot.remaining, left)
        takes.append(Take(lot, taken))
        left -= taken
    if left:
        raise InsufficientCredit(amount, amount - left)
    return takes


def available(lots: Sequence[LotLike], now: datetime) -> int:
    return sum(lot.remaining for lot in lots if is_live(lot, now))


def assign_charge(parts: Sequence[tuple[LotLike, int]], charged: int) -> list[tuple[LotLike, int]]:
    """Of a hold's parts (in burn order), which part of each is returned when `charged` is
    kept: the charge is taken from the lots that burn first, the rest goes back."""
    returns, left = [], charged
    for lot, amount in parts:
        kept = min(amount, left)
        left -= kept
        if amount - kept:
            returns.append((lot, amount - kept))
    return returns
