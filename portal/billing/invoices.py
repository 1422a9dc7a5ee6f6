"""Qualified invoices (適格請求書) and return invoices (返還インボイス).

An invoice row is written, with the next number of its series, in the transaction that
confirms the payment or records the refund: every figure the law asks for is frozen there.
Its PDF is rendered afterwards (outside any lock), stored once per language, and served
unchanged ever after. A re-issue is a new invoice, with a new number, that names the one it
replaces."""

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from portal import db
from portal.accounts.models import Language
from portal.billing import rules
from portal.billing.models import (RENDITION_STORED, DocumentCounter, Invoice, InvoiceKind, InvoiceRendition,
                                   PaymentRefund, Purchase)

SERIES = {InvoiceKind.INVOICE: "INV", InvoiceKind.RETURN: "RET"}
REISSUE_REASON_LENGTH = Invoice.__table__.c.reissue_reason.type.length
COUNTERPARTY_LENGTH = Invoice.__table__.c.recipient_name.type.length  # no longer text can name a recipient


class UnknownInvoice(LookupError):
    pass


class ReasonTooLong(ValueError):
    """A re-issue's reason is printed on the document: it must fit, whole, in its field."""

    def __init__(self, limit: int):
        super().__init__(f"at most {limit} characters")
        self.limit = limit


def next_number(session: Session, series: str) -> str:
    """Bump the series' counter in the caller's transaction: the row stays locked until it
    commits, and a rollback gives the number back, so numbers have no gaps."""
    table = DocumentCounter.__table__
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(series=series, last_number=1)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.series], set_={"last_number": table.c.last_number + 1}
    ).returning(table.c.last_number)
    number = session.execute(statement).scalar_one()
    return f"{series}-{number:08d}"


def issue_in(session: Session, *, purchase: Purchase, issuer, now: datetime) -> Invoice:
    """The qualified invoice for a confirmed payment (inside the fulfilment transaction)."""
    invoice = Invoice(
        number=next_number(session, SERIES[InvoiceKind.INVOICE]), kind=InvoiceKind.INVOICE, account_id=purchase.account_id,
        purchase_id=purchase.id, issued_at=now, transaction_date=purchase.paid_at, issuer_name=issuer.name,
        issuer_registration_number=issuer.registration_number, recipient_name=purchase.recipient_name,
        recipient_address=purchase.recipient_address,
        recipient_registration_number=purchase.recipient_registration_number, credit_yen=purchase.amount_yen,
        amount_yen=purchase.amount_yen, tax_rate=purchase.tax_rate, tax_yen=purchase.tax_yen,
        total_yen=purchase.total_yen,
    )
    session.add(invoice)
    session.flush()
    return invoice


def issue_return_in(session: Session, *, purchase: Purchase, refund: PaymentRefund, issuer, now: datetime) -> Invoice:
    """A return invoice for a refund (tax included) of ¥10,000 or more."""
    tax = rules.tax_within(refund.amount_yen, purchase.tax_rate)
    invoice = Invoice(
        number=next_number(session, SERIES[InvoiceKind.RETURN]), kind=InvoiceKind.RETURN, account_id=purchase.account_id,
        purchase_id=purchase.id, refund_id=refund.id, issued_at=now, transaction_date=refund.refunded_at,
        original_date=purchase.paid_at, issuer_name=issuer.name, issuer_registration_number=issuer.registration_number,
        recipient_name=purchase.recipient_name, recipient_address=purchase.recipient_address,
        recipient_registration_number=purchase.recipient_registration_number, credit_yen=purchase.amount_yen,
        amount_yen=refund.amount_yen - tax, tax_rate=purchase.tax_rate, tax_yen=tax, total_yen=refund.amount_yen,
    )
    session.add(invoice)
    session.flush()
    return invoice


