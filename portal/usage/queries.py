"""The usage history's reads, composed from the table definitions: the keyset-paged list over
messages and calls, totals, the daily series and breakdowns (from the `usage_daily` rollup, or
from the rows themselves when a tag is asked for), the filter form's choices and one event's
detail. Nothing here opens or ends a transaction: `service` does."""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import case, func, literal, or_, select, tuple_, union_all
from sqlalchemy.sql import ColumnElement, Select
from sqlmodel import Session

from portal.credentials.models import Credential
from portal.formats import masked_phone
from portal.messaging.api_models import CALL_PRODUCTS, Call, CallbackAttempt, CallStatus, Message, UsageProduct
from portal.otp.models import OtpCode, OtpSite
from portal.usage import rules
from portal.usage.models import NO_CREDENTIAL, NO_SITE, USAGE_DAILY
from portal.usage.rules import CALL, MESSAGE, Filters, Position

MESSAGES, CALLS, CREDENTIALS, SITES = Message.__table__, Call.__table__, Credential.__table__, OtpSite.__table__
ATTEMPTS, CODES = CallbackAttempt.__table__, OtpCode.__table__
RECENT_FOR_TAGS = 2000  # the filter form offers the tags of this many newest messages and calls


@dataclass(frozen=True)
class UsageRow:
    """One message or call as the list shows it (the recipient masked whatever the role)."""

    kind: str  # the product: sms, otp, voice, otp_call
    ref: str  # msgid or callid
    created_at: datetime
    product: str
    credential_id: int | None
    credential_name: str | None  # None with credential_id None: sent by Chotto itself
    site_id: int | None
    site_name: str | None
    recipient: str
    country: str
    segments: int
    seconds: int
    status: str
    cost: int  # milli-yen, net of refunds
    tags: list[str]
    mode: str

    @property
    def unanswered(self) -> bool:
        """A call that rang out without an answer (it ended answered with 0 seconds): it cost nothing."""
        return self.product in CALL_PRODUCTS and self.status == CallStatus.ANSWERED and self.seconds == 0


@dataclass(frozen=True)
class Page:
    rows: list[UsageRow]
    next: str | None  # the cursor of the following page, None on the last


@dataclass(frozen=True)
class Totals:
    count: int
    segments: int
    seconds: int
    minutes: int  # started minutes, as calls are billed
    cost: int


@dataclass(frozen=True)
class DayTotal:
    day: date
    count: int
    cost: int


@dataclass(frozen=True)
class Share:
    """One credential's or site's part of the totals (id None: sent by Chotto / not OTP)."""

    id: int | None
    name: str | None
    count: int
    cost: int


@dataclass(frozen=True)
class Breakdown:
    by_credential: list[Share]
    by_site: list[Share]


@dataclass(frozen=True)
class Choice:
    id: int
    name: str
    revoked: bool = False


@dataclass(frozen=True)
class Choices:
    credentials: list[Choice]
    sites: list[Choice]
    countries: list[str]
    tags: list[str]
    statuses: list[str]


@dataclass(frozen=True)
class Step:
    """One moment of an event's timeline: created, handed_to_carrier, delivered, failed,
    refunded, call_started, call_ended, code_verified."""

    event: str
    at: datetime


@dataclass(frozen=True)
class CallbackAnswer:
    event: str  # the status or OTP event posted
    url: str
    attempted_at: datetime
    status_code: int | None  # None: no answer (the error names why)
    error: str | None


@dataclass(frozen=True)
class Detail:
    row: UsageRow
    recipient: str  # full for owners and developers, masked for billing
    timeline: list[Step]
    encoding: str | None  # an SMS's: GSM-7 or UCS-2
    body: str | None  # an SMS's text (an OTP code's masked), for owners and developers only
    charged: int  # milli-yen debited, before any refund
    refunded: int
    callbacks: list[CallbackAnswer]
    code_status: str | None  # an OTP code's: active, verified, replaced, locked


# -- the rows of one table, as the list and the export read them -------------------------------------


