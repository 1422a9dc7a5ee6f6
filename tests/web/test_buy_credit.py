"""Buying credit in the browser with the sandbox gateway: profile, amount, final
confirmation, sandbox checkout, status, history, receipts; boundaries and roles."""

import io
from datetime import timedelta

import pytest
from pypdf import PdfReader
from sqlalchemy import select

from portal.billing.models import Purchase
from portal.ledger import queries
from tests.helpers import PageClient, db_session, deliver_outbox, mails_to, make_user
from tests.web.test_dashboard import signed_in

PROFILE = {"legal_name": "Example KK", "postal_code": "100-0001", "address": "1-1 Chiyoda, Chiyoda-ku, Tokyo",
           "billing_email": "finance@example.com", "tax_residency": "JP", "registration_number": ""}


def with_profile(app, **kwargs):
    client, account_id = signed_in(app, **kwargs)
    client.post("/billing/profile", PROFILE, status=302)
    return client, account_id


def confirmed(client, amount) -> dict:
    """The hidden fields of the confirmation screen: what the customer confirms by paying."""
    page = client.page(f"/credit/buy/confirm?amount={amount}")
    return {name: page.select_one(f"input[name={name}]")["value"] for name in ("amount", "total", "intent")}


def pay_in_sandbox(client, amount, action="pay"):
    response = client.post("/credit/buy/confirm", confirmed(client, amount), status=303)
    checkout = response.headers["Location"]
    assert "/sandbox/checkout/cs_sandbox_" in checkout
    path = checkout.split("portal.chotto.test", 1)[1]
    page = client.page(path)
    assert "no real money" in page.get_text()
    response = client.post(path, {"action": action}, status=302)
    return response.headers["Location"]


def available(app, account_id):
    with db_session(app) as session:
        return queries.summary(session, account_id=account_id, now=app.config["CLOCK"]()).available


def test_the_first_purchase_asks_for_the_billing_profile_first(app):
    client, _ = signed_in(app)
    response = client.get("/credit/buy/confirm?amount=1000", status=302)
    assert "/billing/profile" in response.headers["Location"]
    assert "next=" in response.headers["Location"]


def test_confirmation_screen_shows_credit_tax_total_validity_and_refund_policy(app):
    client, _ = with_profile(app)
    page = client.page("/credit/buy/confirm?amount=1000")
    assert page.select_one("[data-testid=credit]").get_text(strip=True) == "¥1,000"
    assert page.select_one("[data-testid=tax]").get_text(strip=True) == "¥100"
    assert page.select_one("[data-testid=total]").get_text(strip=True) == "¥1,100"
    text = page.get_text(" ", strip=True)
    assert "Valid for 90 days from payment." in text
    assert "cannot be cancelled" in text
    assert page.select_one("a[href='/legal/commercial-transactions']") is not None


@pytest.mark.parametrize("amount, total, tax", [(1000, "¥1,100", "¥100"), (1001, "¥1,101", "¥100"),
                                                (1009, "¥1,109", "¥100"), (1010, "¥1,111", "¥101"),
                                                (1000000, "¥1,100,000", "¥100,000")])
def test_tax_is_ten_percent_rounded_down_once(app, amount, total, tax):
    client, _ = with_profile(app)
    page = client.page(f"/credit/buy/confirm?amount={amount}")
    assert page.select_one("[data-testid=tax]").get_text(strip=True) == tax
    assert page.select_one("[data-testid=total]").get_text(strip=True) == total


@pytest.mark.parametrize("raw, message", [("999", "The smallest purchase is ¥1,000."),
                                          ("1000001", "The largest purchase is ¥1,000,000 at a time."),
                                          ("10.5", "Enter a whole number of yen"), ("", "Enter a whole number of yen"),
                                          ("-1000", "Enter a whole number of yen"), ("abc", "Enter a whole number of yen")])
def test_bad_amounts_are_refused_with_a_message(app, raw, message):
    client, _ = with_profile(app)
    page = client.page(f"/credit/buy/confirm?amount={raw}", status=422)
    assert message in page.select_one(".field-error").get_text()


def test_amounts_as_people_type_them_are_understood(app):
    client, _ = with_profile(app)
    page = client.page("/credit/buy/confirm?amount=%EF%BC%91%2C%EF%BC%90%EF%BC%90%EF%BC%90")  # "１,０００"
    assert page.select_one("[data-testid=credit]").get_text(strip=True) == "¥1,000"


