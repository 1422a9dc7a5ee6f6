"""The worker's daily steps of invoice billing, each once and in its own unit of work (the
account's credit row locked first): the reminders the day after the due date and seven days
later, the suspension of live sends on the line once an invoice is more than the configured
number of days overdue, and the notices when the line's use reaches 80% and 100% of its limit
(through portal.alerts, like the low-balance alerts). Owners and billing members are told by
mail through the outbox at every step."""

import logging
from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session

from portal import db
from portal.alerts import detect
from portal.alerts.models import NoticeKind
from portal.ledger import steps
from portal.postpay import rules
from portal.postpay.contracts import tell, contract_of, suspend_in
from portal.postpay.models import Contract, ContractStatus, PostpayInvoice, SuspendedBy
from portal.postpay.queries import line_in

log = logging.getLogger("portal.postpay")


def _overdue_step(session: Session, invoice_id: int, *, suspend_after_days: int, now: datetime) -> int:
    """The steps due for one unpaid invoice; returns how many were taken."""
    with db.write(session):
        account_id = session.scalar(select(PostpayInvoice.account_id).where(PostpayInvoice.id == invoice_id))
        steps.lock(session, account_id)
        invoice = session.get(PostpayInvoice, invoice_id, populate_existing=True)
        if invoice.paid_at is not None:
            return 0
        today = rules.japan_day(now)
        taken, level = 0, rules.reminder_due(invoice.due_on, today)
        suspend = rules.suspension_due(invoice.due_on, today, suspend_after_days)
        contract = contract_of(session, account_id)
        context = {"invoice": invoice, "owed": invoice.total_yen - invoice.paid_yen,
                   "days": rules.days_overdue(invoice.due_on, today), "suspend_after": suspend_after_days}
        if level == 2 and invoice.reminded_again_at is None:
            invoice.reminded_at, invoice.reminded_again_at = invoice.reminded_at or now, now
            tell(session, account_id, "postpay_overdue", now, second=True, **context)
            taken += 1
        elif level >= 1 and invoice.reminded_at is None:
            invoice.reminded_at = now
            tell(session, account_id, "postpay_overdue", now, second=False, **context)
            taken += 1
        if suspend and contract.status == ContractStatus.APPROVED:
            suspend_in(session, contract, by=SuspendedBy.OVERDUE, now=now,
                       reason=f"invoice {invoice.number} is {context['days']} days overdue")
            taken += 1
        return taken


def line_warning(session: Session, contract: Contract, now: datetime) -> int:
    """Inside the caller's unit (the account locked): a notice when the line's use reached 80%
    or 100% of its limit and was not told yet; warnings below the use are armed again after a
    payment brings it down."""
    line = line_in(session, contract)
    if line is None:
        return 0
    due = rules.warning_due(line.percent_used, contract.warned_percent)
    if due is None:
        contract.warned_percent = rules.rearmed(line.percent_used, contract.warned_percent)
        return 0
    detect.write_notice(session, account_id=contract.account_id, kind=NoticeKind.LINE_USAGE, now=now,
                        data={"percent": due, "limit": line.limit, "used": line.used, "available": line.available})
    contract.warned_percent = due
    return 1


def scheduled_pass(*, session: Session, suspend_after_days: int, now: datetime) -> int:
    """Every unpaid invoice past its due date, then every line's use; returns the steps taken."""
    today = rules.japan_day(now)
    with db.read(session):
        overdue = list(session.scalars(select(PostpayInvoice.id).where(
            PostpayInvoice.paid_at.is_(None), PostpayInvoice.due_on < today).order_by(PostpayInvoice.id)))
        lines = list(session.scalars(select(Contract.account_id).where(Contract.lot_id.is_not(None))))
    taken = 0
    for invoice_id in overdue:
        try:
            taken += _overdue_step(session, invoice_id, suspend_after_days=suspend_after_days, now=now)
        except Exception:
            session.rollback()
            log.exception("overdue step failed for postpay invoice %s", invoice_id)
    for account_id in lines:
        with db.write(session):
            steps.lock(session, account_id)
            taken += line_warning(session, contract_of(session, account_id), now)
    return taken
