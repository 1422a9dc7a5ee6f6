"""The postpay part of `portal ledger check`, per account with a line: the line's usage equals
what invoices covered plus what is still unbilled; the line's lot is what the contract says (its
amount the limit, what it lacks the unbilled usage, the unpaid part of invoices and the open
call holds); and every invoice's payments add up."""

from sqlalchemy import func, select
from sqlmodel import Session

from portal import db
from portal.ledger.check import Problem
from portal.ledger.models import Lot
from portal.ledger.rules import MILLI_YEN
from portal.postpay import usage
from portal.postpay.models import Contract, Payment, PostpayInvoice


def check(session: Session, *, account_id: int | None = None) -> list[Problem]:
    with db.read(session, snapshot=True):
        query = select(Contract).where(Contract.lot_id.is_not(None))
        if account_id is not None:
            query = query.where(Contract.account_id == account_id)
        return [problem for contract in session.scalars(query) for problem in _problems(session, contract)]


def _problems(session: Session, contract: Contract) -> list[Problem]:
    account = contract.account_id
    invoices = list(session.scalars(select(PostpayInvoice).where(PostpayInvoice.account_id == account)))
    last_until = max((invoice.covers_until for invoice in invoices), default=None)
    used = usage.total(session, lot_id=contract.lot_id)
    invoiced = sum(invoice.usage for invoice in invoices)
    unbilled = usage.total(session, lot_id=contract.lot_id, since=last_until)
    problems = []
    if used != invoiced + unbilled:
        problems.append(Problem(account, f"postpay usage {used}; invoiced {invoiced} + unbilled {unbilled}"))
    lot = session.get(Lot, contract.lot_id)
    if lot.amount != contract.limit_yen * MILLI_YEN:
        problems.append(Problem(account, f"credit line lot #{lot.id} amount {lot.amount}; limit ¥{contract.limit_yen}"))
    unpaid = sum(invoice.usage - invoice.restored for invoice in invoices)
    held = usage.held(session, lot_id=contract.lot_id)
    if lot.amount - lot.remaining != unbilled + unpaid + held:
        problems.append(Problem(account, f"credit line lot #{lot.id} lacks {lot.amount - lot.remaining}; unbilled "
                                         f"{unbilled} + unpaid {unpaid} + held {held}"))
    paid = dict(session.execute(select(Payment.invoice_id, func.sum(Payment.amount_yen)).join(
        PostpayInvoice, PostpayInvoice.id == Payment.invoice_id).where(PostpayInvoice.account_id == account)
        .group_by(Payment.invoice_id)).all())
    for invoice in invoices:
        if invoice.paid_yen != int(paid.get(invoice.id) or 0):
            problems.append(Problem(account, f"invoice {invoice.number} paid ¥{invoice.paid_yen}; its payments "
                                             f"¥{int(paid.get(invoice.id) or 0)}"))
        if (invoice.paid_yen == invoice.total_yen) != (invoice.restored == invoice.usage):
            problems.append(Problem(account, f"invoice {invoice.number}: paid ¥{invoice.paid_yen} of "
                                             f"¥{invoice.total_yen} but gave back {invoice.restored} of {invoice.usage}"))
    return problems
