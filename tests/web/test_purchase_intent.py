"""A confirmation form opens at most one checkout: submitted twice, or again from a stale page
after the payment (the browser's back button), it finds the purchase it led to. A replaced
purchase's Checkout Session is expired at Stripe, and a payment that still reaches it is
credited once. Through the pages, with the recorded-object Stripe fake."""

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select

from portal.billing.models import Purchase
from portal.ledger.check import check
from tests.helpers import PageClient, db_session
from tests.stripe_fake import signature
from tests.web.test_buy_credit import PROFILE, available, confirmed
from tests.web.test_dashboard import signed_in

CHECKOUT = "https://checkout.stripe.com/c/pay/"


def buyer(app) -> tuple[PageClient, int]:
    client, account_id = signed_in(app)
    client.post("/billing/profile", PROFILE, status=302)
    return client, account_id


def checkouts_opened(stripe) -> int:
    return sum(1 for sent in stripe.requests if (sent["method"], sent["path"]) == ("POST", "/v1/checkout/sessions"))


def webhook(app, stripe, event_type, session_id, clock):
    payload = stripe.event(event_type, session_id, clock())
    response = app.test_client().post("/webhooks/stripe", data=payload, headers={
        "Content-Type": "application/json", "Stripe-Signature": signature(payload, clock())})
    assert response.status_code == 200, response.get_data(as_text=True)


def purchases(app) -> list[tuple[int, str]]:
    with db_session(app) as session:
        return [(p.amount_yen, p.status) for p in session.scalars(select(Purchase).order_by(Purchase.id))]


def test_a_double_submit_opens_one_checkout(stripe_app, stripe):
    client, _ = buyer(stripe_app)
    fields = confirmed(client, 1000)
    first = client.post("/credit/buy/confirm", fields, status=303).headers["Location"]
    again = client.post("/credit/buy/confirm", fields, status=303).headers["Location"]
    assert first == again and first.startswith(CHECKOUT)
    assert checkouts_opened(stripe) == 1 and purchases(stripe_app) == [(1000, "open")]


def test_going_back_to_the_paid_confirmation_page_never_starts_a_second_payment(stripe_app, stripe, clock):
    client, account_id = buyer(stripe_app)
    fields = confirmed(client, 1000)
    client.post("/credit/buy/confirm", fields, status=303)
    session_id = stripe.last_session()["id"]
    stripe.pay_by_card(session_id, clock())
    webhook(stripe_app, stripe, "checkout.session.completed", session_id, clock)
    assert available(stripe_app, account_id) == 1000 * 1000

    response = client.post("/credit/buy/confirm", fields, status=303)  # the back button, then "Pay" again
    with db_session(stripe_app) as session:
        [purchase] = session.scalars(select(Purchase)).all()
    assert response.headers["Location"] == f"/credit/purchases/{purchase.public_id}"
    page = client.page(response.headers["Location"])
    assert "You already confirmed this purchase, so no second payment was started." in page.get_text()
    assert page.select_one("[data-testid=status]").get_text(strip=True) == "Credited"
    client.post("/language/ja", {"next": "/dashboard"}, status=302)
    response = client.post("/credit/buy/confirm", fields, status=303)
    assert "この購入はすでに確定しているため、2回目のお支払いは開始していません。" in client.page(
        response.headers["Location"]).get_text()
    assert checkouts_opened(stripe) == 1 and purchases(stripe_app) == [(1000, "paid")]
    assert available(stripe_app, account_id) == 1000 * 1000

    fresh = client.post("/credit/buy/confirm", confirmed(client, 1000), status=303)  # a new confirmation: a new purchase
    assert fresh.headers["Location"].startswith(CHECKOUT) and checkouts_opened(stripe) == 2


def test_a_stale_page_of_a_replaced_purchase_asks_to_confirm_again(stripe_app, stripe, clock):
    client, _ = buyer(stripe_app)
    stale = confirmed(client, 1000)
    client.post("/credit/buy/confirm", stale, status=303)
    old_session = stripe.last_session()["id"]
    clock.advance(hours=1)  # an open purchase this old is not continued
    client.login("owner@example.com")
    client.post("/credit/buy/confirm", confirmed(client, 1000), status=303)  # another tab confirms it anew
    assert stripe.sessions[old_session]["status"] == "expired"  # the old tab cannot be paid any more
    assert purchases(stripe_app) == [(1000, "expired"), (1000, "open")]

    response = client.post("/credit/buy/confirm", stale, status=303)
    assert response.headers["Location"] == "/credit/buy/confirm?amount=1000"
    assert "This confirmation page is out of date, so no payment was started." in client.page(
        response.headers["Location"]).get_text()
    client.post("/language/ja", {"next": "/dashboard"}, status=302)
    response = client.post("/credit/buy/confirm", stale, status=303)
    assert "この確認画面は古くなっているため、お支払いは開始していません。" in client.page(
        response.headers["Location"]).get_text()
    assert checkouts_opened(stripe) == 2 and purchases(stripe_app) == [(1000, "expired"), (1000, "open")]