def _table(source: str):
    return MESSAGES if source == MESSAGE else CALLS


def _net_cost(table) -> ColumnElement:
    if table is MESSAGES:
        return case((MESSAGES.c.refunded_at.is_(None), MESSAGES.c.cost), else_=0)
    return CALLS.c.cost


def _columns(source: str) -> list[ColumnElement]:
    table = _table(source)
    is_message = table is MESSAGES
    return [
        literal(source).label("src"), table.c.id, (table.c.msgid if is_message else table.c.callid).label("ref"),
        table.c.created_at, table.c.product, table.c.credential_id, table.c.otp_site_id.label("site_id"),
        table.c.recipient, table.c.country,
        (MESSAGES.c.segments if is_message else literal(0)).label("segments"),
        (literal(0) if is_message else func.coalesce(CALLS.c.duration, 0)).label("seconds"),
        table.c.status, _net_cost(table).label("cost"), table.c.tags, table.c.mode,
    ]


def _has_tag(session: Session, table, tag: str) -> ColumnElement:
    """Exactly this tag among the row's comma-joined tags (case and wildcards matter: no LIKE)."""
    joined = literal(",") + table.c.tags + literal(",")
    needle = literal(f",{tag},")
    if session.get_bind().dialect.name == "postgresql":
        return func.strpos(joined, needle) > 0
    return func.instr(joined, needle) > 0


def _where(session: Session, source: str, account_id: int, filters: Filters) -> list[ColumnElement]:
    table = _table(source)
    conditions = [table.c.account_id == account_id, table.c.created_at >= filters.since(),
                  table.c.created_at < filters.until()]
    for field, column in (("product", table.c.product), ("credential_id", table.c.credential_id),
                          ("site_id", table.c.otp_site_id), ("status", table.c.status),
                          ("country", table.c.country), ("mode", table.c.mode)):
        if (value := getattr(filters, field)) is not None:
            conditions.append(column == value)
    if filters.tag is not None:
        conditions.append(_has_tag(session, table, filters.tag))
    return conditions


def _before(source: str, position: Position) -> ColumnElement:
    """Rows listed after `position` (newest first by created_at, then table, then id)."""
    table = _table(source)
    if source < position.table:
        return table.c.created_at <= position.created_at
    if source > position.table:
        return table.c.created_at < position.created_at
    return tuple_(table.c.created_at, table.c.id) < tuple_(position.created_at, position.id)


def _newest(session: Session, account_id: int, filters: Filters, after: Position | None,
            limit: int) -> Select | None:
    branches = []
    for source in rules.tables_for(filters):
        table = _table(source)
        conditions = _where(session, source, account_id, filters)
        if after is not None:
            conditions.append(_before(source, after))
        branch = (select(*_columns(source)).where(*conditions)
                  .order_by(table.c.created_at.desc(), table.c.id.desc()).limit(limit).subquery())
        branches.append(select(*branch.c))
    if not branches:
        return None
    both = (union_all(*branches) if len(branches) > 1 else branches[0]).subquery("usage")
    top = select(both).order_by(both.c.created_at.desc(), both.c.src.desc(), both.c.id.desc()).limit(limit).subquery("top")
    return (select(top, CREDENTIALS.c.name.label("credential_name"), SITES.c.display_name.label("site_name"))
            .select_from(top.outerjoin(CREDENTIALS, CREDENTIALS.c.id == top.c.credential_id)
                         .outerjoin(SITES, SITES.c.id == top.c.site_id))
            .order_by(top.c.created_at.desc(), top.c.src.desc(), top.c.id.desc()))


def _row(row) -> UsageRow:
    return UsageRow(kind=row.product, ref=row.ref, created_at=row.created_at, product=row.product,
                    credential_id=row.credential_id, credential_name=row.credential_name, site_id=row.site_id,
                    site_name=row.site_name, recipient=masked_phone(row.recipient), country=row.country,
                    segments=int(row.segments), seconds=int(row.seconds), status=row.status, cost=int(row.cost),
                    tags=rules.tags_of(row.tags), mode=row.mode)


