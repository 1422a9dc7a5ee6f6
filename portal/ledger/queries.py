"""What the dashboard and the API read from the ledger (no writes)."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlmodel import Session

from portal import db
from portal.ledger import rules
from portal.ledger.forecast import Forecast, forecast
from portal.ledger.models import CreditState, Lot, Transaction
from portal.ledger.rules import LotKind, TransactionKind

BURN_WINDOW = timedelta(days=7)
SPENDING_KINDS = (TransactionKind.DEBIT, TransactionKind.HOLD, TransactionKind.RELEASE)


@dataclass(frozen=True)
class Summary:
    """`available`: what sends can spend now, prepaid credit and an open credit line alike;
    `prepaid`: the prepaid part of it; `live_lots`, `next_expiry` and `forecast`: prepaid credit
    only (a credit line neither expires nor runs out by date)."""

    available: int
    held: int
    live_lots: list[Lot]
    next_expiry: Lot | None
    forecast: Forecast
    prepaid: int = 0


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
    live = [lot for lot in rules.burn_order(lots, now) if lot.kind != LotKind.LINE]
    spent = max(spent - held, 0)
    return Summary(
        available=rules.available(lots, now),
        prepaid=sum(lot.remaining for lot in live),
        held=held,
        live_lots=live,
        next_expiry=min(live, key=lambda lot: lot.expires_at) if live else None,
        forecast=forecast(live, spent=spent, window=BURN_WINDOW, now=now),
    )


def expiring_on(lots: list[Lot], lot: Lot) -> int:
    """All credit expiring at the same moment as `lot` (several lots can share one)."""
    return sum(other.remaining for other in lots if other.expires_at == lot.expires_at)
