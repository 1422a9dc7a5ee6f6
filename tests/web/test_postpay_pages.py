"""Invoice billing in the portal: a company's owners and billing members apply (the operator is
mailed), see the contract's status (applied, approved with its limit and terms, declined,
suspended), the line's figures on the dashboard and the invoices beside the receipts; in both
languages, with no stray space on Japanese pages."""

from datetime import datetime, timezone

from portal.clock import JST
from tests.helpers import PASSWORD, PageClient, db_session, make_user, mails_to
from tests.postpay.helpers import YEN, approved, cli, company
from tests.postpay.test_operator import debit
from tests.web.test_japanese_pages import strays

EMAIL = "owner@kaisha.example"
APPLICATION = {"legal_name": "株式会社カイシャ", "address": "東京都千代田区丸の内1-1-1", "registration_number": "",
               "contact_name": "経理 花子", "contact_email": "keiri@kaisha.example", "expected_monthly_yen": "５０,０００"}


def signed_in(app, email=EMAIL):
    client = PageClient(app.test_client(), app)
    client.login(email, PASSWORD)
    return client


def test_a_company_applies_the_operator_is_mailed_then_sees_each_status(app, clock):
    company(app)
    client = signed_in(app)
    form = client.page("/billing/invoice-billing")
    assert form.select_one('form[action="/billing/invoice-billing"]') is not None
    refused = client.post("/billing/invoice-billing", APPLICATION | {"expected_monthly_yen": "lots"}, status=422)
    assert "for example 50000" in refused.get_data(as_text=True)
    client.post("/billing/invoice-billing", APPLICATION, status=302)
    page = client.page("/billing/invoice-billing")
    assert page.select_one('[data-testid="applied"]') is not None and "¥50,000" in page.text
    [told] = mails_to(app, "operator@chotto.localhost")
    assert "株式会社カイシャ" in told.subject and "keiri@kaisha.example" in told.text_body
    assert "applied" in cli(app, "postpay", "list", "--status", "applied").output

    assert cli(app, "postpay", "decline", EMAIL, "--reason", "Please send the company registry first").exit_code == 0
    page = client.page("/billing/invoice-billing")
    assert "Please send the company registry first" in page.select_one('[data-testid="declined"]').text
    assert page.select_one('form[action="/billing/invoice-billing"]') is not None  # may apply again

    assert cli(app, "postpay", "approve", EMAIL, "--limit", 100_000, "--terms", "Contract K-123").exit_code == 0
    page = client.page("/billing/invoice-billing")
    assert page.select_one('[data-testid="line-limit"]').text.strip() == "¥100,000"
    assert "end of the month after the invoice month" in page.text and "Contract K-123" in page.text
    assert page.select_one('form[action="/billing/invoice-billing"]') is None
    client.post("/billing/invoice-billing", APPLICATION, status=409)

    clock.advance(seconds=1)
    assert cli(app, "postpay", "suspend", EMAIL, "--reason", "review").exit_code == 0
    page = client.page("/billing/invoice-billing")
    assert page.select_one('[data-testid="suspended"]') is not None


def test_the_dashboard_shows_prepaid_credit_and_the_line(app):
    _, account_id, _ = approved(app, limit=1000, prepaid=20)
    debit(app, account_id, 50 * YEN, "sms", app.config["CLOCK"]())
    client = signed_in(app)
    page = client.page("/dashboard")
    assert page.select_one('[data-testid="available"]').text.strip() == "¥970"
    assert "Prepaid credit ¥0, credit line ¥970" in page.select_one('[data-testid="available-parts"]').text
    assert "¥30 used of ¥1,000" in page.select_one('[data-testid="credit-line"]').text
    statement = client.text("/credit/statement")
    assert "Credit line (invoice billing)" in statement


def test_an_individual_account_is_told_invoice_billing_is_for_companies(app):
    make_user(app, email="solo@example.com")
    client = signed_in(app, "solo@example.com")
    page = client.page("/billing/invoice-billing")
    assert "for company accounts" in page.text and page.select_one("form[action='/billing/invoice-billing']") is None
    client.post("/billing/invoice-billing", APPLICATION, status=409)


def test_a_developer_cannot_see_invoice_billing(app):
    from portal.accounts.models import Membership, Role
    from sqlalchemy import select
    user, account_id = company(app)
    developer = make_user(app, email="dev@kaisha.example")
    with db_session(app) as session:
        membership = session.scalars(select(Membership).where(Membership.user_id == developer.id)).one()
        membership.account_id, membership.role = account_id, Role.DEVELOPER
        session.commit()
    signed_in(app, "dev@kaisha.example").get("/billing/invoice-billing", status=403)


def test_the_japanese_pages_read_well(app, clock):
    _, account_id, _ = approved(app, limit=1000)
    debit(app, account_id, 50 * YEN, "sms", datetime(2026, 11, 20, tzinfo=timezone.utc))
    clock.at = datetime(2026, 12, 1, 1, tzinfo=JST)
    assert cli(app, "postpay", "close-month").exit_code == 0
    client = signed_in(app)
    client.post("/language/ja", {"next": "/dashboard"}, status=302)
    for path in ("/billing/invoice-billing", "/billing/invoices", "/dashboard"):
        assert strays(client.get(path).get_data(as_text=True)) == [], path
    page = client.page("/billing/invoice-billing")
    text = page.text
    assert "後払い枠" in text and "P202611-" in text and "未払い" in text
