"""The monthly statement (利用明細): the live usage of one Japan-time month per product and
credential, from the rollup. Its amounts are what the ledger booked for those events net of
refunds: SMS and OTP messages are debited when sent and a failed one is refunded, a call's hold
is settled to its started minutes. A refund or a call's end booked in the next month is counted
with the event's own day here (the usage of the month, as the customer sees it)."""

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlmodel import Session

from portal.messaging.api_models import UsageProduct
from portal.usage import queries, rules
from portal.usage.models import NO_CREDENTIAL, USAGE_DAILY

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
    lines = [_line(row, credentials) for row in rows if int(row.events)]
    lines.sort(key=lambda line: (PRODUCT_ORDER.index(line.product), line.credential_name or "", line.credential_id or 0))
    return Statement(start, start, end, lines, sum(line.count for line in lines), sum(line.amount for line in lines))


def _line(row, credentials: dict[int, str]) -> StatementLine:
    product = UsageProduct(row.product)
    units = {"segments": row.segments, "messages": row.events, "minutes": row.minutes}[UNIT[product]]
    credential_id = None if row.credential_id == NO_CREDENTIAL else row.credential_id
    return StatementLine(product, credential_id, credentials.get(credential_id), int(row.events), int(units),
                         UNIT[product], int(row.cost))
