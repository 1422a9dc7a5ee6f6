"""The worker's month close with a fixed clock: after midnight Japan time on the 1st (with the
grace), one invoice per account, mailed through the outbox to the owners and billing members,
its PDF in the customer's language carrying a qualified invoice's items, the due date and the
bank account; listed with the receipts and downloadable by the account only."""

import io
from datetime import datetime, timezone

import pytest
from pypdf import PdfReader
from sqlalchemy import func, select

from portal import worker
from portal.clock import JST
from portal.outbox import OutboxMessage
from portal.postpay.models import PostpayInvoice
from tests.helpers import PASSWORD, PageClient, db_session, deliver_outbox, mails_to
from tests.postpay.helpers import YEN, approved, cli, company
from tests.postpay.test_operator import debit

EMAIL = "owner@kaisha.example"


def invoice_mails(app, email=EMAIL):
    return [mail for mail in mails_to(app, email) if "Invoice P" in mail.subject or "請求書" in mail.subject]


def invoices(app):
    with db_session(app) as session:
        return list(session.scalars(select(PostpayInvoice)))


def outbox_rows(app):
    with db_session(app) as session:
        return session.scalar(select(func.count()).select_from(OutboxMessage))


def november(app):
    _, account_id, _ = approved(app, limit=10_000)
    debit(app, account_id, 1200 * YEN, "nov-sms", datetime(2026, 11, 20, tzinfo=timezone.utc))
    debit(app, account_id, 30 * YEN, "nov-otp", datetime(2026, 11, 21, tzinfo=timezone.utc), reason="OTP x")
    return account_id


def test_the_worker_closes_the_month_after_midnight_japan_time_once(app, clock):
    account_id = november(app)
    clock.at = datetime(2026, 12, 1, 0, 4, 59, tzinfo=JST)
    assert worker.postpay_round(app) == 0 and invoices(app) == []
    clock.at = datetime(2026, 12, 1, 0, 5, tzinfo=JST)
    assert worker.postpay_round(app) == 2  # the invoice, then its PDF
    mails = invoice_mails(app)
    assert len(mails) == 1 and f"P202611-{account_id:06d}" in mails[0].subject
    assert "¥1,353" in mails[0].text_body and "/billing/invoice-billing/invoices/" in mails[0].text_body
    clock.advance(hours=5)
    assert worker.postpay_round(app) == 0  # a later pass finds the invoice: nothing more
    assert len(invoices(app)) == 1 and len(invoice_mails(app)) == 1
    assert cli(app, "ledger", "check").exit_code == 0


def test_a_crash_after_the_invoice_before_its_mail_leaves_loses_and_doubles_nothing(app, clock, monkeypatch):
    november(app)
    clock.at = datetime(2026, 12, 1, 1, tzinfo=JST)
    from portal.mail import DevMailbox

    def down(self, **kwargs):
        raise ConnectionError("the mail server is down: the process dies here")

    monkeypatch.setattr(DevMailbox, "send", down)
    assert cli(app, "postpay", "close-month").exit_code == 0
    deliver_outbox(app)  # fails: the mail stays in the outbox
    monkeypatch.undo()
    assert cli(app, "postpay", "close-month").exit_code == 0  # a rerun: the same invoice, no second mail
    clock.advance(hours=1)  # past the outbox's back-off
    assert len(invoice_mails(app)) == 1 and len(invoices(app)) == 1


@pytest.mark.pdf
@pytest.mark.parametrize("language", ["ja", "en"])
def test_the_pdf_carries_the_items_of_a_qualified_invoice_the_due_date_and_the_bank_account(app, clock, language):
    from portal.accounts.models import Account
    _, account_id, _ = approved(app, limit=10_000)
    with db_session(app) as session:
        session.get(Account, account_id).language = language
        session.commit()
    debit(app, account_id, 1200 * YEN, "nov-sms", datetime(2026, 11, 20, tzinfo=timezone.utc))
    clock.at = datetime(2026, 12, 1, 1, tzinfo=JST)
    assert cli(app, "postpay", "close-month").exit_code == 0
    [invoice] = invoices(app)
    client = PageClient(app.test_client(), app)
    client.login(EMAIL, PASSWORD)
    response = client.get(f"/billing/invoice-billing/invoices/{invoice.number}.pdf")
    assert response.headers["Content-Type"] == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(response.data)).pages)
    flat = "".join(text.split())
    expected = {
        "ja": ["請求書", "適格請求書", "T7123456789012", "登録番号", "2026年12月1日", "2026年12月31日", "2026年11月1日",
               "2026年11月30日", "SMS", "10%", "¥1,200", "¥120", "¥1,320", "サンプル銀行", "普通", "0000000"],
        "en": ["Invoice", "T7123456789012", "Registration number", "December 1, 2026", "December 31, 2026",
               "November 1, 2026", "November 30, 2026", "SMS", "10%", "¥1,200", "¥120", "¥1,320", "サンプル銀行",
               "0000000"],
    }[language]
    for item in expected:
        assert "".join(item.split()) in flat, (item, text)
    assert client.get(f"/billing/invoice-billing/invoices/{invoice.number}.pdf").data == response.data  # stored once


