"""What the customer reads in their language, rendered with the app's templates and catalog:
invoice PDFs (WeasyPrint with Noto Sans CJK JP, once per invoice and language, then stored by
billing.invoices), monthly usage statements (rendered on each request: a month still running
changes) and a checkout's line items. Outside the billing and usage packages, which gather the
data and keep the rules but render nothing."""

from datetime import date, datetime

from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _

from portal.billing import invoices
from portal.billing import service as billing
from portal.billing.models import Invoice
from portal.usage import service as usage


def _pdf(template_name: str, *, language: str, **context) -> bytes:
    from weasyprint import HTML  # imported on first use: loading WeasyPrint takes a while

    with force_locale(language):
        template = current_app.jinja_env.get_template(template_name)
        context["language"] = language
        current_app.update_template_context(context)
        html = template.render(context)
    return HTML(string=html, base_url=str(current_app.root_path)).write_pdf()


def render(invoice: Invoice, *, language: str, replaces: str | None) -> bytes:
    return _pdf("billing/invoice_pdf.html", language=language, invoice=invoice, replaces=replaces)


def statement_pdf(session, *, account_id: int, account_name: str, month: date, language: str, now: datetime) -> bytes:
    """The month's usage statement as a PDF, addressed to the billing profile's legal name
    (the account's name before there is one)."""
    statement = usage.monthly_statement(session, account_id=account_id, month=month)
    profile = billing.profile_of(session, account_id=account_id)
    return _pdf("statements/statement_pdf.html", language=language, statement=statement, month=month,
                addressee=profile.legal_name if profile else account_name, issued_at=now)


def pdf_of(session, *, invoice_id: int, language: str, now: datetime) -> bytes:
    """The stored PDF, rendering and storing it first if this is its first request."""
    stored = invoices.stored_pdf(session, invoice_id=invoice_id, language=language)
    if stored is not None:
        return stored
    invoice = invoices.get(session, invoice_id=invoice_id)
    pdf = render(invoice, language=language, replaces=invoices.replaced_number(session, invoice))
    return invoices.store_pdf(session, invoice_id=invoice_id, language=language, pdf=pdf, now=now)


def render_pending(session, *, now: datetime) -> int:
    """Render the Japanese PDF of every invoice that has none yet (the worker's job; a crash
    between issuing and rendering loses nothing)."""
    done = 0
    for invoice_id in invoices.unrendered(session):
        pdf_of(session, invoice_id=invoice_id, language="ja", now=now)
        done += 1
    return done


def render_postpay(invoice, lines, *, period) -> bytes:
    """A month's postpay invoice (請求書) in the customer's language (the invoice's)."""
    from weasyprint import HTML

    language = str(invoice.language)
    with force_locale(language):
        template = current_app.jinja_env.get_template("billing/postpay_invoice_pdf.html")
        context = {"invoice": invoice, "lines": lines, "period": period, "language": language}
        current_app.update_template_context(context)
        html = template.render(context)
    return HTML(string=html, base_url=str(current_app.root_path)).write_pdf()


def postpay_pdf_of(session, *, invoice_id: int) -> bytes:
    """The stored PDF of a postpay invoice, rendering and storing it on its first request."""
    from portal.postpay import documents as postpay_documents

    stored = postpay_documents.stored_pdf(session, invoice_id=invoice_id)
    if stored is not None:
        return stored
    invoice, lines, period = postpay_documents.contents(session, invoice_id=invoice_id)
    return postpay_documents.store_pdf(session, invoice_id=invoice_id, pdf=render_postpay(invoice, lines, period=period))


def render_pending_postpay(session) -> int:
    from portal.postpay import documents as postpay_documents

    done = 0
    for invoice_id in postpay_documents.unrendered(session):
        postpay_pdf_of(session, invoice_id=invoice_id)
        done += 1
    return done


def checkout_lines(amount_yen: int, tax_rate: int, language: str) -> tuple[str, str]:
    """The checkout's line items in the customer's language, from the same catalog as the receipt."""
    with force_locale(language):
        return (_("Chotto prepaid credit %(credit)s (valid for 90 days from payment)", credit=f"¥{amount_yen:,}"),
                _("Consumption tax %(rate)s%%", rate=tax_rate))
