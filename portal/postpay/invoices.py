"""The month close and the payments: one qualified invoice per account and Japan-time month,
written with its lines and its mails (through the outbox) in one transaction (the account's credit row locked, so no
booking on the line runs meanwhile); a rerun finds the invoice and adds nothing. A bank transfer
the operator records gives the paid usage back to the line, in the same transaction."""

import logging
from datetime import date, datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from portal import audit, db, mail
from portal.accounts.models import Account
from portal.audit import AuditAction
from portal.billing.models import BillingProfile
from portal.billing.rules import tax_rate_for
from portal.billing.service import Issuer
from portal.formats import postal_address
from portal.ledger import line as ledger_line
from portal.ledger import steps
from portal.postpay import rules, usage
from portal.postpay.contracts import contract_of, line_bookings, mailed_to, resume_in
from portal.postpay.models import (INVOICE_PER_MONTH, Application, Contract, ContractStatus, InvoiceLine, Payment,
                                   PostpayInvoice, Product, SuspendedBy)
from portal.postpay.rules import BankAccount, Month, PostpayError

log = logging.getLogger("portal.postpay")


class UnknownInvoice(PostpayError):
    pass


class Overpayment(PostpayError):
    pass


class AlreadyRecorded(PostpayError):
    """The same transfer (invoice, reference, amount and date) recorded again: nothing changes."""


def number_of(month: Month, account_id: int) -> str:
    return f"P{month.year:04d}{month.month:02d}-{account_id:06d}"


def _recipient(session: Session, account: Account) -> tuple[str, str, str | None]:
    """Whom the invoice is addressed to: the billing profile, else the latest application."""
    profile = session.get(BillingProfile, account.id)
    if profile is not None:
        return profile.legal_name, postal_address(profile.postal_code, profile.address), profile.registration_number
    applied = session.scalars(select(Application).where(Application.account_id == account.id)
                              .order_by(Application.id.desc())).first()
    if applied is not None:
        return applied.legal_name, applied.address, applied.registration_number
    return account.name, "", None


def close_account(*, session: Session, account_id: int, month: Month, issuer: Issuer, bank: BankAccount,
                  now: datetime) -> PostpayInvoice | None:
    """The month's invoice for one account (the one already issued on a rerun), or None when the
    line has nothing billable up to the month's end (what there is stays unbilled)."""
    rules.check_closable(month, now)
    number = number_of(month, account_id)
    try:
        with db.write(session):
            steps.lock(session, account_id)  # no booking on the line while the invoice is written
            found = session.scalars(select(PostpayInvoice).where(PostpayInvoice.number == number)).first()
            if found is not None:
                return found
            contract = contract_of(session, account_id)
            if contract is None or contract.lot_id is None:
                return None
            return _issue(session, contract, month, number, issuer, bank, now)
    except IntegrityError as error:  # another worker issued it at this very moment
        if db.violated_constraint(error) not in (INVOICE_PER_MONTH, "postpay_invoices_number_key"):
            raise
    with db.read(session):
        return session.scalars(select(PostpayInvoice).where(PostpayInvoice.number == number)).one()