def test_a_form_without_its_token_is_refused(stripe_app, stripe):
    client, _ = buyer(stripe_app)
    fields = confirmed(client, 1000)
    client.post("/credit/buy/confirm", {"amount": fields["amount"], "total": fields["total"]}, status=400)
    client.post("/credit/buy/confirm", fields | {"intent": "x" * 65}, status=400)
    client.post("/credit/buy/confirm", fields | {"intent": "not a token"}, status=400)
    page = client.page("/credit/buy/confirm?amount=1000&intent=" + "x" * 65)  # a mangled address: a new token
    assert len(page.select_one("input[name=intent]")["value"]) == 32
    assert checkouts_opened(stripe) == 0 and purchases(stripe_app) == []


def test_a_payment_on_a_replaced_checkout_is_credited_once(stripe_app, stripe, clock):
    client, account_id = buyer(stripe_app)
    client.post("/credit/buy/confirm", confirmed(client, 1000), status=303)
    old_session = stripe.last_session()["id"]
    stripe.pay_by_card(old_session, clock())  # paid in the old tab; its webhook is not here yet
    clock.advance(hours=1, seconds=1)
    client.login("owner@example.com")
    client.post("/credit/buy/confirm", confirmed(client, 1000), status=303)  # replaced meanwhile
    expire_calls = [sent for sent in stripe.requests if sent["path"] == f"/v1/checkout/sessions/{old_session}/expire"]
    assert expire_calls and stripe.sessions[old_session]["status"] == "complete"  # too late to expire: paid
    assert purchases(stripe_app) == [(1000, "expired"), (1000, "open")]

    for _ in range(3):  # Stripe delivers, and delivers again
        webhook(stripe_app, stripe, "checkout.session.completed", old_session, clock)
    assert purchases(stripe_app) == [(1000, "paid"), (1000, "open")]
    assert available(stripe_app, account_id) == 1000 * 1000  # credited, exactly once
    invoices = client.page("/billing/invoices")
    assert [row.select_one("td").get_text(strip=True) for row in invoices.select("tbody tr")] == ["INV-00000001"]
    with db_session(stripe_app) as session:
        problems, _ = check(session, now=clock())
    assert problems == []


def test_a_replaced_checkout_that_stripe_could_not_expire_is_still_credited_if_paid(stripe_app, stripe, clock,
                                                                                      monkeypatch):
    client, account_id = buyer(stripe_app)
    client.post("/credit/buy/confirm", confirmed(client, 1000), status=303)
    old_session = stripe.last_session()["id"]
    gateway = stripe_app.extensions["portal.gateway"]

    def unreachable(session_id):
        raise ConnectionError("stripe did not answer")

    monkeypatch.setattr(gateway, "expire_checkout", unreachable)
    clock.advance(hours=1)
    client.login("owner@example.com")
    response = client.post("/credit/buy/confirm", confirmed(client, 1000), status=303)
    assert response.headers["Location"].startswith(CHECKOUT)  # the new checkout opens all the same
    assert stripe.sessions[old_session]["status"] == "open"
    stripe.pay_by_card(old_session, clock() + timedelta(minutes=1))  # the old tab is paid after all
    webhook(stripe_app, stripe, "checkout.session.completed", old_session, clock)
    assert purchases(stripe_app) == [(1000, "paid"), (1000, "open")]
    assert available(stripe_app, account_id) == 1000 * 1000


def test_going_back_to_the_confirmation_screen_after_paying_shows_the_purchase_not_a_new_payment(stripe_app, stripe,
                                                                                                  clock):
    client, account_id = buyer(stripe_app)
    buy = client.page("/credit/buy")
    links = [link["href"] for link in buy.select(".quick-picks a")]
    intents = {parse_qs(urlsplit(link).query)["intent"][0] for link in links}
    intents.add(buy.select_one("form input[name=intent]")["value"])
    assert len(intents) == len(links) + 1  # each way to the confirmation screen is its own intent
    page = client.page(links[0])  # ¥1,000
    fields = {name: page.select_one(f"input[name={name}]")["value"] for name in ("amount", "total", "intent")}
    assert fields["intent"] == parse_qs(urlsplit(links[0]).query)["intent"][0]
    client.post("/credit/buy/confirm", fields, status=303)
    session_id = stripe.last_session()["id"]
    stripe.pay_by_card(session_id, clock())
    webhook(stripe_app, stripe, "checkout.session.completed", session_id, clock)

    response = client.get(links[0], status=302)  # back in the browser: the screen is fetched again (no-store)
    with db_session(stripe_app) as session:
        [purchase] = session.scalars(select(Purchase)).all()
    assert response.headers["Location"] == f"/credit/purchases/{purchase.public_id}"
    assert "You already confirmed this purchase" in client.page(response.headers["Location"]).get_text()
    assert checkouts_opened(stripe) == 1 and available(stripe_app, account_id) == 1000 * 1000
    retry = client.page(response.headers["Location"])
    assert retry.select_one("[data-testid=status]").get_text(strip=True) == "Credited"
