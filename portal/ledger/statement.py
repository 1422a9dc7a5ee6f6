"""The credit statement as a customer reads it: one line per movement of credit, newest first,
except that a call's hold (credit set aside when it starts) and its settlement (the unused part
given back when it ends) are one "call" line. A settled call stands at its end, for what it
cost, with the balance after the settlement; a call still in progress stands at its start, for
what is set aside. The journal itself keeps both rows (it is append-only)."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import aliased
from sqlmodel import Session

from portal import db
from portal.ledger.models import Transaction

CALL_HOLD_KEY = "call:"  # the messaging service keys a call's hold "call:<callid>"


@dataclass(frozen=True)
class Line:
    occurred_at: datetime
    kind: str  # a journal kind, or "call"
    amount: int
    balance_after: int
    reason: str
    idempotency_key: str
    in_progress: bool = False  # a call not settled yet: `amount` is what is set aside


@dataclass(frozen=True)
class Page:
    items: list[Line]
    number: int
    pages: int


def page(session: Session, *, account_id: int, page: int, per_page: int = 20) -> Page:
    """Page `page` (clamped to the pages there are) of the account's statement."""
    settlement = aliased(Transaction)
    is_call_hold = and_(Transaction.kind == "hold", Transaction.idempotency_key.startswith(CALL_HOLD_KEY))
    call_holds = select(Transaction.hold_id).where(Transaction.account_id == account_id, is_call_hold)
    shown = and_(Transaction.account_id == account_id, or_(
        Transaction.kind != "release", Transaction.hold_id.is_(None), Transaction.hold_id.not_in(call_holds)))
    with db.read(session):
        total = session.scalar(select(func.count()).select_from(Transaction).where(shown))
        pages = max(1, -(-total // per_page))
        number = min(max(page, 1), pages)
        rows = session.execute(
            select(Transaction, settlement)
            .outerjoin(settlement, and_(is_call_hold, settlement.hold_id == Transaction.hold_id,
                                        settlement.kind == "release", settlement.account_id == account_id))
            .where(shown)
            .order_by(func.coalesce(settlement.occurred_at, Transaction.occurred_at).desc(),
                      func.coalesce(settlement.id, Transaction.id).desc())
            .offset((number - 1) * per_page)
            .limit(per_page)
        ).all()
    return Page(items=[_line(row, settled) for row, settled in rows], number=number, pages=pages)


def _line(row: Transaction, settled: Transaction | None) -> Line:
    if not (row.kind == "hold" and row.idempotency_key.startswith(CALL_HOLD_KEY)):
        return Line(row.occurred_at, row.kind, row.amount, row.balance_after, row.reason, row.idempotency_key)
    if settled is None:
        return Line(row.occurred_at, "call", row.amount, row.balance_after, row.reason, row.idempotency_key,
                    in_progress=True)
    return Line(settled.occurred_at, "call", row.amount + settled.amount, settled.balance_after, row.reason,
                row.idempotency_key)