def test_overseas_customers_pay_no_japanese_consumption_tax(app):
    client, _ = signed_in(app)
    client.post("/billing/profile", PROFILE | {"tax_residency": "overseas"}, status=302)
    page = client.page("/credit/buy/confirm?amount=1000")
    assert page.select_one("[data-testid=tax]").get_text(strip=True) == "¥0"
    assert page.select_one("[data-testid=total]").get_text(strip=True) == "¥1,000"


@pytest.mark.pdf
def test_a_sandbox_card_payment_grants_a_lot_valid_90_days_and_a_receipt(app, clock):
    client, account_id = with_profile(app)
    status_url = pay_in_sandbox(client, 1000)
    page = client.page(status_url.split("portal.chotto.test", 1)[-1])
    assert page.select_one("[data-testid=status]").get_text(strip=True) == "Credited"
    assert page.select_one("#purchase-status").get("hx-trigger") is None  # polling stops once settled
    assert available(app, account_id) == 1000 * 1000
    with db_session(app) as session:
        purchase = session.scalars(select(Purchase)).one()
        summary = queries.summary(session, account_id=account_id, now=clock())
    [lot] = summary.live_lots
    assert lot.expires_at == clock() + timedelta(days=90)
    invoices = client.page("/billing/invoices")
    link = invoices.select_one("a[data-testid^=download-]")["href"]
    response = client.get(link)
    assert response.headers["Content-Type"] == "application/pdf"
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(response.data)).pages)
    for expected in ("T7123456789012", "¥1,000", "10%", "¥100", "¥1,100", "Example KK", "適格請求書"):
        assert expected in text, expected
    assert client.get(link).data == response.data  # stored: served unchanged
    assert purchase.status == "paid"
    deliver_outbox(app)
    [mail] = mails_to(app, "finance@example.com")
    assert mail.subject == "[Chotto] Payment received: ¥1,000 of credit added"
    assert f"https://portal.chotto.test{link}" in mail.text_body and "¥1,100" in mail.text_body


def test_a_declined_card_says_so_and_grants_nothing(app):
    client, account_id = with_profile(app)
    status_url = pay_in_sandbox(client, 1000, action="decline")
    page = client.page(status_url.split("portal.chotto.test", 1)[-1])
    assert page.select_one("[data-testid=status]").get_text(strip=True) == "Payment failed"
    assert available(app, account_id) == 0


def test_konbini_waits_for_the_store_then_the_lot_runs_90_days_from_the_store_payment(app, clock):
    client, account_id = with_profile(app)
    status_url = pay_in_sandbox(client, 3000, action="konbini")
    status_path = status_url.split("portal.chotto.test", 1)[-1]
    page = client.page(status_path)
    assert page.select_one("[data-testid=status]").get_text(strip=True) == "Waiting for konbini payment"
    assert page.select_one("#purchase-status")["hx-trigger"] == "every 30s"
    assert available(app, account_id) == 0
    checkout = page.select_one(".dev-note a")["href"]
    clock.advance(days=2, hours=5)
    client.login("owner@example.com")  # the session timed out meanwhile
    client.post(checkout, {"action": "konbini_paid"}, status=302)
    page = client.page(status_path)
    assert page.select_one("[data-testid=status]").get_text(strip=True) == "Credited"
    with db_session(app) as session:
        [lot] = queries.summary(session, account_id=account_id, now=clock()).live_lots
        purchase = session.scalars(select(Purchase)).one()
    assert lot.expires_at == clock() + timedelta(days=90)  # from the store payment, not the checkout
    assert lot.expires_at - purchase.created_at == timedelta(days=92, hours=5)