def page(session: Session, account_id: int, filters: Filters, after: str | None, limit: int) -> Page:
    position = rules.position_of(after) if after else None
    query = _newest(session, account_id, filters, position, limit + 1)
    rows = list(session.execute(query)) if query is not None else []
    following = None
    if len(rows) > limit:
        last = rows[limit - 1]
        following = rules.cursor_of(Position(last.created_at, last.src, last.id))
    return Page([_row(row) for row in rows[:limit]], following)


def last_ids(session: Session, account_id: int, filters: Filters) -> dict[str, int]:
    """The highest id of each table the filters read among the account's rows (0 when none):
    the export's bound, read once at its start."""
    return {source: int(session.scalar(select(func.coalesce(func.max(_table(source).c.id), 0))
                                       .where(_table(source).c.account_id == account_id)))
            for source in rules.tables_for(filters)}


def _after(source: str, position: Position) -> ColumnElement:
    """Rows listed after `position` (oldest first by created_at, then table, then id)."""
    table = _table(source)
    if source < position.table:
        return table.c.created_at > position.created_at
    if source > position.table:
        return table.c.created_at >= position.created_at
    return tuple_(table.c.created_at, table.c.id) > tuple_(position.created_at, position.id)


def oldest_first(session: Session, account_id: int, filters: Filters, *, bound: dict[str, int],
                 after: Position | None, limit: int) -> Select | None:
    """The next `limit` matching rows oldest first (the export's batches), after `after`, among
    the rows with ids up to `bound` (per table): one ordered scan of each table's
    (account, time, id) index from the position on, merged."""
    branches = []
    for source in rules.tables_for(filters):
        table = _table(source)
        conditions = [*_where(session, source, account_id, filters), table.c.id <= bound.get(source, 0)]
        if after is not None:
            conditions.append(_after(source, after))
        branches.append(select(*_columns(source)).where(*conditions)
                        .order_by(table.c.created_at, table.c.id).limit(limit).subquery())
    if not branches:
        return None
    both = union_all(*(select(*branch.c) for branch in branches)).subquery("usage")
    return select(both).order_by(both.c.created_at, both.c.src, both.c.id).limit(limit)


# -- figures: from the rollup, or from the rows when a tag is asked for -------------------------------


def _rollup_where(account_id: int, filters: Filters) -> list[ColumnElement]:
    daily = USAGE_DAILY.c
    conditions = [daily.account_id == account_id, daily.day >= filters.start, daily.day <= filters.end]
    for field, column in (("product", daily.product), ("credential_id", daily.credential_id),
                          ("site_id", daily.site_id), ("status", daily.status), ("country", daily.country),
                          ("mode", daily.mode)):
        if (value := getattr(filters, field)) is not None:
            conditions.append(column == value)
    if not rules.tables_for(filters):
        conditions.append(literal(False))
    return conditions


