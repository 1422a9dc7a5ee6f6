"""Billing behind the scenes: a missed webhook caught up by the worker, payments checked
against the ledger, invoice numbers without gaps under concurrency, immutable documents,
re-issues."""

import io
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from pypdf import PdfReader
from sqlalchemy import select, text
from sqlalchemy.exc import DatabaseError

from portal import worker
from portal.billing import invoices
from portal.billing.models import Invoice, InvoiceRendition
from portal.billing.operator import check_payments
from portal.ledger import service as ledger
from tests.helpers import db_session
from tests.integration.test_stripe import customer, paid_purchase, send, snapshot, start

YEN = 1000


def cli(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def test_a_payment_whose_webhook_never_came_is_credited_by_the_worker(stripe_app, stripe, clock):
    user, account_id = customer(stripe_app)
    purchase = start(stripe_app, user, account_id)
    stripe.pay_by_card(purchase.checkout_session_id, clock())
    assert worker.billing_round(stripe_app) == 0  # quiet for less than 10 minutes: left alone
    clock.advance(minutes=10)
    assert worker.billing_round(stripe_app) >= 1
    state = snapshot(stripe_app, purchase.id)
    assert state["status"] == "paid" and state["lot"][0] == 1000 * YEN and state["invoices"] == ["invoice"]
    with db_session(stripe_app) as session:
        assert session.scalars(select(InvoiceRendition.language)).all() == ["ja"]
    # the webhook arriving late changes nothing
    send(stripe_app, stripe, "checkout.session.completed", purchase.checkout_session_id, clock)
    assert snapshot(stripe_app, purchase.id) == state


def test_an_unreachable_gateway_does_not_stop_the_round(stripe_app, stripe, clock):
    user, account_id = customer(stripe_app)
    start(stripe_app, user, account_id)
    clock.advance(minutes=11)
    stripe.fail_next = 100
    assert worker.billing_round(stripe_app) == 0


def test_ledger_check_compares_paid_purchases_with_purchase_lots(stripe_app, stripe, clock):
    purchase, account_id = paid_purchase(stripe_app, stripe, clock)
    result = cli(stripe_app, "ledger", "check")
    assert result.exit_code == 0, result.output
    with db_session(stripe_app) as session:
        assert check_payments(session) == []
        ledger.grant_purchase(session=session, account_id=account_id, amount=500 * YEN, paid_at=clock(),
                              payment_ref="pi_without_a_purchase", now=clock())
    result = cli(stripe_app, "ledger", "check")
    assert result.exit_code == 1
    assert (f"account {account_id}: paid purchases stand for 1000000 milli-yen of credit; purchase lots hold 1500000"
            in result.output)


def test_invoice_numbers_have_no_gaps_when_payments_are_confirmed_in_parallel(stripe_app, stripe, clock):
    purchases = []
    for n in range(8):
        user, account_id = customer(stripe_app, email=f"owner{n}@example.com")
        purchase = start(stripe_app, user, account_id)
        stripe.pay_by_card(purchase.checkout_session_id, clock())
        purchases.append(purchase)
    barrier = threading.Barrier(len(purchases))

    def confirm(purchase):
        payload = stripe.event("checkout.session.completed", purchase.checkout_session_id, clock())
        from tests.stripe_fake import signature

        client = stripe_app.test_client()
        barrier.wait()
        return client.post("/webhooks/stripe", data=payload, headers={"Stripe-Signature": signature(payload, clock())}).status_code

    with ThreadPoolExecutor(len(purchases)) as pool:
        assert list(pool.map(confirm, purchases)) == [200] * len(purchases)
    with db_session(stripe_app) as session:
        numbers = sorted(session.scalars(select(Invoice.number)).all())
    assert numbers == [f"INV-{n:08d}" for n in range(1, len(purchases) + 1)]


def receipts_rendered_by_the_worker(app, clock) -> int:
    """The webhook only records the payment; the worker's billing round renders the receipt."""
    from portal.documents import render_pending

    with app.app_context(), db_session(app) as session:
        return render_pending(session, now=clock())


def test_issued_invoices_and_their_pdfs_cannot_be_changed_or_deleted(stripe_app, stripe, clock):
    paid_purchase(stripe_app, stripe, clock)
    assert receipts_rendered_by_the_worker(stripe_app, clock) == 1
    statements = ["UPDATE invoices SET total_yen = 1", "DELETE FROM invoices",
                  "UPDATE invoice_renditions SET pdf = NULL", "DELETE FROM invoice_renditions"]
    for statement in statements:
        with db_session(stripe_app) as session:
            with pytest.raises(DatabaseError):
                session.execute(text(statement))
                session.commit()
            session.rollback()


@pytest.mark.pdf
def test_a_reissue_gets_a_new_number_names_the_original_and_leaves_it_unchanged(stripe_app, stripe, clock):
    paid_purchase(stripe_app, stripe, clock)
    assert receipts_rendered_by_the_worker(stripe_app, clock) == 1
    with db_session(stripe_app) as session:
        [original] = session.scalars(select(Invoice)).all()
        original_pdf = session.scalars(select(InvoiceRendition.pdf)).one()
    result = cli(stripe_app, "invoices", "reissue", original.number, "--reason", "Legal name corrected",
                 "--recipient-name", "Example Holdings KK")
    assert result.exit_code == 0, result.output
    assert f"re-issued {original.number} as INV-00000002" in result.output
    with db_session(stripe_app) as session:
        copy = session.scalars(select(Invoice).where(Invoice.number == "INV-00000002")).one()
        pdf = invoices.stored_pdf(session, invoice_id=copy.id, language="ja")
        assert invoices.stored_pdf(session, invoice_id=original.id, language="ja") == original_pdf
    assert copy.reissue_of == original.id and copy.total_yen == original.total_yen
    text_of = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    assert "再発行" in text_of and original.number in text_of and "Example Holdings KK" in text_of
    assert cli(stripe_app, "invoices", "reissue", "INV-99999999", "--reason", "x").exit_code != 0


def test_a_reissue_reason_that_would_not_fit_the_document_is_refused_not_cut(stripe_app, stripe, clock):
    paid_purchase(stripe_app, stripe, clock)
    with db_session(stripe_app) as session:
        [original] = session.scalars(select(Invoice.number)).all()
    result = cli(stripe_app, "invoices", "reissue", original, "--reason", "x" * 301)
    assert result.exit_code == 1 and "at most 300 characters (this one has 301)" in result.output
    with db_session(stripe_app) as session:
        assert session.scalars(select(Invoice.number)).all() == [original]


@pytest.mark.pdf
def test_english_receipts_are_rendered_on_request_and_kept(stripe_app, stripe, clock):
    paid_purchase(stripe_app, stripe, clock)
    with stripe_app.app_context(), db_session(stripe_app) as session:
        from portal.documents import pdf_of

        invoice = session.scalars(select(Invoice)).one()
        first = pdf_of(session, invoice_id=invoice.id, language="en", now=clock())
        assert pdf_of(session, invoice_id=invoice.id, language="en", now=clock()) == first
    text_of = "".join(page.extract_text() for page in PdfReader(io.BytesIO(first)).pages)
    for expected in ("Receipt and qualified invoice", "T7123456789012", "¥1,100", "10%", "Example KK"):
        assert expected in text_of
