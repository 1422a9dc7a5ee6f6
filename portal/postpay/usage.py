"""The line's usage as the ledger booked it: every entry on the line's lot but the line's own
bookings (opening, limit changes, payments given back). A call counts when it ends: its hold and
the part given back at its end belong to the moment the hold closed; a hold still open is not
usage yet (it only sets credit aside). Read inside the caller's unit."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.sql import Select
from sqlmodel import Session

from portal.ledger.models import ENTRIES, JOURNAL, Hold
from portal.ledger.rules import TransactionKind
from portal.postpay.models import Contract, PostpayInvoice, Product

HOLDS, CONTRACTS, INVOICES = Hold.__table__, Contract.__table__, PostpayInvoice.__table__
# when an entry counts: a hold's entry when the hold closed (NULL while open), anything else when booked
BILLED_AT = case((JOURNAL.c.kind == TransactionKind.HOLD, HOLDS.c.closed_at), else_=JOURNAL.c.occurred_at)
_USAGE = (ENTRIES.join(JOURNAL, JOURNAL.c.id == ENTRIES.c.transaction_id)
          .outerjoin(HOLDS, HOLDS.c.id == JOURNAL.c.hold_id))


def _window(lot_id: int, since: datetime | None, until: datetime | None):
    conditions = [ENTRIES.c.lot_id == lot_id, JOURNAL.c.kind != TransactionKind.LINE, BILLED_AT.is_not(None)]
    if since is not None:
        conditions.append(BILLED_AT >= since)
    if until is not None:
        conditions.append(BILLED_AT < until)
    return and_(*conditions)


def total(session: Session, *, lot_id: int, since: datetime | None = None, until: datetime | None = None) -> int:
    """Milli-yen used of the line in [since, until) (either end open)."""
    spent = session.scalar(select(func.coalesce(func.sum(ENTRIES.c.amount), 0)).select_from(_USAGE)
                           .where(_window(lot_id, since, until)))
    return -int(spent)


def closable(*, month: str, until: datetime, at_least: int) -> Select:
    """(account_id, lot_id, since) of every line without an invoice for `month` whose usage since
    its last invoice's end (`since`, None before the first) up to `until` is at least
    `at_least` milli-yen: one grouped scan of the lines' entries in their windows."""
    covered = (select(INVOICES.c.account_id, func.max(INVOICES.c.covers_until).label("since"))
               .group_by(INVOICES.c.account_id).subquery("covered"))
    invoiced = (select(INVOICES.c.id).where(INVOICES.c.account_id == CONTRACTS.c.account_id,
                                            INVOICES.c.month == month).exists())
    lines = (CONTRACTS.outerjoin(covered, covered.c.account_id == CONTRACTS.c.account_id)
             .join(ENTRIES, ENTRIES.c.lot_id == CONTRACTS.c.lot_id)
             .join(JOURNAL, JOURNAL.c.id == ENTRIES.c.transaction_id)
             .outerjoin(HOLDS, HOLDS.c.id == JOURNAL.c.hold_id))
    return (select(CONTRACTS.c.account_id, CONTRACTS.c.lot_id, covered.c.since).select_from(lines)
            .where(CONTRACTS.c.lot_id.is_not(None), ~invoiced, JOURNAL.c.kind != TransactionKind.LINE,
                   BILLED_AT.is_not(None), BILLED_AT < until, or_(covered.c.since.is_(None), BILLED_AT >= covered.c.since))
            .group_by(CONTRACTS.c.account_id, CONTRACTS.c.lot_id, covered.c.since)
            .having(-func.sum(ENTRIES.c.amount) >= at_least)
            .order_by(CONTRACTS.c.account_id))


def held(session: Session, *, lot_id: int) -> int:
    """Milli-yen that calls still in progress set aside on the line."""
    spent = session.scalar(select(func.coalesce(func.sum(ENTRIES.c.amount), 0)).select_from(_USAGE).where(
        ENTRIES.c.lot_id == lot_id, JOURNAL.c.kind == TransactionKind.HOLD, HOLDS.c.closed_at.is_(None)))
    return -int(spent)


@dataclass
class ProductUsage:
    quantity: int = 0
    usage: int = 0  # milli-yen


def by_product(session: Session, *, lot_id: int, since: datetime | None, until: datetime) -> dict[Product, ProductUsage]:
    """The usage in the window per product: messages (SMS, OTP) counted by their debits less
    their refunds, calls by their holds."""
    rows = session.execute(select(JOURNAL.c.kind, JOURNAL.c.reason, JOURNAL.c.idempotency_key, ENTRIES.c.amount)
                           .select_from(_USAGE).where(_window(lot_id, since, until))).all()
    refunded = [row.idempotency_key.removeprefix("refund:") for row in rows if row.kind == TransactionKind.REFUND]
    otp_keys = set()
    if refunded:
        otp_keys = set(session.scalars(select(JOURNAL.c.idempotency_key).where(
            JOURNAL.c.idempotency_key.in_(refunded), JOURNAL.c.kind == TransactionKind.DEBIT,
            JOURNAL.c.reason.startswith("OTP"))))
    found: dict[Product, ProductUsage] = defaultdict(ProductUsage)
    for row in rows:
        if row.kind in (TransactionKind.HOLD, TransactionKind.RELEASE):
            product, count = Product.VOICE, int(row.kind == TransactionKind.HOLD)
        elif row.kind == TransactionKind.REFUND:
            product = Product.OTP if row.idempotency_key.removeprefix("refund:") in otp_keys else Product.SMS
            count = -1
        else:
            product, count = (Product.OTP if row.reason.startswith("OTP") else Product.SMS), 1
        found[product].quantity += count
        found[product].usage -= row.amount
    return dict(found)
