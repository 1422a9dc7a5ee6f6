"""Postpay rules as pure functions: the Japan-time month, due dates, tax once per invoice, what a
payment gives back to the line, the overdue steps, the line's figures. No database, no Flask."""

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from portal.clock import JST
from portal.ledger.rules import MILLI_YEN

CLOSE_GRACE = timedelta(minutes=5)  # a month closes this long after midnight: no request still books into it
REMIND_AGAIN_AFTER = 7  # days after the first reminder (itself the day after the due date)
WARN_AT = (80, 100)  # percent of the limit used that the owners are told about, once per crossing
MAX_LIMIT_YEN = 100_000_000
MONTH = re.compile(r"(\d{4})-(\d{2})")


class PostpayError(Exception):
    """A postpay request that breaks a rule; the message says which."""


class BadMonth(PostpayError):
    pass


class MonthNotOver(PostpayError):
    pass


@dataclass(frozen=True)
class Month:
    year: int
    month: int

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    def next(self) -> "Month":
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> "Month":
        return Month(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    @property
    def last_day(self) -> date:
        return self.next().first_day - timedelta(days=1)

    @property
    def ends_at(self) -> datetime:
        """Midnight Japan time at the start of the next month: usage before it is this month's."""
        return datetime.combine(self.next().first_day, time(0), tzinfo=JST)


def parse_month(raw: str) -> Month:
    found = MONTH.fullmatch(raw.strip())
    if not found or not 1 <= int(found.group(2)) <= 12:
        raise BadMonth(f"{raw!r} is not a month: give YYYY-MM")
    return Month(int(found.group(1)), int(found.group(2)))


def month_of(moment: datetime) -> Month:
    """The Japan-time month a moment belongs to (23:59:59.999 on the last day is still in it)."""
    local = moment.astimezone(JST)
    return Month(local.year, local.month)


def last_closable(now: datetime) -> Month:
    """The latest month that may be closed at `now`: the previous Japan-time month, once its end
    is CLOSE_GRACE behind."""
    return month_of(now - CLOSE_GRACE).previous()


def check_closable(month: Month, now: datetime) -> None:
    if now < month.ends_at + CLOSE_GRACE:
        raise MonthNotOver(f"{month} can be closed from {(month.ends_at + CLOSE_GRACE).astimezone(JST):%Y-%m-%d %H:%M} "
                           "Japan time")


def due_date(month: Month, due_days: int | None) -> date:
    """月末締め翌月末払い: the end of the following month, unless the contract says the invoice
    is due a number of days after it is issued (the 1st of the following month)."""
    if due_days is None:
        return month.next().last_day
    return month.next().first_day + timedelta(days=due_days)


def tax_on(subtotal_yen: int, rate: int) -> int:
    """Consumption tax, once per invoice and rate, rounded down."""
    return subtotal_yen * rate // 100


def line_yen(usage: int) -> int:
    """An invoice line in whole yen: the usage in milli-yen, a fraction of a yen dropped."""
    return usage // MILLI_YEN


def invoiced(products: Mapping) -> bool:
    """Whether the usage by product (each with `usage` in milli-yen) makes an invoice: its lines
    in whole yen come to more than ¥0 and so does the usage it covers. Otherwise nothing is
    written and the usage waits, unbilled, for a later month."""
    usages = [item.usage for item in products.values()]
    return sum(line_yen(value) for value in usages if value) > 0 and sum(usages) > 0


def restored_by(*, paid_before: int, paying: int, total_yen: int, usage: int, restored_before: int) -> int:
    """The usage (milli-yen, tax excluded) a payment gives back to the line: the invoice's usage
    in proportion to what is paid of its total (usage and tax alike), rounded down; the payment
    that settles the invoice gives back the rest, so a paid invoice has given back all of it."""
    if paid_before + paying >= total_yen:
        return usage - restored_before
    return usage * (paid_before + paying) // total_yen - restored_before


def days_overdue(due_on: date, today: date) -> int:
    return (today - due_on).days


def japan_day(now: datetime) -> date:
    return now.astimezone(JST).date()


def reminder_due(due_on: date, today: date) -> int:
    """Which reminder is due today at the latest: 0 none, 1 the day after the due date, 2 seven
    days after that."""
    overdue = days_overdue(due_on, today)
    if overdue >= 1 + REMIND_AGAIN_AFTER:
        return 2
    return 1 if overdue >= 1 else 0


def suspension_due(due_on: date, today: date, after_days: int) -> bool:
    """Live sends on the line stop once an invoice is more than `after_days` overdue."""
    return days_overdue(due_on, today) > after_days


@dataclass(frozen=True)
class LineFigures:
    """The line as the customer reads it, in milli-yen: the limit (tax excluded), what is used
    (unbilled usage + the unpaid part of invoices + what calls in progress set aside on it), and
    what is available for sends now (0 while suspended)."""

    limit: int
    used: int
    available: int
    suspended: bool

    @property
    def percent_used(self) -> int:
        return self.used * 100 // self.limit if self.limit else 0


def figures(*, limit: int, remaining: int, suspended: bool) -> LineFigures:
    return LineFigures(limit=limit, used=limit - remaining, available=0 if suspended else remaining,
                       suspended=suspended)


def warning_due(percent_used: int, warned: int) -> int | None:
    """The highest of WARN_AT reached and not told yet, or None."""
    reached = [level for level in WARN_AT if percent_used >= level and level > warned]
    return max(reached) if reached else None


def rearmed(percent_used: int, warned: int) -> int:
    """After usage went down (a payment), the warnings below the new usage are armed again."""
    return max([level for level in WARN_AT if percent_used >= level and level <= warned], default=0)


# -- the bank account to pay into ---------------------------------------------------------------

KATAKANA = re.compile(r"[\u30A0-\u30FF\uFF66-\uFF9F()（）．.・ 　\-ー]+")
ACCOUNT_TYPES = {"普通": "普通", "当座": "当座", "ordinary": "普通", "checking": "当座"}


class BadBankAccount(ValueError):
    pass


@dataclass(frozen=True)
class BankAccount:
    bank: str
    branch: str
    type: str  # 普通 or 当座
    number: str
    holder: str  # カタカナ

    def __str__(self) -> str:
        return f"{self.bank} {self.branch} {self.type} {self.number} {self.holder}"


def parse_bank_account(raw: str) -> BankAccount:
    """PORTAL_BANK_TRANSFER_ACCOUNT: "bank|branch|type|number|holder", the type 普通 or 当座
    (ordinary, checking), a 7-digit number, the holder in katakana."""
    parts = [unicodedata.normalize("NFKC", part).strip() for part in (raw or "").split("|")]
    if len(parts) != 5 or not all(parts):
        raise BadBankAccount("PORTAL_BANK_TRANSFER_ACCOUNT must be 'bank|branch|type|number|holder'")
    bank, branch, kind, number, holder = parts
    if kind.lower() not in ACCOUNT_TYPES and kind not in ACCOUNT_TYPES:
        raise BadBankAccount("the account type of PORTAL_BANK_TRANSFER_ACCOUNT must be 普通 or 当座")
    if not re.fullmatch(r"\d{7}", number):
        raise BadBankAccount("the account number of PORTAL_BANK_TRANSFER_ACCOUNT must be 7 digits")
    holder = unicodedata.normalize("NFKC", holder)  # half-width katakana become full-width
    if not KATAKANA.fullmatch(holder):
        raise BadBankAccount("the holder of PORTAL_BANK_TRANSFER_ACCOUNT must be written in katakana")
    return BankAccount(bank, branch, ACCOUNT_TYPES.get(kind.lower(), ACCOUNT_TYPES.get(kind)), number, holder)