def reissue(*, session: Session, number: str, reason: str, recipient_name: str | None, issuer, now: datetime) -> Invoice:
    """Issue a corrected copy under a new number (for example after the customer's legal name
    changed); the original stays as it was."""
    if len(reason) > REISSUE_REASON_LENGTH:
        raise ReasonTooLong(REISSUE_REASON_LENGTH)
    with db.write(session):
        original = session.scalars(select(Invoice).where(Invoice.number == number)).first()
        if original is None:
            raise UnknownInvoice(number)
        copy = Invoice(
            **{column: getattr(original, column) for column in (
                "kind", "account_id", "purchase_id", "refund_id", "transaction_date", "original_date",
                "recipient_address", "recipient_registration_number", "credit_yen", "amount_yen", "tax_rate",
                "tax_yen", "total_yen")},
            number=next_number(session, SERIES[original.kind]), reissue_of=original.id, reissue_reason=reason,
            issued_at=now, issuer_name=issuer.name, issuer_registration_number=issuer.registration_number,
            recipient_name=recipient_name or original.recipient_name,
        )
        session.add(copy)
    return copy


@dataclass(frozen=True)
class Search:
    """Finance's filters: issue date range (UTC bounds), counterparty text, total range."""

    issued_from: datetime | None = None
    issued_before: datetime | None = None
    counterparty: str = ""
    min_total: int | None = None
    max_total: int | None = None


def invoices_of(session: Session, *, account_id: int, search: Search = Search()) -> list[tuple[Invoice, str | None]]:
    """The account's invoices matching `search`, newest first, each with the number it
    re-issues (if any)."""
    query = select(Invoice).where(Invoice.account_id == account_id)
    if search.issued_from:
        query = query.where(Invoice.issued_at >= search.issued_from)
    if search.issued_before:
        query = query.where(Invoice.issued_at < search.issued_before)
    if search.counterparty:
        query = query.where(func.lower(Invoice.recipient_name).contains(search.counterparty.lower(), autoescape=True))
    if search.min_total is not None:
        query = query.where(Invoice.total_yen >= search.min_total)
    if search.max_total is not None:
        query = query.where(Invoice.total_yen <= search.max_total)
    with db.read(session):
        rows = session.scalars(query.order_by(Invoice.id.desc())).all()
        all_numbers = dict(session.execute(select(Invoice.id, Invoice.number).where(Invoice.account_id == account_id)).all())
    return [(row, all_numbers.get(row.reissue_of)) for row in rows]


def invoices_of_purchase(session: Session, *, purchase_id: int) -> list[Invoice]:
    with db.read(session):
        return list(session.scalars(select(Invoice).where(Invoice.purchase_id == purchase_id).order_by(Invoice.id)))


def invoice_of(session: Session, *, account_id: int, number: str) -> Invoice | None:
    with db.read(session):
        return session.scalars(select(Invoice).where(Invoice.number == number, Invoice.account_id == account_id)).first()


def stored_pdf(session: Session, *, invoice_id: int, language: Language) -> bytes | None:
    with db.read(session):
        return session.scalar(select(InvoiceRendition.pdf).where(InvoiceRendition.invoice_id == invoice_id,
                                                                 InvoiceRendition.language == language))


def store_pdf(session: Session, *, invoice_id: int, language: Language, pdf: bytes, now: datetime) -> bytes:
    """Keep the first rendition; if another process stored one meanwhile, that one wins and
    is returned, so every download of a document is byte-identical."""
    try:
        with db.write(session):
            session.execute(insert(InvoiceRendition.__table__).values(
                invoice_id=invoice_id, language=language, pdf=pdf, sha256=hashlib.sha256(pdf).hexdigest(),
                rendered_at=now,
            ))
    except IntegrityError as error:
        if db.violated_constraint(error) != RENDITION_STORED:
            raise
        return stored_pdf(session, invoice_id=invoice_id, language=language)
    return pdf


def unrendered(session: Session, *, limit: int = 20) -> list[int]:
    """Invoices without their Japanese PDF yet (the worker renders them)."""
    done = select(InvoiceRendition.invoice_id).where(InvoiceRendition.language == Language.JA)
    with db.read(session):
        return list(session.scalars(select(Invoice.id).where(Invoice.id.not_in(done)).order_by(Invoice.id).limit(limit)))


def get(session: Session, *, invoice_id: int) -> Invoice:
    with db.read(session):
        return session.get(Invoice, invoice_id)


def replaced_number(session: Session, invoice: Invoice) -> str | None:
    if invoice.reissue_of is None:
        return None
    with db.read(session):
        return session.scalar(select(Invoice.number).where(Invoice.id == invoice.reissue_of))