def test_the_invoice_is_listed_with_the_receipts_and_only_its_account_downloads_it(app, clock):
    november(app)
    clock.at = datetime(2026, 12, 1, 1, tzinfo=JST)
    assert cli(app, "postpay", "close-month").exit_code == 0
    [invoice] = invoices(app)
    owner = PageClient(app.test_client(), app)
    owner.login(EMAIL, PASSWORD)
    page = owner.page("/billing/invoices")
    row = page.select_one(f'[data-testid="download-{invoice.number}"]')
    assert row is not None and "¥1,353" in page.select_one("#documents").text
    assert "Unpaid" in page.select_one(f'[data-testid="monthly-{invoice.number}"]').text
    assert owner.get(row["href"]).headers["Content-Type"] == "application/pdf"
    company(app, email="other@kaisha.example")
    other = PageClient(app.test_client(), app)
    other.login("other@kaisha.example", PASSWORD)
    other.get(row["href"], status=404)


def test_a_line_whose_usage_makes_no_invoice_line_is_not_closed_on_every_pass_and_is_billed_later(app, clock,
                                                                                                 monkeypatch):
    """Under ¥1 (or under ¥1 per product) no invoice is written: the month-close pass skips the
    account without locking it, and the usage is billed with a later month's."""
    from portal.postpay import invoices as postpay_invoices

    under = approved(app, limit=10_000, email="under@kaisha.example")[1]
    split = approved(app, limit=10_000, email="split@kaisha.example")[1]
    exact = approved(app, limit=10_000, email="exact@kaisha.example")[1]
    november_20 = datetime(2026, 11, 20, tzinfo=timezone.utc)
    debit(app, under, 999, "under-sms", november_20)
    debit(app, split, 600, "split-sms", november_20)
    debit(app, split, 600, "split-otp", november_20, reason="OTP x")  # ¥1.2 in all, ¥0 on each line
    debit(app, exact, YEN, "exact-sms", november_20)
    closed = []
    close_account = postpay_invoices.close_account
    monkeypatch.setattr(postpay_invoices, "close_account",
                        lambda **kwargs: closed.append(kwargs["account_id"]) or close_account(**kwargs))
    clock.at = datetime(2026, 12, 1, 0, 5, tzinfo=JST)
    with db_session(app) as session:
        assert postpay_invoices.due_closes(session=session, now=clock.at)[1] == [exact]
    for _ in range(3):
        worker.postpay_round(app)
        clock.advance(minutes=1)
    assert closed == [exact]  # the exact yen closed once; the others never examined under a lock
    assert [(invoice.account_id, invoice.subtotal_yen) for invoice in invoices(app)] == [(exact, 1)]
    debit(app, under, 1, "under-december", datetime(2026, 12, 10, tzinfo=timezone.utc))  # ¥1.000 with November's
    clock.at = datetime(2027, 1, 1, 0, 5, tzinfo=JST)
    with db_session(app) as session:
        assert postpay_invoices.due_closes(session=session, now=clock.at)[1] == [under]
    worker.postpay_round(app)
    [billed] = [invoice for invoice in invoices(app) if invoice.account_id == under]
    assert (billed.month, billed.usage, billed.subtotal_yen) == ("2026-12", 1000, 1)
    assert cli(app, "ledger", "check").exit_code == 0


def test_the_monthly_invoice_is_searched_and_exported_with_the_receipts(app, clock):
    from tests.web.test_buy_credit import PROFILE, pay_in_sandbox

    account_id = november(app)
    clock.at = datetime(2026, 12, 1, 1, tzinfo=JST)
    assert cli(app, "postpay", "close-month").exit_code == 0
    [invoice] = invoices(app)
    number = f"P202611-{account_id:06d}"
    owner = PageClient(app.test_client(), app)
    owner.login(EMAIL, PASSWORD)
    owner.post("/billing/profile", PROFILE | {"legal_name": "Receipts KK"}, status=302)
    clock.advance(minutes=1)
    pay_in_sandbox(owner, 1000)  # a receipt the same day, after the invoice

    def listed(query=""):
        page = owner.page(f"/billing/invoices?{query}")
        return [(row.select_one("td").get_text(strip=True), row["data-kind"]) for row in page.select("tbody tr")]

    assert listed() == [("INV-00000001", "invoice"), (number, "monthly")]
    page = owner.page("/billing/invoices")
    assert "Monthly invoice (qualified invoice)" in page.select("tbody tr")[1].get_text()
    assert owner.get(page.select_one(f'[data-testid="download-{number}"]')["href"]).mimetype == "application/pdf"
    assert listed("min=1353&max=1353") == [(number, "monthly")]  # the total with tax: ¥1,230 + ¥123
    assert listed("max=1352") == [("INV-00000001", "invoice")]
    assert listed(f"q={invoice.recipient_name[:5].lower()}") == [(number, "monthly")]
    assert listed("from=2026-12-01&to=2026-12-01") == [("INV-00000001", "invoice"), (number, "monthly")]
    assert listed("to=2026-11-30") == [] and listed("from=2026-12-02") == []

    body = owner.get("/billing/invoices.csv").get_data(as_text=True)
    rows = body.strip().splitlines()
    assert len(rows) == 3 and rows[1].startswith("INV-00000001,Receipt (qualified invoice),")
    assert rows[2] == (f"{number},Monthly invoice (qualified invoice),2026-12-01,2026-11-30,{invoice.recipient_name},,"
                       "1230,10,123,1353,,T7123456789012")
    assert owner.get("/billing/invoices.csv?min=1353").get_data(as_text=True).strip().splitlines()[1].startswith(number)
    owner.post("/language/ja", {"next": "/dashboard"}, status=302)
    assert "月次の請求書（適格請求書）" in owner.page("/billing/invoices").select("tbody tr")[1].get_text()
    assert f"{number},月次の請求書（適格請求書）,2026-12-01," in owner.get("/billing/invoices.csv").get_data(as_text=True)