def _row_figures(source: str) -> dict[str, ColumnElement]:
    table = _table(source)
    seconds = func.coalesce(CALLS.c.duration, 0)
    return {
        "events": func.count(),
        "segments": func.coalesce(func.sum(MESSAGES.c.segments), 0) if table is MESSAGES else literal(0),
        "seconds": func.coalesce(func.sum(seconds), 0) if table is CALLS else literal(0),
        "minutes": func.coalesce(func.sum((seconds + 59) // 60), 0) if table is CALLS else literal(0),
        "cost": func.coalesce(func.sum(_net_cost(table)), 0),
    }


def _jst_day(session: Session, column) -> ColumnElement:
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("Asia/Tokyo", column))
    return func.date(column, "+9 hours")


def _grouped(session: Session, account_id: int, filters: Filters, group: str) -> list:
    """(key, events, segments, seconds, minutes, cost) rows grouped by `group` (None, "day",
    "credential" or "site"), from the rollup unless a tag is asked for."""
    if not filters.uses_tag:
        daily = USAGE_DAILY.c
        key = {None: literal(0), "day": daily.day, "credential": daily.credential_id, "site": daily.site_id}[group]
        query = select(key.label("key"), *(func.coalesce(func.sum(getattr(daily, name)), 0).label(name)
                                           for name in ("events", "segments", "seconds", "minutes", "cost")))
        return list(session.execute(query.where(*_rollup_where(account_id, filters)).group_by(key)))
    rows = []
    for source in rules.tables_for(filters):
        table = _table(source)
        key = {None: literal(0), "day": _jst_day(session, table.c.created_at),
               "credential": func.coalesce(table.c.credential_id, NO_CREDENTIAL),
               "site": func.coalesce(table.c.otp_site_id, NO_SITE)}[group]
        figures = [value.label(name) for name, value in _row_figures(source).items()]
        rows += session.execute(select(key.label("key"), *figures)
                                .where(*_where(session, source, account_id, filters)).group_by(key))
    return rows


def _summed(rows: Iterable) -> dict:
    sums: dict = defaultdict(lambda: [0, 0, 0, 0, 0])
    for row in rows:
        key = date.fromisoformat(row.key) if isinstance(row.key, str) else row.key
        for index, value in enumerate(row[1:]):
            sums[key][index] += int(value)
    return sums


def totals(session: Session, account_id: int, filters: Filters) -> Totals:
    events, segments, seconds, minutes, cost = _summed(_grouped(session, account_id, filters, None)).get(0, [0] * 5)
    return Totals(count=events, segments=segments, seconds=seconds, minutes=minutes, cost=cost)


def daily(session: Session, account_id: int, filters: Filters) -> list[DayTotal]:
    sums = _summed(_grouped(session, account_id, filters, "day"))
    days = (filters.start + timedelta(days=offset) for offset in range((filters.end - filters.start).days + 1))
    return [DayTotal(day, sums[day][0], sums[day][4]) if day in sums else DayTotal(day, 0, 0) for day in days]


def breakdown(session: Session, account_id: int, filters: Filters) -> Breakdown:
    by_credential = _summed(_grouped(session, account_id, filters, "credential"))
    by_site = _summed(_grouped(session, account_id, filters, "site"))
    credential_names, site_names = names(session, account_id)
    credentials = [Share(None if key == NO_CREDENTIAL else key, credential_names.get(key), sums[0], sums[4])
                   for key, sums in by_credential.items() if sums[0]]
    sites = [Share(key, site_names.get(key), sums[0], sums[4]) for key, sums in by_site.items()
             if sums[0] and key != NO_SITE]
    order = lambda share: (-share.cost, -share.count, share.name or "")  # noqa: E731
    return Breakdown(sorted(credentials, key=order), sorted(sites, key=order))


def names(session: Session, account_id: int) -> tuple[dict[int, str], dict[int, str]]:
    credentials = dict(session.execute(select(CREDENTIALS.c.id, CREDENTIALS.c.name)
                                       .where(CREDENTIALS.c.account_id == account_id)).all())
    sites = dict(session.execute(select(SITES.c.id, SITES.c.display_name)
                                 .where(SITES.c.account_id == account_id)).all())
    return credentials, sites


def choices(session: Session, account_id: int) -> Choices:
    credentials = [Choice(row.id, row.name, row.revoked_at is not None) for row in session.execute(
        select(CREDENTIALS.c.id, CREDENTIALS.c.name, CREDENTIALS.c.revoked_at)
        .where(CREDENTIALS.c.account_id == account_id).order_by(CREDENTIALS.c.name, CREDENTIALS.c.id))]
    sites = [Choice(row.id, row.display_name) for row in session.execute(
        select(SITES.c.id, SITES.c.display_name).where(SITES.c.account_id == account_id)
        .order_by(SITES.c.display_name, SITES.c.id))]
    daily = USAGE_DAILY.c
    seen = session.execute(select(daily.country, daily.status).where(daily.account_id == account_id, daily.events > 0)
                           .distinct()).all()
    countries = sorted({row.country for row in seen})
    statuses = [status for status in rules.STATUSES if status in {row.status for row in seen}]
    return Choices(credentials, sites, countries, _recent_tags(session, account_id), statuses)


def _recent_tags(session: Session, account_id: int) -> list[str]:
    tags = set()
    for table in (MESSAGES, CALLS):
        stored = session.scalars(select(table.c.tags).where(table.c.account_id == account_id, table.c.tags != "")
                                 .order_by(table.c.created_at.desc(), table.c.id.desc()).limit(RECENT_FOR_TAGS))
        tags.update(tag for joined in stored for tag in rules.tags_of(joined))
    return sorted(tags)


# -- one event ---------------------------------------------------------------------------------------


def detail(session: Session, account_id: int, kind: str, ref: str, role: str) -> Detail | None:
    source = CALL if kind in CALL_PRODUCTS else MESSAGE
    table = _table(source)
    reference = table.c.msgid if table is MESSAGES else table.c.callid
    extra = ([MESSAGES.c.encoding, MESSAGES.c.body, MESSAGES.c.cost.label("charged"), MESSAGES.c.refunded_at,
              MESSAGES.c.handed_at, MESSAGES.c.updated_at] if table is MESSAGES
             else [CALLS.c.started_at, CALLS.c.ended_at, CALLS.c.cost.label("charged")])
    inner = select(*_columns(source), *extra).where(table.c.account_id == account_id, reference == ref).subquery()
    query = (select(inner, CREDENTIALS.c.name.label("credential_name"), SITES.c.display_name.label("site_name"))
             .select_from(inner.outerjoin(CREDENTIALS, CREDENTIALS.c.id == inner.c.credential_id)
                          .outerjoin(SITES, SITES.c.id == inner.c.site_id)))
    found = session.execute(query).first()
    if found is None:
        return None
    code = None
    if found.product in (UsageProduct.OTP, UsageProduct.OTP_CALL):  # a code sent, read out, or its fallback call
        code = session.execute(select(CODES.c.status, CODES.c.verified_at).where(
            CODES.c.account_id == account_id, or_(CODES.c.msgid == ref, CODES.c.fallback_callid == ref))
            .limit(1)).first()
    full = rules.sees_full_numbers(role)
    is_message = table is MESSAGES
    readable = is_message and full and found.product == UsageProduct.SMS  # an OTP body holds its code until redacted
    return Detail(
        row=_row(found), recipient=found.recipient if full else masked_phone(found.recipient),
        timeline=_timeline(found, is_message, code), encoding=found.encoding if is_message else None,
        body=found.body if readable else None, charged=int(found.charged),
        refunded=int(found.charged) if is_message and found.refunded_at is not None else 0,
        callbacks=_callbacks(session, account_id, ref, role), code_status=str(code.status) if code else None)


def _timeline(found, is_message: bool, code) -> list[Step]:
    steps = [Step("created", found.created_at)]
    if is_message:
        if found.handed_at is not None:
            steps.append(Step("handed_to_carrier", found.handed_at))
        if found.status in ("DELIVERED", "FAIL"):
            steps.append(Step("delivered" if found.status == "DELIVERED" else "failed", found.updated_at))
        elif found.status == "UNKNOWN":
            steps.append(Step("outcome_unknown", found.updated_at))
        if found.refunded_at is not None:
            steps.append(Step("refunded", found.refunded_at))
    else:
        if found.started_at is not None:
            steps.append(Step("call_started", found.started_at))
        if found.ended_at is not None:
            steps.append(Step("call_ended", found.ended_at))
    if code is not None and code.verified_at is not None:
        steps.append(Step("code_verified", code.verified_at))
    return sorted(steps, key=lambda step: step.at)


def _callbacks(session: Session, account_id: int, ref: str, role: str) -> list[CallbackAnswer]:
    rows = session.execute(select(ATTEMPTS).where(ATTEMPTS.c.account_id == account_id, ATTEMPTS.c.ref == ref)
                           .order_by(ATTEMPTS.c.attempted_at, ATTEMPTS.c.id))
    return [CallbackAnswer(row.event, rules.shown_callback_url(row.url, role), row.attempted_at, row.status_code,
                           row.error) for row in rows]