def test_developers_cannot_buy_or_download_receipts(app):
    owner, account_id = with_profile(app)
    pay_in_sandbox(owner, 1000)
    number = owner.page("/billing/invoices").select_one("td").get_text(strip=True)
    developer = make_user(app, email="dev@example.com")
    with db_session(app) as session:
        from portal.accounts.models import Membership
        session.add(Membership(account_id=account_id, user_id=developer.id, role="developer",
                               created_at=app.config["CLOCK"]()))
        session.commit()
    client = PageClient(app.test_client(), app)
    client.login("dev@example.com")
    client.post(f"/profile/account/{account_id}", {}, status=302)
    assert "Credit and billing" not in client.page("/dashboard").select_one("nav").get_text()
    for path in ("/credit/buy", "/credit/buy/confirm?amount=1000", "/credit/purchases", "/billing/profile",
                 "/billing/invoices", f"/billing/invoices/{number}.pdf"):
        client.get(path, status=403)
    client.post("/credit/buy/confirm", {"amount": "1000", "total": "1100"}, status=403)


def test_the_billing_profile_explains_what_is_wrong_and_keeps_nothing_half_saved(app):
    client, account_id = signed_in(app)
    page = client.page("/billing/profile")
    assert page.select_one("#legal_name")["value"] and page.select_one("#billing_email")["value"] == "owner@example.com"
    response = client.post("/billing/profile", PROFILE | {"legal_name": "", "registration_number": "T12345"}, status=422)
    text = response.get_data(as_text=True)
    assert "Enter T followed by 13 digits" in text and "This field is required." in text
    response = client.post("/billing/profile", PROFILE | {"registration_number": "T7000012050003"}, status=422)
    assert "check the digits" in response.get_data(as_text=True)
    with db_session(app) as session:
        from portal.billing.service import profile_of
        assert profile_of(session, account_id=account_id) is None
    client.post("/billing/profile", PROFILE | {"registration_number": " t 7000012050002 "}, status=302)
    with db_session(app) as session:
        assert profile_of(session, account_id=account_id).registration_number == "T7000012050002"


def test_changing_the_billing_email_later_needs_a_fresh_password(app, clock):
    client, account_id = with_profile(app)
    clock.advance(minutes=11)
    client.get("/dashboard")  # the session is still alive, but the sign-in is no longer recent
    response = client.post("/billing/profile", PROFILE | {"billing_email": "attacker@example.net"}, status=403)
    assert "confirm your password first" in response.get_data(as_text=True)
    client.post("/billing/profile", PROFILE | {"legal_name": "Example Holdings KK"}, status=302)  # same address: fine
    client.post("/reauthenticate", {"password": "correct horse battery staple", "next": "/billing/profile"}, status=302)
    client.post("/billing/profile", PROFILE | {"billing_email": "new-finance@example.com"}, status=302)
    with db_session(app) as session:
        from portal.billing.service import profile_of
        profile = profile_of(session, account_id=account_id)
    assert (profile.legal_name, profile.billing_email) == ("Example KK", "new-finance@example.com")


def test_the_legal_notice_is_public_and_linked_from_every_page(app):
    client = PageClient(app.test_client(), app)
    page = client.page("/legal/commercial-transactions")
    text = page.get_text(" ", strip=True)
    for expected in ("Chotto sample issuer", "T7123456789012", "90 days", "Not configured (development)"):
        assert expected in text
    assert client.page("/").select_one("footer a[href='/legal/commercial-transactions']") is not None


def test_purchases_of_another_account_are_not_found(app):
    owner, _ = with_profile(app)
    pay_in_sandbox(owner, 1000)
    path = owner.page("/credit/purchases").select_one("tbody a")["href"]
    stranger, _ = with_profile(app, email="stranger@example.com")
    stranger.get(path, status=404)
    number = owner.page("/billing/invoices").select_one("td").get_text(strip=True)
    stranger.get(f"/billing/invoices/{number}.pdf", status=404)