def _issue(session: Session, contract: Contract, month: Month, number: str, issuer: Issuer, bank: BankAccount,
           now: datetime) -> PostpayInvoice | None:
    since = session.scalar(select(func.max(PostpayInvoice.covers_until))
                           .where(PostpayInvoice.account_id == contract.account_id))
    until = month.ends_at
    products = usage.by_product(session, lot_id=contract.lot_id, since=since, until=until)
    if not rules.invoiced(products):
        return None
    covered = sum(item.usage for item in products.values())
    lines = [InvoiceLine(product=product, quantity=item.quantity, usage=item.usage, amount_yen=rules.line_yen(item.usage))
             for product, item in sorted(products.items(), key=lambda pair: list(Product).index(pair[0]))
             if item.usage or item.quantity]
    subtotal = sum(line.amount_yen for line in lines)
    account = session.get(Account, contract.account_id)
    rate = tax_rate_for(account.tax_residency)
    tax = rules.tax_on(subtotal, rate)
    name, address, registration = _recipient(session, account)
    invoice = PostpayInvoice(
        number=number, account_id=account.id, month=str(month), covers_until=until, usage=covered,
        subtotal_yen=subtotal, tax_rate=rate, tax_yen=tax, total_yen=subtotal + tax, issued_on=month.next().first_day,
        due_on=rules.due_date(month, contract.due_days), issuer_name=issuer.name,
        issuer_registration_number=issuer.registration_number, recipient_name=name, recipient_address=address,
        recipient_registration_number=registration, bank_account=str(bank), language=account.language, issued_at=now)
    session.add(invoice)
    session.flush()
    for line in lines:
        line.invoice_id = invoice.id
    session.add_all(lines)
    audit.record(session, account_id=account.id, user_id=None, action=AuditAction.POSTPAY_INVOICED, now=now,
                 detail=f"invoice {number} for {month}: ¥{invoice.total_yen:,} due {invoice.due_on.isoformat()}")
    for address_to, language in mailed_to(session, account.id):  # through the outbox, with the invoice
        mail.queue(session, to=address_to, template="postpay_invoice", language=language, now=now, invoice=invoice,
                   first_day=month.first_day, last_day=month.last_day)
    session.flush()
    return invoice


def billable_accounts(*, session: Session) -> list[int]:
    with db.read(session):
        return list(session.scalars(select(Contract.account_id).where(Contract.lot_id.is_not(None))
                                    .order_by(Contract.account_id)))


def close_month(*, session: Session, month: Month, issuer: Issuer, bank: BankAccount,
                now: datetime) -> list[PostpayInvoice]:
    """Every account's invoice for `month`, one unit of work per account (a failing account is
    logged and left for the next run; the others go on)."""
    rules.check_closable(month, now)
    issued = []
    for account_id in billable_accounts(session=session):
        try:
            invoice = close_account(session=session, account_id=account_id, month=month, issuer=issuer, bank=bank,
                                    now=now)
        except Exception:
            session.rollback()
            log.exception("month close %s failed for account %s", month, account_id)
            continue
        if invoice is not None:
            issued.append(invoice)
    return issued


def record_payment(*, session: Session, number: str, amount_yen: int, paid_on: date, reference: str,
                   now: datetime) -> Payment:
    """A bank transfer received for invoice `number`: partial payments add up; more than what is
    still owed is refused. The usage it pays for goes back to the line; an overdue suspension
    ends once no invoice of the account is overdue any more."""
    reference = (reference or "").strip()
    if amount_yen <= 0:
        raise PostpayError("the amount must be positive")
    if not reference or len(reference) > 200:
        raise PostpayError("--reference must say which transfer it was (at most 200 characters)")
    if paid_on > rules.japan_day(now):
        raise PostpayError(f"--paid-on {paid_on.isoformat()} is in the future (today is "
                           f"{rules.japan_day(now).isoformat()} in Japan)")
    with db.write(session):
        account_id = session.scalar(select(PostpayInvoice.account_id).where(PostpayInvoice.number == number))
        if account_id is None:
            raise UnknownInvoice(f"no postpay invoice numbered {number}")
        state, _ = steps.lock(session, account_id)
        invoice = session.scalars(select(PostpayInvoice).where(PostpayInvoice.number == number)
                                  .execution_options(populate_existing=True)).one()
        _refuse_a_second_record(session, invoice, reference, amount_yen, paid_on)
        owed = invoice.total_yen - invoice.paid_yen
        if amount_yen > owed:
            raise Overpayment(f"invoice {number} has ¥{owed:,} left to pay; ¥{amount_yen:,} is more than that")
        restored = rules.restored_by(paid_before=invoice.paid_yen, paying=amount_yen, total_yen=invoice.total_yen,
                                     usage=invoice.usage, restored_before=invoice.restored)
        contract = contract_of(session, account_id)
        ledger_line.give_back_in(session, state, lot_id=contract.lot_id, amount=restored,
                                 key=f"postpay:line:{line_bookings(session, account_id) + 1}",
                                 reason=f"invoice {number}: ¥{amount_yen:,} received", now=now)
        invoice.paid_yen += amount_yen
        invoice.restored += restored
        if invoice.paid_yen == invoice.total_yen:
            invoice.paid_at = now
        payment = Payment(invoice_id=invoice.id, amount_yen=amount_yen, paid_on=paid_on, reference=reference,
                          restored=restored, recorded_at=now)
        session.add(payment)
        audit.record(session, account_id=account_id, user_id=None, action=AuditAction.POSTPAY_PAYMENT, now=now,
                     detail=f"¥{amount_yen:,} received for {number} on {paid_on.isoformat()} ({reference}); "
                            f"¥{invoice.total_yen - invoice.paid_yen:,} left")
        session.flush()
        if (contract.status == ContractStatus.SUSPENDED and contract.suspended_by == SuspendedBy.OVERDUE
                and not overdue_invoices(session, account_id, rules.japan_day(now))):
            resume_in(session, contract, reason=f"overdue invoices paid ({number})", now=now)
        return payment


