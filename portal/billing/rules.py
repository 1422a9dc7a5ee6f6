"""Billing rules as pure functions: quotes and consumption tax, purchase status, refunds
turned into credit, registration numbers. No database, no Flask, no gateway."""

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from portal.accounts.models import TaxResidency
from portal.billing.models import DisputeStatus, PurchaseStatus
from portal.ledger.rules import MILLI_YEN

JAPAN_TAX_RATE = 10
MAX_PURCHASE_YEN = 1_000_000
KONBINI_MAX_YEN = 300_000  # Stripe's ceiling for a convenience-store payment
RETURN_INVOICE_THRESHOLD_YEN = 10_000  # below this a return invoice is not required (small returns)
REGISTRATION_NUMBER = re.compile(r"T\d{13}")
SEARCHABLE_DAYS = (date(2000, 1, 1), date(2099, 12, 31))  # invoices are searched by days within these
RESUME_OPEN_PURCHASE_FOR = timedelta(hours=1)  # a confirmation repeated within this finds the open purchase
CHECKOUT_STARTING_FOR = timedelta(minutes=2)  # an open purchase without a checkout yet is being started


class DayOutOfRange(ValueError):
    """A real calendar day, but outside SEARCHABLE_DAYS."""


class AmountError(ValueError):
    """The amount cannot be bought; `reason` is "not_whole", "too_small" or "too_large"."""

    def __init__(self, reason: str, minimum: int, maximum: int):
        super().__init__(reason)
        self.reason, self.minimum, self.maximum = reason, minimum, maximum


@dataclass(frozen=True)
class Quote:
    """What the customer confirms: credit granted (= price without tax), tax, total."""

    amount_yen: int
    tax_rate: int
    tax_yen: int
    total_yen: int

    @property
    def credit(self) -> int:
        """The credit granted, in milli-yen: 1 credit = ¥1 excluding tax."""
        return self.amount_yen * MILLI_YEN

    @property
    def konbini_allowed(self) -> bool:
        return self.total_yen <= KONBINI_MAX_YEN


def tax_rate_for(residency: TaxResidency) -> int:
    return JAPAN_TAX_RATE if residency == TaxResidency.JP else 0


def tax_on(amount_yen: int, rate: int) -> int:
    """Consumption tax on a tax-excluded amount, rounded down once per document and rate."""
    return amount_yen * rate // 100


def tax_within(total_yen: int, rate: int) -> int:
    """The tax contained in a tax-included amount (for refunds), rounded down."""
    return total_yen * rate // (100 + rate)


def parse_amount(raw: str) -> int:
    """Whole yen from what a person typed: "1000", "1,000", "¥1,000", full-width digits."""
    text = unicodedata.normalize("NFKC", raw or "").strip().replace(",", "").replace("¥", "").replace("円", "")
    if not re.fullmatch(r"\d{1,9}", text):
        raise ValueError("not a whole number of yen")
    return int(text)


def search_day(raw: str) -> date:
    """A day to search invoices by, written 2026-11-27: ValueError when it is not a date,
    DayOutOfRange when it lies outside SEARCHABLE_DAYS."""
    day = date.fromisoformat(raw.strip())
    if not SEARCHABLE_DAYS[0] <= day <= SEARCHABLE_DAYS[1]:
        raise DayOutOfRange(day.isoformat())
    return day


def quote(*, amount_yen: int, residency: TaxResidency, minimum: int, maximum: int = MAX_PURCHASE_YEN) -> Quote:
    if amount_yen < minimum:
        raise AmountError("too_small", minimum, maximum)
    if amount_yen > maximum:
        raise AmountError("too_large", minimum, maximum)
    rate = tax_rate_for(residency)
    tax = tax_on(amount_yen, rate)
    return Quote(amount_yen, rate, tax, amount_yen + tax)


def credit_to_take_back(*, refunded_yen: int, total_yen: int, amount_yen: int) -> int:
    """Credit (milli-yen) that a cumulative refund of `refunded_yen` of a payment of
    `total_yen` (tax included) stands for, rounded up and never more than the credit bought:
    a full refund takes back all of it, half a refund half of it."""
    if refunded_yen >= total_yen:
        return amount_yen * MILLI_YEN
    return min(amount_yen * MILLI_YEN, -(-refunded_yen * amount_yen * MILLI_YEN // total_yen))


def resumable(*, created_at: datetime, has_checkout: bool, same_terms: bool, now: datetime) -> bool:
    """Whether confirming a quote again continues the account's open purchase of that quote
    rather than replacing it: it is recent, addressed as the billing profile is now, and its
    checkout exists or is being opened at this moment."""
    age = now - created_at
    return same_terms and age < RESUME_OPEN_PURCHASE_FOR and (has_checkout or age < CHECKOUT_STARTING_FOR)


_RANK = {PurchaseStatus.OPEN: 0, PurchaseStatus.AWAITING: 1, PurchaseStatus.FAILED: 2, PurchaseStatus.EXPIRED: 2,
         PurchaseStatus.PAID: 3}


def next_status(current: PurchaseStatus, reported: PurchaseStatus) -> PurchaseStatus:
    """Purchase status only moves forward, so events handled in any order agree: a paid
    purchase stays paid; a failure never overwrites a payment."""
    return reported if _RANK[reported] > _RANK[current] else current


_DISPUTE_RANK = {None: 0, DisputeStatus.OPEN: 1, DisputeStatus.WON: 2, DisputeStatus.LOST: 2}


def next_dispute_status(current: DisputeStatus | None, reported: DisputeStatus | None) -> DisputeStatus | None:
    return reported if _DISPUTE_RANK[reported] > _DISPUTE_RANK[current] else current


def valid_registration_number(number: str) -> bool:
    """A qualified invoice issuer number: "T" and 13 digits; for a corporation the digits are
    its corporate number, whose first digit is a check digit (個人 numbers use the same rule)."""
    if not REGISTRATION_NUMBER.fullmatch(number):
        return False
    digits = [int(d) for d in number[1:]]
    body = digits[1:]
    total = sum(d * (1 if i % 2 == 0 else 2) for i, d in enumerate(reversed(body)))
    return digits[0] == 9 - total % 9
