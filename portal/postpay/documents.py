"""Postpay invoices as documents: what the PDF shows, stored once (the first rendering wins);
and every document the account was issued (receipts, return invoices and monthly invoices) in
one list, as finance searches and exports them."""

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, select, update
from sqlmodel import Session

from portal import db
from portal.billing import invoices as receipts
from portal.clock import JST
from portal.postpay.models import INVOICES, InvoiceLine, PostpayInvoice, Product
from portal.postpay.rules import parse_month

RECEIPT, RETURN, MONTHLY = "invoice", "return", "monthly"  # a document's kind (the first two: billing's InvoiceKind)


@dataclass(frozen=True)
class Issued:
    """One issued document as finance lists it. A receipt or return invoice carries its moment of
    issue; a monthly invoice carries the date printed on it (the 1st after its month) and,
    in `monthly`, its due date and what was paid."""

    kind: str
    number: str
    issued_at: datetime | None  # None for a monthly invoice: its document date is a day
    issued_on: date  # the Japan calendar day of issue, as printed
    transaction_date: date  # a monthly invoice: the last day of the month it bills
    recipient_name: str
    recipient_registration_number: str | None
    amount_yen: int  # excluding tax
    tax_rate: int
    tax_yen: int
    total_yen: int
    issuer_registration_number: str
    replaces: str | None = None
    monthly: PostpayInvoice | None = None
    order: datetime | None = None  # newest first: when it was written


def issued(session: Session, *, account_id: int, search: receipts.Search = receipts.Search()) -> list[Issued]:
    """Every document issued to the account that matches `search` (issue day, counterparty,
    total with tax), newest first: receipts, return invoices and monthly invoices together."""
    found = [_of_receipt(invoice, replaces) for invoice, replaces in
             receipts.invoices_of(session, account_id=account_id, search=search)]
    query = select(PostpayInvoice).where(PostpayInvoice.account_id == account_id)
    if search.issued_from:
        query = query.where(PostpayInvoice.issued_on >= search.issued_from.astimezone(JST).date())
    if search.issued_before:
        query = query.where(PostpayInvoice.issued_on < search.issued_before.astimezone(JST).date())
    if search.counterparty:
        query = query.where(func.lower(PostpayInvoice.recipient_name).contains(search.counterparty.lower(),
                                                                                autoescape=True))
    if search.min_total is not None:
        query = query.where(PostpayInvoice.total_yen >= search.min_total)
    if search.max_total is not None:
        query = query.where(PostpayInvoice.total_yen <= search.max_total)
    with db.read(session):
        found += [_of_monthly(invoice) for invoice in session.scalars(query)]
    return sorted(found, key=lambda document: (document.issued_on, document.order), reverse=True)


def _of_receipt(invoice, replaces: str | None) -> Issued:
    return Issued(
        kind=str(invoice.kind), number=invoice.number, issued_at=invoice.issued_at,
        issued_on=invoice.issued_at.astimezone(JST).date(), transaction_date=invoice.transaction_date.astimezone(JST).date(),
        recipient_name=invoice.recipient_name, recipient_registration_number=invoice.recipient_registration_number,
        amount_yen=invoice.amount_yen, tax_rate=invoice.tax_rate, tax_yen=invoice.tax_yen, total_yen=invoice.total_yen,
        issuer_registration_number=invoice.issuer_registration_number, replaces=replaces, order=invoice.issued_at)


def _of_monthly(invoice: PostpayInvoice) -> Issued:
    return Issued(
        kind=MONTHLY, number=invoice.number, issued_at=None, issued_on=invoice.issued_on,
        transaction_date=parse_month(invoice.month).last_day, recipient_name=invoice.recipient_name,
        recipient_registration_number=invoice.recipient_registration_number, amount_yen=invoice.subtotal_yen,
        tax_rate=invoice.tax_rate, tax_yen=invoice.tax_yen, total_yen=invoice.total_yen,
        issuer_registration_number=invoice.issuer_registration_number, monthly=invoice, order=invoice.issued_at)


def contents(session: Session, *, invoice_id: int) -> tuple[PostpayInvoice, list[InvoiceLine], tuple[date, date]]:
    """The invoice, its lines in product order, and the month it bills (first and last day)."""
    with db.read(session):
        invoice = session.get(PostpayInvoice, invoice_id)
        lines = sorted(session.scalars(select(InvoiceLine).where(InvoiceLine.invoice_id == invoice_id)),
                       key=lambda line: list(Product).index(line.product))
    month = parse_month(invoice.month)
    return invoice, lines, (month.first_day, month.last_day)


def stored_pdf(session: Session, *, invoice_id: int) -> bytes | None:
    with db.read(session):
        return session.scalar(select(INVOICES.c.pdf).where(INVOICES.c.id == invoice_id))


def store_pdf(session: Session, *, invoice_id: int, pdf: bytes) -> bytes:
    """Keep the first rendering: a second one (another worker, a download at the same time)
    is dropped and the stored one returned, so the document never changes once served."""
    with db.write(session):
        session.execute(update(INVOICES).where(INVOICES.c.id == invoice_id, INVOICES.c.pdf.is_(None)).values(pdf=pdf))
        return session.scalar(select(INVOICES.c.pdf).where(INVOICES.c.id == invoice_id))


def unrendered(session: Session) -> list[int]:
    with db.read(session):
        return list(session.scalars(select(INVOICES.c.id).where(INVOICES.c.pdf.is_(None)).order_by(INVOICES.c.id)))


def invoice_of(session: Session, *, account_id: int, number: str) -> PostpayInvoice | None:
    with db.read(session):
        return session.scalars(select(PostpayInvoice).where(PostpayInvoice.account_id == account_id,
                                                            PostpayInvoice.number == number)).first()