def _refuse_a_second_record(session: Session, invoice: PostpayInvoice, reference: str, amount_yen: int,
                            paid_on: date) -> None:
    """A transfer is recorded once: the bank's reference names it within its invoice."""
    earlier = session.scalars(select(Payment).where(Payment.invoice_id == invoice.id,
                                                    Payment.reference == reference)).first()
    if earlier is None:
        return
    if (earlier.amount_yen, earlier.paid_on) == (amount_yen, paid_on):
        raise AlreadyRecorded(f"the transfer {reference} of ¥{amount_yen:,} for {invoice.number} was already "
                              f"recorded: nothing changed")
    raise PostpayError(f"the reference {reference} was already recorded for {invoice.number} with "
                       f"¥{earlier.amount_yen:,} paid on {earlier.paid_on.isoformat()}: another transfer needs "
                       f"its own reference")


def overdue_invoices(session: Session, account_id: int, today: date) -> list[PostpayInvoice]:
    return list(session.scalars(select(PostpayInvoice).where(
        PostpayInvoice.account_id == account_id, PostpayInvoice.paid_at.is_(None), PostpayInvoice.due_on < today)))


def invoices_of(*, session: Session, account_id: int) -> list[PostpayInvoice]:
    with db.read(session):
        return list(session.scalars(select(PostpayInvoice).where(PostpayInvoice.account_id == account_id)
                                    .order_by(PostpayInvoice.month.desc())))


def due_closes(*, session: Session, now: datetime) -> tuple[Month, list[int]]:
    """The month the worker closes now (the last one that ended CLOSE_GRACE ago) and the accounts
    whose invoice for it is still to be written: a line whose usage since its last invoice, up to
    the month's end, makes an invoice line of at least ¥1. Read without locks; close_account
    decides under the lock.

    One statement finds the candidates: the lines without this month's invoice whose usage in
    the window comes to ¥1 or more (less can make no invoice line: every line rounds down to
    whole yen). Only those are looked at product by product, as the invoice would be written
    (¥0.6 of SMS and ¥0.6 of OTP make no line either). An account with less is not re-examined
    under its lock on every pass: its usage stays unbilled, and a later month's close covers it
    (the window starts where the last invoice ended)."""
    month = rules.last_closable(now)
    due = []
    with db.read(session):
        for account_id, lot_id, since in session.execute(usage.closable(month=str(month), until=month.ends_at,
                                                                       at_least=rules.MILLI_YEN)).all():
            products = usage.by_product(session, lot_id=lot_id, since=since, until=month.ends_at)
            if rules.invoiced(products):
                due.append(account_id)
    return month, due


def scheduled_close(*, session: Session, issuer: Issuer, bank: BankAccount, now: datetime) -> int:
    """The worker's month close: after midnight Japan time on the 1st (and on every later pass
    until done), each account's invoice for the month that ended. Returns the invoices written."""
    month, due = due_closes(session=session, now=now)
    written = 0
    for account_id in due:
        try:
            written += close_account(session=session, account_id=account_id, month=month, issuer=issuer, bank=bank,
                                     now=now) is not None
        except Exception:
            session.rollback()
            log.exception("month close %s failed for account %s", month, account_id)
    return written
