"""A confirmation repeated by a stale page, a second tab or a double submit never starts a
second open purchase of the same quote, in sequence or at the same moment."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import select

from portal.billing import service
from portal.billing.models import Purchase
from portal.documents import checkout_lines
from tests.helpers import PageClient, db_session, make_user

PROFILE = dict(legal_name="Example KK", postal_code="100-0001", address="1-1 Chiyoda, Tokyo",
               billing_email="finance@example.com", residency="JP", registration_number=None)
CLIENTS = 8


class CountingGateway:
    """Wraps the portal's gateway and counts the checkouts asked of it."""

    def __init__(self, inner):
        self.inner, self.name, self.calls, self.expired = inner, inner.name, [], []

    def create_checkout(self, request, *, idempotency_key):
        self.calls.append(request.purchase_ref)
        return self.inner.create_checkout(request, idempotency_key=idempotency_key)

    def expire_checkout(self, session_id):
        self.expired.append(session_id)
        return self.inner.expire_checkout(session_id)


def customer(app, email="owner@example.com"):
    user = make_user(app, email=email)
    with db_session(app) as session:
        from portal.accounts.models import Membership

        account_id = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
        service.save_profile(session=session, account_id=account_id, now=app.config["CLOCK"](), **PROFILE)
    return user, account_id


def start(app, gateway, user, account_id, amount=1000, now=None):
    with app.test_request_context(), db_session(app) as session:
        return service.start_purchase(
            session=session, gateway=gateway, account_id=account_id, user_id=user.id, amount_yen=amount, minimum=1000,
            language="ja", line_items=checkout_lines, base_url=app.config["BASE_URL"], now=now or app.config["CLOCK"](),
        )


def purchases(app):
    with db_session(app) as session:
        return [(p.public_id, p.amount_yen, p.status) for p in session.scalars(select(Purchase).order_by(Purchase.id))]


def test_confirming_the_same_quote_again_returns_the_open_purchase_without_a_second_checkout(app):
    user, account_id = customer(app)
    gateway = CountingGateway(app.extensions["portal.gateway"])
    first = start(app, gateway, user, account_id)
    again = start(app, gateway, user, account_id)
    assert again.public_id == first.public_id and again.checkout_url == first.checkout_url
    assert gateway.calls == [first.public_id]
    assert purchases(app) == [(first.public_id, 1000, "open")]


def test_an_open_purchase_older_than_an_hour_or_addressed_otherwise_is_replaced(app, clock):
    user, account_id = customer(app)
    gateway = CountingGateway(app.extensions["portal.gateway"])
    first = start(app, gateway, user, account_id)
    second = start(app, gateway, user, account_id, now=clock() + timedelta(hours=1))
    with db_session(app) as session:
        service.save_profile(session=session, account_id=account_id, now=clock(), **PROFILE | {"legal_name": "New KK"})
    third = start(app, gateway, user, account_id, now=clock() + timedelta(hours=1, minutes=1))
    assert purchases(app) == [(first.public_id, 1000, "expired"), (second.public_id, 1000, "expired"),
                              (third.public_id, 1000, "open")]
    assert third.recipient_name == "New KK" and len(gateway.calls) == 3
    assert gateway.expired == [first.checkout_session_id, second.checkout_session_id]  # nobody can pay those now


def test_an_open_purchase_whose_checkout_is_being_opened_is_returned_and_one_left_without_is_replaced(app, clock):
    user, account_id = customer(app)
    gateway = CountingGateway(app.extensions["portal.gateway"])
    first = start(app, gateway, user, account_id)
    with db_session(app) as session:  # as if its request were still waiting for the gateway, or had died there
        session.get(Purchase, first.id).checkout_url = None
        session.commit()
    assert start(app, gateway, user, account_id, now=clock() + timedelta(seconds=30)).checkout_url is None
    replaced = start(app, gateway, user, account_id, now=clock() + timedelta(minutes=2))
    assert replaced.public_id != first.public_id and replaced.checkout_url is not None
    assert [status for _, _, status in purchases(app)] == ["expired", "open"]


def test_clients_confirming_the_same_quote_at_once_share_one_open_purchase(app):
    user, account_id = customer(app)
    clients = []
    for _ in range(CLIENTS):
        client = PageClient(app.test_client(), app)
        client.login(user.email)
        clients.append(client)
    fields = [{"amount": "1000", "total": "1100", "intent": f"tab-{index}", "csrf_token": client.csrf_token()}
              for index, client in enumerate(clients)]
    ready = threading.Barrier(CLIENTS)

    def confirm(index):
        ready.wait()
        response = clients[index].client.post("/credit/buy/confirm", data=fields[index])
        return response.status_code, response.headers.get("Location")

    with ThreadPoolExecutor(CLIENTS) as pool:
        outcomes = list(pool.map(confirm, range(CLIENTS)))
    [(public_id, _, status)] = purchases(app)
    assert status == "open"
    assert {code for code, _ in outcomes} == {303}
    checkout = {location for _, location in outcomes if "/sandbox/checkout/" in location}
    waiting = {location for _, location in outcomes if "/sandbox/checkout/" not in location}
    assert len(checkout) == 1 and waiting <= {f"/credit/purchases/{public_id}"}


def test_the_same_form_submitted_by_clients_at_once_opens_one_checkout(stripe_app, stripe):
    """A double submit at the same moment (two clicks, a retrying proxy): one token, one checkout
    at Stripe, and every answer leads to it or to the purchase's page."""
    user, account_id = customer(stripe_app)
    clients = []
    for _ in range(CLIENTS):
        client = PageClient(stripe_app.test_client(), stripe_app)
        client.login(user.email)
        clients.append(client)
    fields = [{"amount": "1000", "total": "1100", "intent": "one-form", "csrf_token": client.csrf_token()}
              for client in clients]
    ready = threading.Barrier(CLIENTS)

    def confirm(index):
        ready.wait()
        response = clients[index].client.post("/credit/buy/confirm", data=fields[index])
        return response.status_code, response.headers.get("Location")

    with ThreadPoolExecutor(CLIENTS) as pool:
        outcomes = list(pool.map(confirm, range(CLIENTS)))
    [(public_id, _, status)] = purchases(stripe_app)
    assert status == "open" and {code for code, _ in outcomes} == {303}
    opened = [sent for sent in stripe.requests if (sent["method"], sent["path"]) == ("POST", "/v1/checkout/sessions")]
    assert len(opened) == 1
    assert {location for _, location in outcomes} <= {stripe.last_session()["url"], f"/credit/purchases/{public_id}"}
