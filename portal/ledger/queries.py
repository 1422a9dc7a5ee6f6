"""What the dashboard and the API read from the ledger (no writes)."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlmodel import Session

from portal import db
from portal.ledger import rules
from portal.ledger.models import CreditState, Lot, Transaction
from portal.ledger.rules import TransactionKind

BURN_WINDOW = timedelta(days=7)
SPENDING_KINDS = (TransactionKind.DEBIT, TransactionKind.HOLD, TransactionKind.RELEASE)


@dataclass(frozen=True)
class Summary:
    available: int
    held: int
    live_lots: list[Lot]
    next_expiry: Lot | None
    burn_per_day: int
    runs_out_at: datetime | None


def summary(session: Session, *, account_id: int, now: datetime) -> Summary:
    with db.read(session):
        state = session.get(CreditState, account_id)
        lots = list(session.scalars(select(Lot).where(Lot.account_id == account_id, Lot.remaining > 0)))
        spent = -int(session.scalar(
            select(func.coalesce(func.sum(Transaction.amount), 0)).where(
                Transaction.account_id == account_id,
                Transaction.kind.in_(SPENDING_KINDS),
                Transaction.occurred_at > now - BURN_WINDOW,
            )
        ))
        held = state.held if state else 0
    live = rules.burn_order(lots, now)
    rate = rules.burn_rate_per_day(max(spent - held, 0), BURN_WINDOW)
    return Summary(
        available=rules.available(lots, now),
        held=held,
        live_lots=live,
        next_expiry=min(live, key=lambda lot: lot.expires_at) if live else None,
        burn_per_day=rate,
        runs_out_at=rules.runs_out_at(live, rate, now),
    )


def expiring_on(lots: list[Lot], lot: Lot) -> int:
    """All credit expiring at the same moment as `lot` (several lots can share one)."""
    return sum(other.remaining for other in lots if other.expires_at == lot.expires_at)


@dataclass(frozen=True)
class Page:
    items: list[Transaction]
    number: int
    pages: int


def statement(session: Session, *, account_id: int, page: int, per_page: int = 20) -> Page:
    with db.read(session):
        total = session.scalar(select(func.count()).select_from(Transaction).where(Transaction.account_id == account_id))
        pages = max(1, -(-total // per_page))
        number = min(max(page, 1), pages)
        items = session.scalars(
            select(Transaction)
            .where(Transaction.account_id == account_id)
            .order_by(Transaction.occurred_at.desc(), Transaction.id.desc())
            .offset((number - 1) * per_page)
            .limit(per_page)
        ).all()
    return Page(items=list(items), number=number, pages=pages)