def test_finance_searches_invoices_by_date_amount_and_counterparty_and_exports_csv(app, clock):
    client, _ = with_profile(app)
    pay_in_sandbox(client, 1000)
    clock.advance(days=1)
    client.login("owner@example.com")
    pay_in_sandbox(client, 3000)

    def numbers(query):
        page = client.page(f"/billing/invoices?{query}")
        return [row.select_one("td").get_text(strip=True) for row in page.select("tbody tr")]

    assert numbers("") == ["INV-00000002", "INV-00000001"]
    assert numbers("min=2000") == ["INV-00000002"]
    assert numbers("max=1,100") == ["INV-00000001"]
    assert numbers("q=example+kk") == ["INV-00000002", "INV-00000001"]
    today = (clock() + timedelta(hours=9)).date().isoformat()  # Japan's calendar day
    assert numbers(f"from={today}&to={today}") == ["INV-00000002"]
    page = client.page("/billing/invoices?q=nobody")
    assert "No document matches these filters." in page.get_text()
    page = client.page("/billing/invoices?from=27-11-2026&min=abc")
    errors = [e.get_text(strip=True) for e in page.select(".filter-error")]
    assert errors == ["Enter a date such as 2026-11-27.", "Enter a whole number of yen, for example 1000."]
    response = client.get("/billing/invoices.csv?min=2000")
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    body = response.get_data(as_text=True)
    assert body.startswith("\ufeffNumber,Document,Issued (Japan time),Transaction date (Japan time),Recipient,")
    lines = body.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("INV-00000002,Receipt (qualified invoice),")
    assert ",3000,10,300,3300," in lines[1]
    client.get("/billing/invoices.csv?from=nonsense", status=400)


def test_a_search_for_a_name_longer_than_any_recipient_is_refused_not_cut(app):
    client, _ = with_profile(app)
    pay_in_sandbox(client, 1000)
    page = client.page("/billing/invoices?q=" + "x" * 201)
    assert [e.get_text(strip=True) for e in page.select(".filter-error")] == ["Enter a name of at most 200 characters."]
    assert page.select_one("input[name=q]")["aria-invalid"] == "true"
    client.get("/billing/invoices.csv?q=" + "x" * 201, status=400)
    assert len(client.page("/billing/invoices?q=" + "x" * 200).select("tbody tr")) == 0


def test_paying_is_refused_when_the_total_changed_after_the_confirmation_screen(app):
    client, account_id = with_profile(app)
    fields = confirmed(client, 1000)
    assert (fields["amount"], fields["total"]) == ("1000", "1100") and len(fields["intent"]) >= 32
    client.post("/billing/profile", PROFILE | {"tax_residency": "overseas"}, status=302)  # another tab, meanwhile
    response = client.post("/credit/buy/confirm", fields, status=302)
    assert response.headers["Location"] == f"/credit/buy/confirm?amount=1000&intent={fields['intent']}"
    assert "The total changed since you confirmed it" in client.page("/credit/buy/confirm?amount=1000").get_text()
    with db_session(app) as session:
        assert session.scalars(select(Purchase)).all() == []


def test_the_sandbox_checkout_of_another_account_is_not_found(app):
    owner, _ = with_profile(app)
    response = owner.post("/credit/buy/confirm", confirmed(owner, 1000), status=303)
    path = response.headers["Location"].split("portal.chotto.test", 1)[1]
    stranger, _ = with_profile(app, email="stranger@example.com")
    stranger.get(path, status=404)
    stranger.post(path, {"action": "pay"}, status=404)
    assert owner.page(path).select_one("[data-testid=sandbox-pay]") is not None


def test_a_sandbox_step_that_no_longer_fits_is_explained(app):
    client, account_id = with_profile(app)
    response = client.post("/credit/buy/confirm", confirmed(client, 1000), status=303)
    path = response.headers["Location"].split("portal.chotto.test", 1)[1]
    client.post(path, {"action": "pay"}, status=302)
    response = client.post(path, {"action": "pay"}, status=302)  # paying twice, e.g. from a second tab
    assert response.headers["Location"] == path
    assert "That step does not fit this checkout any more." in client.page(path).get_text()
    assert available(app, account_id) == 1000 * 1000


def test_a_stale_confirmation_page_submitted_again_returns_the_open_purchase(app):
    client, account_id = with_profile(app)
    fields = confirmed(client, 1000)
    first = client.post("/credit/buy/confirm", fields, status=303).headers["Location"]
    again = client.post("/credit/buy/confirm", fields, status=303).headers["Location"]  # double submit, back button
    other_tab = client.post("/credit/buy/confirm", confirmed(client, 1000), status=303).headers["Location"]
    assert first == again == other_tab
    with db_session(app) as session:
        assert [(p.amount_yen, p.status) for p in session.scalars(select(Purchase))] == [(1000, "open")]
    client.post("/credit/buy/confirm", confirmed(client, 3000), status=303)  # another quote is another purchase
    with db_session(app) as session:
        assert sorted(p.amount_yen for p in session.scalars(select(Purchase))) == [1000, 3000]
