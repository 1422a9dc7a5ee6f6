"""Invoice PDFs: a Jinja template rendered by WeasyPrint with Noto Sans CJK JP, once per
invoice and language, then stored (see invoices.store_pdf)."""

from datetime import datetime

from flask import current_app
from flask_babel import force_locale

from portal.billing import invoices
from portal.billing.models import Invoice


def render(invoice: Invoice, *, language: str, replaces: str | None) -> bytes:
    from weasyprint import HTML

    with force_locale(language):
        template = current_app.jinja_env.get_template("billing/invoice_pdf.html")
        context = {"invoice": invoice, "replaces": replaces, "language": language}
        current_app.update_template_context(context)
        html = template.render(context)
    return HTML(string=html, base_url=str(current_app.root_path)).write_pdf()


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
