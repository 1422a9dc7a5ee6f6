"""The monthly statement (利用明細): the live usage of one Japan-time month per product and
credential, from the rollup. Its amounts are what the ledger booked for those events: SMS and
OTP messages are debited when sent and a failed one is refunded, a call's hold is settled to its
started minutes (a call not answered, or that could not be placed, costs nothing: a line says
how many of its calls were not answered or not placed).

A refund belongs to the month it is booked in, as on the postpay invoice (portal.postpay.usage)
and as Japanese invoice practice has it: a closed month's documents never change. So a message
of this month refunded in it is netted in its line; one refunded after the month closed still
counts here at its price (its refund is on the next months' statement); and a message of an
earlier month refunded in this one is listed as a refund of earlier months (negative amount).
Likewise a call counts in the month it ended, when its hold was settled (the invoice bills it
then too): a call placed just before midnight on the last day and ended after it is December's,
and a call not ended yet is no usage yet."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import case, func, select
from sqlmodel import Session

from portal.messaging.api_models import Call, CallStatus, Message, UsageProduct
from portal.usage import queries, rules
from portal.usage.models import NO_CREDENTIAL, USAGE_DAILY

MESSAGES, CALLS = Message.__table__, Call.__table__
MESSAGE_PRODUCTS = (UsageProduct.SMS, UsageProduct.OTP)

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
    amount: int  # milli-yen, net of the refunds booked in the month (negative for refunds of earlier months)
    earlier: bool = False  # refunds booked this month of messages sent in earlier months
    unanswered: int = 0  # calls among `count` that were not answered (or could not be placed): not charged


@dataclass(frozen=True)
class Statement:
    month: date  # the first day of the month
    start: date
    end: date
    lines: list[StatementLine]  # the month's usage, then the refunds of earlier months
    count: int  # messages and calls of the month
    amount: int  # milli-yen: what the month's lines and refunds come to


def bounds(month: date) -> tuple[datetime, datetime]:
    """The month's first moment and the next month's, in Japan time."""
    start, end = rules.month_range(month)
    return datetime.combine(start, time(), rules.JST), datetime.combine(end + timedelta(days=1), time(), rules.JST)


def monthly(session: Session, account_id: int, month: date) -> Statement:
    start, end = rules.month_range(month)
    opens, closes = bounds(month)
    daily = USAGE_DAILY.c
    rows = session.execute(
        select(daily.product, daily.credential_id, func.sum(daily.events).label("events"),
               func.sum(daily.segments).label("segments"), func.sum(daily.minutes).label("minutes"),
               func.sum(daily.cost).label("cost"))
        .where(daily.account_id == account_id, daily.day >= start, daily.day <= end, daily.mode == "live",
               daily.product.in_(MESSAGE_PRODUCTS))
        .group_by(daily.product, daily.credential_id)).all()
    rows += _calls_ended(session, account_id, opens, closes)
    refunded_later = _refunds(session, account_id, sent=(opens, closes), refunded=(closes, None))
    credentials, _ = queries.names(session, account_id)
    lines = [_line(row, credentials, refunded_later.get((row.product, row.credential_id), 0))
             for row in rows if int(row.events)]
    lines.sort(key=_order)
    earlier = [StatementLine(UsageProduct(product), _credential(credential_id), credentials.get(_credential(credential_id)),
                             count, segments if UNIT[UsageProduct(product)] == "segments" else count,
                             UNIT[UsageProduct(product)], -cost, earlier=True)
               for (product, credential_id), (count, segments, cost) in
               _refunds(session, account_id, sent=(None, opens), refunded=(opens, closes), detail=True).items()]
    earlier.sort(key=_order)
    return Statement(start, start, end, lines + earlier, sum(line.count for line in lines),
                     sum(line.amount for line in lines + earlier))


def _calls_ended(session: Session, account_id: int, opens: datetime, closes: datetime) -> list:
    """The live calls that ended in [opens, closes), per product and credential, in the rollup's
    shape (events, segments, minutes, cost), with how many ended without a second answered (no
    answer, or the carrier could not place them). Calls are read by their end (ix_voice_calls_ended)."""
    c = CALLS.c
    unanswered = case((c.status.in_([CallStatus.ANSWERED, CallStatus.FAILED]) & (func.coalesce(c.duration, 0) == 0), 1),
                      else_=0)
    return session.execute(
        select(c.product, c.credential_id, func.count().label("events"), func.sum(0).label("segments"),
               func.sum((func.coalesce(c.duration, 0) + 59) // 60).label("minutes"), func.sum(c.cost).label("cost"),
               func.sum(unanswered).label("unanswered"))
        .where(c.account_id == account_id, c.mode == "live", c.ended_at >= opens, c.ended_at < closes)
        .group_by(c.product, c.credential_id)).all()


def _refunds(session: Session, account_id: int, *, sent: tuple, refunded: tuple, detail: bool = False) -> dict:
    """Live messages sent in [sent) and refunded in [refunded) (either end open), per product and
    credential: their cost (milli-yen), or with `detail` (count, segments, cost). Refunded
    messages are few and indexed by when their refund was booked (ix_sms_messages_refunded)."""
    m = MESSAGES.c
    conditions = [m.account_id == account_id, m.mode == "live", m.refunded_at.is_not(None), m.cost > 0]
    for column, (since, until) in ((m.created_at, sent), (m.refunded_at, refunded)):
        if since is not None:
            conditions.append(column >= since)
        if until is not None:
            conditions.append(column < until)
    credential = func.coalesce(m.credential_id, NO_CREDENTIAL)
    rows = session.execute(select(m.product, credential.label("credential_id"), func.count().label("count"),
                                  func.sum(m.segments).label("segments"), func.sum(m.cost).label("cost"))
                           .where(*conditions).group_by(m.product, credential))
    found = defaultdict(int) if not detail else {}
    for row in rows:
        key = (row.product, row.credential_id)
        found[key] = (int(row.count), int(row.segments), int(row.cost)) if detail else int(row.cost)
    return found


def _credential(credential_id: int) -> int | None:
    return None if credential_id == NO_CREDENTIAL else credential_id


def _order(line: StatementLine):
    return PRODUCT_ORDER.index(line.product), line.credential_name or "", line.credential_id or 0


def _line(row, credentials: dict[int, str], refunded_later: int) -> StatementLine:
    product = UsageProduct(row.product)
    units = {"segments": row.segments, "messages": row.events, "minutes": row.minutes}[UNIT[product]]
    credential_id = _credential(row.credential_id)
    return StatementLine(product, credential_id, credentials.get(credential_id), int(row.events), int(units),
                         UNIT[product], int(row.cost) + refunded_later,
                         unanswered=int(getattr(row, "unanswered", 0) or 0))  # message rows have none
