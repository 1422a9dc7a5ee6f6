"""The monthly statement (利用明細): the live usage of one Japan-time month per product and
credential, from the rollup. Its amounts are what the ledger booked for those events net of
refunds: SMS and OTP messages are debited when sent and a failed one is refunded, a call's hold
is settled to its started minutes (a call not answered costs nothing: a line says how many of
its calls were not answered). A refund or a call's end booked in the next month is counted
with the event's own day here (the usage of the month, as the customer sees it)."""

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import func, select
from sqlmodel import Session

from portal.messaging.api_models import Call, CallStatus, UsageProduct
from portal.usage import queries, rules
from portal.usage.models import NO_CREDENTIAL, USAGE_DAILY

CALLS = Call.__table__
PRODUCT_ORDER = tuple(UsageProduct)
UNIT = {UsageProduct.SMS: "segments", UsageProduct.OTP: "messages", UsageProduct.VOICE: "minutes",
        UsageProduct.OTP_CALL: "minutes"}


@dataclass(frozen=True)
class StatementLine:
    product: str
    credential_id: int | None  # None: sent by Chotto itself (a balance alert)
    credential_name: str | None
    count: int
    units: int  # segments for SMS, messages for OTP, started minutes for calls
    unit: str  # "segments", "messages" or "minutes"
    amount: int  # milli-yen, net of refunds
    unanswered: int = 0  # calls among `count` that were not answered (or could not be placed): not charged


@dataclass(frozen=True)
class Statement:
    month: date  # the first day of the month
    start: date
    end: date
    lines: list[StatementLine]
    count: int
    amount: int


def monthly(session: Session, account_id: int, month: date) -> Statement:
    start, end = rules.month_range(month)
    daily = USAGE_DAILY.c
    rows = session.execute(
        select(daily.product, daily.credential_id, func.sum(daily.events).label("events"),
               func.sum(daily.segments).label("segments"), func.sum(daily.minutes).label("minutes"),
               func.sum(daily.cost).label("cost"))
        .where(daily.account_id == account_id, daily.day >= start, daily.day <= end, daily.mode == "live")
        .group_by(daily.product, daily.credential_id))
    credentials, _ = queries.names(session, account_id)
    unanswered = _unanswered(session, account_id, start, end)
    lines = [_line(row, credentials, unanswered) for row in rows if int(row.events)]
    lines.sort(key=lambda line: (PRODUCT_ORDER.index(line.product), line.credential_name or "", line.credential_id or 0))
    return Statement(start, start, end, lines, sum(line.count for line in lines), sum(line.amount for line in lines))


def _unanswered(session: Session, account_id: int, start: date, end: date) -> dict[tuple[str, int], int]:
    """The month's live calls that ended without a second answered (no answer, or the carrier
    could not place them), by product and credential: the rollup counts them among the calls
    but cannot tell them apart, so they are counted from the calls (the month's few)."""
    calls = CALLS.c
    rows = session.execute(
        select(calls.product, calls.credential_id, func.count())
        .where(calls.account_id == account_id, calls.created_at >= rules.day_start(start),
               calls.created_at < rules.day_start(end + timedelta(days=1)), calls.mode == "live",
               calls.status.in_([CallStatus.ANSWERED, CallStatus.FAILED]), func.coalesce(calls.duration, 0) == 0)
        .group_by(calls.product, calls.credential_id))
    return {(product, NO_CREDENTIAL if credential_id is None else credential_id): int(count)
            for product, credential_id, count in rows}


def _line(row, credentials: dict[int, str], unanswered: dict[tuple[str, int], int]) -> StatementLine:
    product = UsageProduct(row.product)
    units = {"segments": row.segments, "messages": row.events, "minutes": row.minutes}[UNIT[product]]
    credential_id = None if row.credential_id == NO_CREDENTIAL else row.credential_id
    return StatementLine(product, credential_id, credentials.get(credential_id), int(row.events), int(units),
                         UNIT[product], int(row.cost), unanswered.get((product.value, row.credential_id), 0))
