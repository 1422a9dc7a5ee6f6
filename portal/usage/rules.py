"""The usage history's pure rules: Japan-time days, the 13-month retention, the filters read from
a query string, the page cursor, masking and CSV cells. No database, no clock: `now`/`today`
come in."""

import base64
import calendar
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta, timezone
from urllib.parse import urlsplit

from portal.messaging.api_models import CALL_PRODUCTS, MESSAGE_PRODUCTS, CallStatus, MessageStatus, UsageProduct

JST = timezone(timedelta(hours=9))  # Japan has no daylight saving time
RETENTION_MONTHS = 13
RANGES = ("today", "7d", "this-month", "last-month", "custom")
MODES = ("live", "test")
STATUSES = tuple(dict.fromkeys([*MessageStatus, *CallStatus]))
MESSAGE, CALL = "m", "c"  # the two tables, in the order rows of the same instant are listed
MAX_TAG_LENGTH = 50


class InvalidFilter(ValueError):
    """A filter (or a cursor) the usage history cannot apply: `field` names it for the form."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@dataclass(frozen=True)
class Filters:
    """What the usage history shows: Japan-time days from `start` to `end` inclusive, and the
    rows matching every filter that is set."""

    start: date
    end: date
    product: str | None = None
    credential_id: int | None = None
    site_id: int | None = None
    status: str | None = None
    country: str | None = None
    tag: str | None = None
    mode: str | None = None
    range: str = "custom"  # the preset the range came from, kept for the form and the URL

    def to_params(self) -> dict[str, str]:
        """The query string that gives these filters back through `filters_from` (on the day
        they were made: a preset moves with the calendar, as a bookmark of "this month" should)."""
        params = {"range": self.range}
        if self.range == "custom":
            params |= {"from": self.start.isoformat(), "to": self.end.isoformat()}
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name not in ("start", "end", "range") and value is not None:
                params[field.name] = str(value)
        return params

    @property
    def uses_tag(self) -> bool:
        return self.tag is not None

    def since(self) -> datetime:
        return day_start(self.start)

    def until(self) -> datetime:
        return day_start(self.end + timedelta(days=1))


def day_start(day: date) -> datetime:
    """00:00 Japan time of `day`, in UTC."""
    return datetime(day.year, day.month, day.day, tzinfo=JST).astimezone(timezone.utc)


def jst_day(moment: datetime) -> date:
    return moment.astimezone(JST).date()


def today_in_japan(now: datetime) -> date:
    return jst_day(now)


def months_before(moment: datetime, months: int) -> datetime:
    """The same Japan-time wall clock `months` calendar months earlier (the 31st becomes the
    month's last day)."""
    local = moment.astimezone(JST)
    year, month = divmod(local.year * 12 + local.month - 1 - months, 12)
    day = min(local.day, calendar.monthrange(year, month + 1)[1])
    return local.replace(year=year, month=month + 1, day=day).astimezone(timezone.utc)


def purge_before(now: datetime) -> datetime:
    """Rows created before this instant are older than 13 months: the purge deletes them (a
    row exactly 13 months old is kept until the next second)."""
    return months_before(now, RETENTION_MONTHS)


def earliest_day(today: date) -> date:
    """The first day a filter may start on: 13 months before today (Japan time)."""
    noon = datetime(today.year, today.month, today.day, 12, tzinfo=JST)
    return jst_day(months_before(noon, RETENTION_MONTHS))


def month_range(month: date) -> tuple[date, date]:
    first = month.replace(day=1)
    return first, first.replace(day=calendar.monthrange(first.year, first.month)[1])


def preset(name: str, today: date) -> tuple[date, date]:
    if name == "today":
        return today, today
    if name == "7d":
        return today - timedelta(days=6), today
    if name == "this-month":
        return today.replace(day=1), today
    if name == "last-month":
        return month_range(today.replace(day=1) - timedelta(days=1))
    raise InvalidFilter("range", "Choose a range.")


def filters_from(params: Mapping[str, str], *, today: date) -> Filters:
    """The filters a query string asks for; InvalidFilter names the first value that is wrong.
    Without a range, this month so far."""
    given = {key: str(value).strip() for key, value in params.items() if value is not None and str(value).strip()}
    range_name = given.get("range") or ("custom" if "from" in given or "to" in given else "this-month")
    if range_name not in RANGES:
        raise InvalidFilter("range", "Choose a range.")
    if range_name == "custom":
        start = _day(given, "from", default=None)
        end = _day(given, "to", default=today)
        if start is None:
            raise InvalidFilter("from", "Enter the first day.")
    else:
        start, end = preset(range_name, today)
    _check_range(start, end, today)
    return Filters(start=start, end=end, range=range_name, product=_one_of(given, "product", tuple(UsageProduct)),
                   credential_id=_id(given, "credential_id"), site_id=_id(given, "site_id"),
                   status=_one_of(given, "status", STATUSES), country=_country(given), tag=_tag(given),
                   mode=_one_of(given, "mode", MODES))


def _check_range(start: date, end: date, today: date) -> None:
    if end < start:
        raise InvalidFilter("to", "The last day comes before the first.")
    if end > today:
        raise InvalidFilter("to", "The last day is in the future.")
    if start < earliest_day(today):
        raise InvalidFilter("from", f"Usage is kept for {RETENTION_MONTHS} months: start on "
                                    f"{earliest_day(today).isoformat()} or later.")


def _day(given: Mapping[str, str], field: str, default: date | None) -> date | None:
    if field not in given:
        return default
    try:
        return date.fromisoformat(given[field])
    except ValueError:
        raise InvalidFilter(field, "Enter a date as YYYY-MM-DD.") from None


def _one_of(given: Mapping[str, str], field: str, allowed: tuple[str, ...]) -> str | None:
    value = given.get(field)
    if value is not None and value not in allowed:
        raise InvalidFilter(field, "Choose one of the listed values.")
    return value


def _id(given: Mapping[str, str], field: str) -> int | None:
    value = given.get(field)
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or not 0 < int(value) < 2**31:
        raise InvalidFilter(field, "Choose one of the listed values.")
    return int(value)


def _country(given: Mapping[str, str]) -> str | None:
    value = given.get("country")
    if value is not None and not (len(value) == 2 and value.isascii() and value.isalpha()):
        raise InvalidFilter("country", "Choose one of the listed countries.")
    return value.upper() if value else None


def _tag(given: Mapping[str, str]) -> str | None:
    value = given.get("tag")
    if value is not None and ("," in value or len(value) > MAX_TAG_LENGTH):
        raise InvalidFilter("tag", f"A tag has no comma and at most {MAX_TAG_LENGTH} characters.")
    return value


def tables_for(filters: Filters) -> tuple[str, ...]:
    """Which tables can hold rows matching the filters (a call is never DELIVERED)."""
    tables = []
    for table, products, statuses in ((MESSAGE, MESSAGE_PRODUCTS, tuple(MessageStatus)),
                                      (CALL, CALL_PRODUCTS, tuple(CallStatus))):
        if filters.product is not None and filters.product not in products:
            continue
        if filters.status is not None and filters.status not in statuses:
            continue
        tables.append(table)
    return tuple(tables)


# -- the page cursor --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    """Where a page ended: rows are listed by (created_at, table, id), newest first."""

    created_at: datetime
    table: str
    id: int


def cursor_of(position: Position) -> str:
    raw = json.dumps([position.created_at.isoformat(), position.table, position.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def position_of(cursor: str) -> Position:
    """The position a cursor names; anything else (edited, cut short, made up) is InvalidFilter.
    A cursor carries no account: the query it continues is always the caller's account's."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        moment, table, row_id = json.loads(raw)
        created_at = datetime.fromisoformat(moment)
        if created_at.tzinfo is None or table not in (MESSAGE, CALL) or type(row_id) is not int or row_id < 1:
            raise ValueError(cursor)
        return Position(created_at.astimezone(timezone.utc), table, row_id)
    except (ValueError, TypeError, json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidFilter("after", "This page link is not valid: start from the first page.") from None


# -- what a row shows -------------------------------------------------------------------------------


def sees_full_numbers(role: str) -> bool:
    """Owners and developers see the whole number in the detail view; billing never does."""
    return role in ("owner", "developer")


def shown_callback_url(url: str, role: str) -> str:
    """A callback's address as the detail view shows it: whole for owners and developers; for
    billing only its scheme and host (a path or query may carry the customer's own tokens)."""
    if sees_full_numbers(role):
        return url
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/…"


def tags_of(stored: str) -> list[str]:
    return [tag for tag in stored.split(",") if tag]


