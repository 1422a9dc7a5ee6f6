"""Postpay invoices as documents: what the PDF shows, stored once (the first rendering wins)."""

from datetime import date

from sqlalchemy import select, update
from sqlmodel import Session

from portal import db
from portal.postpay.models import INVOICES, InvoiceLine, PostpayInvoice, Product
from portal.postpay.rules import parse_month


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
