"""Billing jobs for the worker and the operator commands: catch up on payments whose webhook
never came, render invoice PDFs that are still missing, check payments against the ledger,
and re-issue an invoice."""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlmodel import Session

from portal import db
from portal.billing import service
from portal.billing.models import Purchase, PurchaseStatus
from portal.billing.service import Result
from portal.ledger.models import Lot
from portal.ledger.rules import MILLI_YEN, LotKind

log = logging.getLogger("portal.billing")
QUIET_FOR = timedelta(minutes=10)
WATCH_FOR = timedelta(days=5)  # a Checkout Session lasts 24 h, a konbini voucher 3 days


def reconcile_pending(*, session: Session, gateway, issuer: service.Issuer, now: datetime) -> int:
    """Ask the gateway about purchases still open or awaiting payment that heard nothing for
    10 minutes, and apply what it says (the same code as a webhook, without an event): a
    lost or misconfigured webhook delays credit by minutes, never loses it. Each purchase is
    asked at most every 10 minutes, whatever the answer, so none can block the others. The
    gateway is asked outside any transaction; each purchase's facts are applied by a unit of
    their own, then the purchase is marked as asked by another."""
    with db.read(session):
        pending = session.execute(
            select(Purchase.public_id, Purchase.checkout_session_id).where(
                Purchase.status.in_((PurchaseStatus.OPEN, PurchaseStatus.AWAITING)),
                Purchase.checkout_session_id.is_not(None), Purchase.gateway == gateway.name,
                Purchase.updated_at <= now - QUIET_FOR, Purchase.created_at >= now - WATCH_FOR,
            ).order_by(Purchase.updated_at, Purchase.id).limit(50)
        ).all()
    applied = 0
    for ref, checkout in pending:
        try:
            facts = gateway.fetch(checkout)
            outcome = service.apply_facts(session=session, purchase_ref=ref, facts=facts, event=None, issuer=issuer,
                                          now=now)
            applied += outcome.result == Result.APPLIED
        except Exception as error:  # the gateway is down or the purchase is odd: next round
            session.rollback()  # whatever the failure left in the session
            log.warning("could not reconcile purchase %s: %s", ref, type(error).__name__)
        _touch(session, ref, now)
    return applied


def _touch(session: Session, ref: str, now: datetime) -> None:
    with db.write(session):
        purchase = session.scalars(select(Purchase).where(Purchase.public_id == ref)).one()
        purchase.updated_at = now


@dataclass(frozen=True)
class PaymentProblem:
    account_id: int
    paid: int
    granted: int

    def __str__(self) -> str:
        return (f"account {self.account_id}: paid purchases stand for {self.paid} milli-yen of credit; "
                f"purchase lots hold {self.granted}")


def check_payments(session: Session) -> list[PaymentProblem]:
    """I4: for every account, the credit of its paid purchases equals the purchase lots granted."""
    with db.read(session):
        paid = dict(session.execute(
            select(Purchase.account_id, func.sum(Purchase.amount_yen) * MILLI_YEN)
            .where(Purchase.status == PurchaseStatus.PAID).group_by(Purchase.account_id)
        ).all())
        granted = dict(session.execute(
            select(Lot.account_id, func.sum(Lot.amount)).where(Lot.kind == LotKind.PURCHASE).group_by(Lot.account_id)
        ).all())
    return [PaymentProblem(account, int(paid.get(account) or 0), int(granted.get(account) or 0))
            for account in sorted(set(paid) | set(granted)) if int(paid.get(account) or 0) != int(granted.get(account) or 0)]
