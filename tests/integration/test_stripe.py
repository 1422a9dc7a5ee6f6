"""The Stripe gateway through stripe-python's injectable HTTP client (recorded objects), and
the webhook endpoint with locally signed events: parameters sent, signature checks,
duplicates, every ordering of events, refunds and disputes, the 90-day boundary."""

import itertools
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from portal.billing import service
from portal.documents import checkout_lines
from portal.billing.models import Invoice, Purchase, WebhookEvent
from portal.ledger import service as ledger
from portal.ledger.check import check
from portal.ledger.models import CreditState, Hold, Lot
from portal.ledger.rules import InsufficientCredit
from portal.webhooks import sign
from tests.helpers import PageClient, db_session, make_user
from tests.stripe_fake import signature

YEN = 1000
PROFILE = dict(legal_name="Example KK", postal_code="100-0001", address="1-1 Chiyoda, Tokyo",
               billing_email="finance@example.com", residency="JP", registration_number=None)


def customer(app, email="owner@example.com"):
    user = make_user(app, email=email)
    with db_session(app) as session:
        from portal.accounts.models import Membership

        account_id = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
        service.save_profile(session=session, account_id=account_id, now=app.config["CLOCK"](), **PROFILE)
    return user, account_id


def start(app, user, account_id, amount=1000) -> Purchase:
    with app.app_context(), db_session(app) as session:
        return service.start_purchase(
            session=session, gateway=app.extensions["portal.gateway"], account_id=account_id, user_id=user.id,
            amount_yen=amount, minimum=1000, language="ja", line_items=checkout_lines, base_url=app.config["BASE_URL"],
            now=app.config["CLOCK"](),
        )


def deliver(app, payload: bytes, header: str | None, client=None):
    client = client or app.test_client()
    headers = {"Content-Type": "application/json"} | ({"Stripe-Signature": header} if header else {})
    return client.post("/webhooks/stripe", data=payload, headers=headers)


def send(app, stripe, event_type, session_id, clock, **kwargs):
    payload = stripe.event(event_type, session_id, clock(), **kwargs)
    return deliver(app, payload, signature(payload, clock()))


def snapshot(app, purchase_id):
    """What "the same state" means: the purchase's fields, its lot, holds, the account's totals."""
    with db_session(app) as session:
        purchase = session.get(Purchase, purchase_id)
        lot = session.get(Lot, purchase.lot_id) if purchase.lot_id else None
        state = session.get(CreditState, purchase.account_id)
        open_holds = session.scalars(select(Hold.amount).where(Hold.account_id == purchase.account_id,
                                                                Hold.closed_at.is_(None))).all()
        invoices = session.scalars(select(Invoice.kind).where(Invoice.purchase_id == purchase_id)).all()
        return {
            "status": purchase.status, "refunded": purchase.refunded_yen, "taken_back": purchase.taken_back,
            "dispute": purchase.dispute_status, "paid_at": purchase.paid_at,
            "lot": (lot.amount, lot.remaining, lot.expires_at, lot.refunded_at is not None) if lot else None,
            "balance": state.balance, "held": state.held, "open_holds": sorted(open_holds),
            "invoices": sorted(invoices),
        }


def ledger_ok(app):
    with db_session(app) as session:
        problems, _ = check(session, now=app.config["CLOCK"]())
    assert problems == []


# -- the Checkout Session we ask for ---------------------------------------------------------


def test_checkout_sends_jpy_amounts_the_tax_line_methods_metadata_and_our_idempotency_key(stripe_app, stripe):
    user, account_id = customer(stripe_app)
    client = PageClient(stripe_app.test_client(), stripe_app)
    client.login(user.email)
    confirm = client.get("/credit/buy/confirm?amount=1000")
    assert "form-action 'self' https://checkout.stripe.com" in confirm.headers["Content-Security-Policy"]
    response = client.post("/credit/buy/confirm", {"amount": "1000", "total": "1100", "intent": "tab-1"}, status=303)
    assert response.headers["Location"].startswith("https://checkout.stripe.com/c/pay/cs_test_")
    [sent] = stripe.requests
    with db_session(stripe_app) as session:
        purchase = session.scalars(select(Purchase)).one()
    assert (sent["method"], sent["path"]) == ("POST", "/v1/checkout/sessions")
    assert sent["headers"]["Idempotency-Key"] == f"chotto-checkout-{purchase.public_id}"
    assert sent["headers"]["Authorization"] == "Bearer sk_test_chotto_suite"
    form = sent["form"]
    assert form["mode"] == "payment" and form["currency"] == "jpy"
    assert form["line_items[0][price_data][currency]"] == "jpy"
    assert form["line_items[0][price_data][unit_amount]"] == "1000"
    assert form["line_items[0][price_data][product_data][name]"] == "Chotto prepaid credit ¥1,000 (valid for 90 days from payment)"
    assert form["line_items[1][price_data][unit_amount]"] == "100"
    assert form["line_items[1][price_data][product_data][name]"] == "Consumption tax 10%"
    assert form["locale"] == "en"
    assert (form["payment_method_types[0]"], form["payment_method_types[1]"]) == ("card", "konbini")
    assert form["payment_method_options[konbini][expires_after_days]"] == "3"
    assert form["metadata[purchase]"] == purchase.public_id and form["metadata[account]"] == str(account_id)
    assert form["payment_intent_data[metadata][purchase]"] == purchase.public_id
    assert form["client_reference_id"] == purchase.public_id
    assert form["success_url"] == f"https://portal.chotto.test/credit/purchases/{purchase.public_id}?returned=1"
    assert purchase.checkout_session_id == stripe.last_session()["id"] and purchase.total_yen == 1100


def test_totals_above_the_konbini_ceiling_offer_card_only_and_overseas_customers_no_tax_line(stripe_app, stripe):
    user, account_id = customer(stripe_app)
    start(stripe_app, user, account_id, amount=300_000)  # ¥330,000 with tax: over konbini's ¥300,000
    form = stripe.requests[-1]["form"]
    assert form["payment_method_types[0]"] == "card" and "payment_method_types[1]" not in form
    assert "payment_method_options[konbini][expires_after_days]" not in form
    with db_session(stripe_app) as session:
        service.save_profile(session=session, account_id=account_id, now=stripe_app.config["CLOCK"](),
                             **PROFILE | {"residency": "overseas"})
    start(stripe_app, user, account_id, amount=1000)
    form = stripe.requests[-1]["form"]
    assert form["line_items[0][price_data][unit_amount]"] == "1000" and "line_items[1][price_data][unit_amount]" not in form


def test_a_gateway_that_does_not_answer_leaves_a_failed_purchase_and_no_charge(stripe_app, stripe):
    user, account_id = customer(stripe_app)
    stripe.fail_next = 10
    with pytest.raises(service.GatewayUnavailable):
        start(stripe_app, user, account_id)
    with db_session(stripe_app) as session:
        purchase = session.scalars(select(Purchase)).one()
    assert purchase.status == "failed" and purchase.checkout_session_id is None
    keys = {r["headers"].get("Idempotency-Key") for r in stripe.requests}
    assert keys == {f"chotto-checkout-{purchase.public_id}"}  # retries reuse our key: one session at most


# -- fulfilment --------------------------------------------------------------------------------


def test_a_card_payment_grants_one_lot_from_the_payment_time_and_a_receipt(stripe_app, stripe, clock):
    user, account_id = customer(stripe_app)
    purchase = start(stripe_app, user, account_id)
    session_id = purchase.checkout_session_id
    clock.advance(minutes=3)
    stripe.pay_by_card(session_id, clock())
    assert send(stripe_app, stripe, "checkout.session.completed", session_id, clock).status_code == 200
    state = snapshot(stripe_app, purchase.id)
    assert state["status"] == "paid" and state["lot"] == (1000 * YEN, 1000 * YEN, clock() + timedelta(days=90), False)
    assert state["invoices"] == ["invoice"] and state["paid_at"] == clock()
    ledger_ok(stripe_app)


def test_the_same_completed_event_10_times_at_once_and_10_times_in_a_row_grants_once(stripe_app, stripe, clock):
    user, account_id = customer(stripe_app)
    purchase = start(stripe_app, user, account_id)
    stripe.pay_by_card(purchase.checkout_session_id, clock())
    payload = stripe.event("checkout.session.completed", purchase.checkout_session_id, clock())
    header = signature(payload, clock())
    barrier = threading.Barrier(10)

    def once(_):
        client = stripe_app.test_client()
        barrier.wait()
        return deliver(stripe_app, payload, header, client).status_code

    with ThreadPoolExecutor(10) as pool:
        concurrent = list(pool.map(once, range(10)))
    sequential = []
    for _ in range(10):
        clock.advance(seconds=0.3)
        sequential.append(deliver(stripe_app, payload, signature(payload, clock())).status_code)
    assert concurrent == [200] * 10 and sequential == [200] * 10
    # another event about the same payment (a different id) changes nothing either
    assert send(stripe_app, stripe, "payment_intent.succeeded", purchase.checkout_session_id, clock).status_code == 200
    with db_session(stripe_app) as session:
        assert len(session.scalars(select(Lot).where(Lot.kind == "purchase")).all()) == 1
        assert len(session.scalars(select(Invoice)).all()) == 1
        assert session.get(CreditState, account_id).balance == 1000 * YEN
    ledger_ok(stripe_app)


def test_the_database_refuses_a_second_purchase_with_the_same_payment_intent_or_event(stripe_app, stripe, clock):
    from sqlalchemy.exc import IntegrityError

    purchase, account_id = paid_purchase(stripe_app, stripe, clock)
    user, _ = customer(stripe_app, email="second@example.com")
    with db_session(stripe_app) as session:
        original = session.get(Purchase, purchase.id)
        [event_id] = session.scalars(select(WebhookEvent.event_id)).all()
        copy = Purchase(**{c: getattr(original, c) for c in ("account_id", "created_by", "amount_yen", "tax_rate",
                                                              "tax_yen", "total_yen", "recipient_name", "recipient_address",
                                                              "language", "gateway", "created_at", "updated_at")},
                        public_id="another", status="open", payment_intent_id=original.payment_intent_id)
        session.add(copy)
        with pytest.raises(IntegrityError):
            session.commit()
        session.rollback()
        session.add(WebhookEvent(event_id=event_id, type="checkout.session.completed", received_at=clock()))
        with pytest.raises(IntegrityError):
            session.commit()


@pytest.mark.parametrize("tamper", ["body", "wrong secret", "stale", "future", "missing header", "garbled header",
                                    "no v1", "non-ascii v1", "non-ascii t"])
def test_a_bad_signature_gets_400_and_changes_nothing(stripe_app, stripe, clock, tamper):
    user, account_id = customer(stripe_app)
    purchase = start(stripe_app, user, account_id)
    stripe.pay_by_card(purchase.checkout_session_id, clock())
    payload = stripe.event("checkout.session.completed", purchase.checkout_session_id, clock())
    header = signature(payload, clock())
    if tamper == "body":
        payload = payload.replace(b'"amount_total": 1100', b'"amount_total": 110000')
    elif tamper == "wrong secret":
        header = signature(payload, clock(), secret="whsec_not_ours")
    elif tamper == "stale":
        header = signature(payload, clock() - timedelta(seconds=301))
    elif tamper == "future":
        header = signature(payload, clock() + timedelta(seconds=301))
    elif tamper == "missing header":
        header = None
    elif tamper == "garbled header":
        header = "t=abc,v1=zz"
    elif tamper == "no v1":
        header = header.split(",")[0]
    elif tamper == "non-ascii v1":
        header = header.split(",")[0] + ",v1=é"
    elif tamper == "non-ascii t":
        header = "t=²," + header.split(",")[1]
    response = deliver(stripe_app, payload, header)
    assert response.status_code == 400
    with db_session(stripe_app) as session:
        assert session.scalars(select(WebhookEvent)).all() == []
        assert session.get(CreditState, account_id).balance == 0
        assert session.get(Purchase, purchase.id).status == "open"


def test_signatures_within_300_seconds_and_with_the_old_secret_during_rotation_are_accepted(stripe_app, stripe, clock):
    user, account_id = customer(stripe_app)
    purchase = start(stripe_app, user, account_id)
    stripe.pay_by_card(purchase.checkout_session_id, clock())
    payload = stripe.event("checkout.session.completed", purchase.checkout_session_id, clock())
    old = signature(payload, clock() - timedelta(seconds=300), secret="whsec_test_old_secret_being_rotated_out")
    assert deliver(stripe_app, payload, old).status_code == 200
    assert snapshot(stripe_app, purchase.id)["status"] == "paid"


def test_the_amount_stripe_reports_must_match_the_quote(stripe_app, stripe, clock, caplog):
    user, account_id = customer(stripe_app)
    purchase = start(stripe_app, user, account_id)
    stripe.pay_by_card(purchase.checkout_session_id, clock())
    stripe.sessions[purchase.checkout_session_id]["amount_total"] = 110
    assert send(stripe_app, stripe, "checkout.session.completed", purchase.checkout_session_id, clock).status_code == 200
    assert snapshot(stripe_app, purchase.id)["lot"] is None
    assert "do not match" in caplog.text


def test_events_for_payments_that_are_not_ours_are_acknowledged_once(stripe_app, stripe, clock):
    payload = (b'{"id": "evt_foreign", "object": "event", "type": "checkout.session.completed", '
               b'"data": {"object": {"id": "cs_other", "object": "checkout.session", "metadata": {}}}}')
    assert deliver(stripe_app, payload, signature(payload, clock())).json == {"received": True, "result": "ignored"}
    assert deliver(stripe_app, payload, signature(payload, clock())).json["duplicate"] is True


# -- konbini and the 90 days -----------------------------------------------------------------


def test_konbini_paid_days_later_runs_90_days_from_the_store_payment_to_the_second(stripe_app, stripe, clock):
    user, account_id = customer(stripe_app)
    purchase = start(stripe_app, user, account_id)
    session_id = purchase.checkout_session_id
    stripe.konbini_voucher(session_id, clock(), clock() + timedelta(days=3))
    send(stripe_app, stripe, "checkout.session.completed", session_id, clock)
    state = snapshot(stripe_app, purchase.id)
    assert state["status"] == "awaiting" and state["lot"] is None and state["balance"] == 0
    clock.advance(days=2, hours=7, seconds=13)
    paid_at = clock()
    stripe.konbini_paid(session_id, paid_at)
    send(stripe_app, stripe, "checkout.session.async_payment_succeeded", session_id, clock)
    state = snapshot(stripe_app, purchase.id)
    assert state["lot"][2] == paid_at + timedelta(days=90) and state["paid_at"] == paid_at
    with db_session(stripe_app) as session:
        ledger.debit(session=session, account_id=account_id, amount=1 * YEN, idempotency_key="last-second",
                     reason="sms", now=paid_at + timedelta(days=90, seconds=-1))
        with pytest.raises(InsufficientCredit):
            ledger.debit(session=session, account_id=account_id, amount=1 * YEN, idempotency_key="too-late",
                         reason="sms", now=paid_at + timedelta(days=90))


def test_a_lapsed_konbini_voucher_marks_the_purchase_failed(stripe_app, stripe, clock):
    user, account_id = customer(stripe_app)
    purchase = start(stripe_app, user, account_id)
    session_id = purchase.checkout_session_id
    stripe.konbini_voucher(session_id, clock(), clock() + timedelta(days=3))
    send(stripe_app, stripe, "checkout.session.completed", session_id, clock)
    clock.advance(days=3, seconds=1)
    stripe.konbini_lapsed(session_id)
    send(stripe_app, stripe, "checkout.session.async_payment_failed", session_id, clock)
    assert snapshot(stripe_app, purchase.id)["status"] == "failed"


# -- refunds and disputes ----------------------------------------------------------------------


def paid_purchase(stripe_app, stripe, clock, amount=1000):
    user, account_id = customer(stripe_app)
    purchase = start(stripe_app, user, account_id, amount=amount)
    stripe.pay_by_card(purchase.checkout_session_id, clock())
    send(stripe_app, stripe, "checkout.session.completed", purchase.checkout_session_id, clock)
    return purchase, account_id


def spend(app, account_id, yen, key):
    with db_session(app) as session:
        ledger.debit(session=session, account_id=account_id, amount=yen * YEN, idempotency_key=key, reason="sms",
                     now=app.config["CLOCK"]())


def test_a_full_refund_after_60_percent_use_takes_back_only_the_unused_40_percent(stripe_app, stripe, clock):
    purchase, account_id = paid_purchase(stripe_app, stripe, clock)
    spend(stripe_app, account_id, 600, "use")
    stripe.refund(purchase.checkout_session_id, 1100, clock())
    for _ in range(2):  # a redelivery changes nothing
        send(stripe_app, stripe, "charge.refunded", purchase.checkout_session_id, clock, event_id="evt_refund")
    state = snapshot(stripe_app, purchase.id)
    assert state["lot"][1] == 0 and state["balance"] == 0 and state["refunded"] == 1100
    with db_session(stripe_app) as session:
        kinds = session.execute(text("SELECT kind, amount FROM credit_transactions ORDER BY id")).all()
    assert [tuple(k) for k in kinds] == [("grant", 1000 * YEN), ("debit", -600 * YEN), ("refund", -400 * YEN)]
    ledger_ok(stripe_app)


def test_partial_refunds_take_back_their_share_from_the_cumulative_amount(stripe_app, stripe, clock):
    purchase, account_id = paid_purchase(stripe_app, stripe, clock)
    stripe.refund(purchase.checkout_session_id, 550, clock())  # half of ¥1,100: ¥500 of credit
    send(stripe_app, stripe, "charge.refunded", purchase.checkout_session_id, clock)
    assert snapshot(stripe_app, purchase.id)["lot"][1] == 500 * YEN
    spend(stripe_app, account_id, 300, "use")
    stripe.refund(purchase.checkout_session_id, 550, clock())  # the rest: only ¥200 is left to take
    send(stripe_app, stripe, "charge.refunded", purchase.checkout_session_id, clock)
    state = snapshot(stripe_app, purchase.id)
    assert state["lot"][1] == 0 and state["balance"] == 0 and state["taken_back"] == 1000 * YEN
    assert state["invoices"] == ["invoice"]  # refunds under ¥10,000: no return invoice
    ledger_ok(stripe_app)


def test_a_refund_of_10000_yen_or_more_gets_a_return_invoice(stripe_app, stripe, clock):
    purchase, account_id = paid_purchase(stripe_app, stripe, clock, amount=20_000)
    stripe.refund(purchase.checkout_session_id, 9_999, clock())
    stripe.refund(purchase.checkout_session_id, 11_000, clock())
    send(stripe_app, stripe, "charge.refunded", purchase.checkout_session_id, clock)
    with db_session(stripe_app) as session:
        [returned] = session.scalars(select(Invoice).where(Invoice.kind == "return")).all()
    assert (returned.number, returned.total_yen, returned.amount_yen, returned.tax_yen) == ("RET-00000001", 11_000, 10_000, 1_000)


def test_a_dispute_freezes_the_unused_credit_and_a_win_releases_it(stripe_app, stripe, clock):
    purchase, account_id = paid_purchase(stripe_app, stripe, clock)
    spend(stripe_app, account_id, 100, "use")
    stripe.dispute(purchase.checkout_session_id, "needs_response", clock())
    send(stripe_app, stripe, "charge.dispute.created", purchase.checkout_session_id, clock)
    state = snapshot(stripe_app, purchase.id)
    assert state["dispute"] == "open" and state["open_holds"] == [900 * YEN] and state["balance"] == 0
    with pytest.raises(InsufficientCredit):
        spend(stripe_app, account_id, 1, "frozen")
    stripe.dispute(purchase.checkout_session_id, "won", clock())
    send(stripe_app, stripe, "charge.dispute.closed", purchase.checkout_session_id, clock)
    state = snapshot(stripe_app, purchase.id)
    assert state["dispute"] == "won" and state["open_holds"] == [] and state["balance"] == 900 * YEN
    ledger_ok(stripe_app)


def test_a_lost_dispute_writes_the_frozen_credit_off(stripe_app, stripe, clock):
    purchase, account_id = paid_purchase(stripe_app, stripe, clock)
    stripe.dispute(purchase.checkout_session_id, "needs_response", clock())
    send(stripe_app, stripe, "charge.dispute.created", purchase.checkout_session_id, clock)
    stripe.dispute(purchase.checkout_session_id, "lost", clock())
    send(stripe_app, stripe, "charge.dispute.closed", purchase.checkout_session_id, clock)
    state = snapshot(stripe_app, purchase.id)
    assert state["dispute"] == "lost" and state["lot"][1:] == (0, clock() + timedelta(days=90), True)
    assert state["balance"] == 0 and state["held"] == 0
    ledger_ok(stripe_app)


# -- every ordering ----------------------------------------------------------------------------

EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded", "charge.refunded",
          "charge.dispute.created", "charge.dispute.closed")


@pytest.mark.parametrize("outcome", ["won", "lost"])
def test_every_ordering_of_the_five_events_ends_in_the_in_order_state(stripe_app, stripe, clock, outcome):
    """A konbini payment paid at the store, refunded ¥550, disputed and the dispute closed:
    all 120 orderings of the five deliveries end where the in-order delivery ends. Every
    delivery re-reads the payment, so this checks that each event type finds its purchase
    (a charge event before the checkout one goes through the payment intent's metadata) and
    that repeats change nothing; the test below covers older answers applied after newer ones."""
    user, account_id = customer(stripe_app)
    orderings = list(itertools.permutations(EVENTS))
    assert len(orderings) == 120
    states = []
    for order in [EVENTS] + orderings:
        purchase = start(stripe_app, user, account_id)
        session_id = purchase.checkout_session_id
        stripe.konbini_voucher(session_id, clock(), clock() + timedelta(days=3))
        stripe.konbini_paid(session_id, clock())
        stripe.refund(session_id, 550, clock())
        stripe.dispute(session_id, outcome, clock())
        for event_type in order:
            assert send(stripe_app, stripe, event_type, session_id, clock).status_code == 200
        state = snapshot(stripe_app, purchase.id)
        state.pop("balance"), state.pop("held")  # account-wide: grows with each purchase
        states.append(state)
    in_order = states[0]
    assert in_order["status"] == "paid" and in_order["dispute"] == outcome and in_order["refunded"] == 550
    assert in_order["lot"][1] == (500 * YEN if outcome == "won" else 0)
    assert all(state == in_order for state in states[1:])
    ledger_ok(stripe_app)


def test_a_webhook_while_stripe_cannot_be_asked_gets_503_and_the_redelivery_works(stripe_app, stripe, clock):
    user, account_id = customer(stripe_app)
    purchase = start(stripe_app, user, account_id)
    stripe.pay_by_card(purchase.checkout_session_id, clock())
    payload = stripe.event("checkout.session.completed", purchase.checkout_session_id, clock())
    stripe.fail_next = 100
    assert deliver(stripe_app, payload, signature(payload, clock())).status_code == 503
    assert snapshot(stripe_app, purchase.id)["status"] == "open"
    stripe.fail_next = 0
    assert deliver(stripe_app, payload, signature(payload, clock())).status_code == 200
    assert snapshot(stripe_app, purchase.id)["status"] == "paid"


def _database_failing_with(error_class, message):
    import sqlite3

    def failing(*args, **kwargs):
        raise error_class("SELECT purchases.public_id FROM purchases", {}, getattr(sqlite3, error_class.__name__)(message))

    return failing


def test_a_webhook_while_the_database_is_down_gets_503_with_retry_after_and_no_gateway_blame(
        stripe_app, stripe, clock, monkeypatch, caplog):
    from sqlalchemy.exc import OperationalError

    purchase, _ = paid_purchase(stripe_app, stripe, clock)
    stripe.refund(purchase.checkout_session_id, 1100, clock())
    payload = stripe.event("charge.refunded", purchase.checkout_session_id, clock(), event_id="evt_refund")
    monkeypatch.setattr(service, "purchase_ref_by_payment", _database_failing_with(OperationalError, "database is locked"))
    response = deliver(stripe_app, payload, signature(payload, clock()))
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert "gateway could not be asked" not in caplog.text and "database unavailable" in caplog.text
    assert snapshot(stripe_app, purchase.id)["refunded"] == 0
    monkeypatch.undo()
    assert deliver(stripe_app, payload, signature(payload, clock())).status_code == 200
    assert snapshot(stripe_app, purchase.id)["refunded"] == 1100


def test_a_database_error_during_a_webhook_is_a_server_error_not_a_gateway_failure(
        stripe_app, stripe, clock, monkeypatch, caplog):
    from sqlalchemy.exc import IntegrityError

    purchase, _ = paid_purchase(stripe_app, stripe, clock)
    stripe.refund(purchase.checkout_session_id, 1100, clock())
    payload = stripe.event("charge.refunded", purchase.checkout_session_id, clock(), event_id="evt_refund")
    monkeypatch.setattr(service, "purchase_ref_by_payment", _database_failing_with(IntegrityError, "constraint failed"))
    response = deliver(stripe_app, payload, signature(payload, clock()))
    assert response.status_code == 500
    assert "gateway could not be asked" not in caplog.text and "unhandled database error" in caplog.text
    assert snapshot(stripe_app, purchase.id)["refunded"] == 0


def test_a_database_outage_while_the_sandbox_gateway_is_asked_is_a_503_with_retry_after(app, monkeypatch, caplog):
    from sqlalchemy.exc import OperationalError

    from portal.billing.gateway import SandboxGateway

    user, account_id = customer(app)
    purchase = start(app, user, account_id)
    monkeypatch.setattr(SandboxGateway, "fetch", _database_failing_with(OperationalError, "database is locked"))
    payload = json.dumps({"id": "evt_sandbox_1", "type": "checkout.session.completed",
                          "data": {"object": {"metadata": {"purchase": purchase.public_id}}}}).encode()
    now = int(app.config["CLOCK"]().timestamp())
    response = deliver(app, payload, sign(payload, app.extensions["portal.webhook_secrets"][0], now))
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert "gateway could not be asked" not in caplog.text


def test_a_test_mode_payment_never_counts_for_a_live_mode_portal(stripe_app, stripe, clock):
    user, account_id = customer(stripe_app)
    purchase = start(stripe_app, user, account_id)
    stripe.pay_by_card(purchase.checkout_session_id, clock())
    stripe.sessions[purchase.checkout_session_id]["livemode"] = True  # our key is sk_test_: a live payment is foreign
    send(stripe_app, stripe, "checkout.session.completed", purchase.checkout_session_id, clock)
    assert snapshot(stripe_app, purchase.id)["lot"] is None


def test_only_succeeded_refunds_take_credit_back(stripe_app, stripe, clock):
    purchase, account_id = paid_purchase(stripe_app, stripe, clock, amount=20_000)
    refund = stripe.refund(purchase.checkout_session_id, 11_000, clock(), status="pending")
    send(stripe_app, stripe, "charge.refunded", purchase.checkout_session_id, clock)
    state = snapshot(stripe_app, purchase.id)
    assert state["refunded"] == 0 and state["lot"][1] == 20_000 * YEN and state["invoices"] == ["invoice"]
    refund["status"] = "failed"
    send(stripe_app, stripe, "charge.refund.updated", purchase.checkout_session_id, clock)
    assert snapshot(stripe_app, purchase.id)["refunded"] == 0
    stripe.refund(purchase.checkout_session_id, 10_000, clock())  # exactly ¥10,000: a return invoice
    send(stripe_app, stripe, "charge.refunded", purchase.checkout_session_id, clock)
    state = snapshot(stripe_app, purchase.id)
    assert state["refunded"] == 10_000 and sorted(state["invoices"]) == ["invoice", "return"]
    ledger_ok(stripe_app)


def test_credit_a_call_still_holds_is_written_off_when_it_returns_after_a_full_refund(stripe_app, stripe, clock):
    purchase, account_id = paid_purchase(stripe_app, stripe, clock)
    with db_session(stripe_app) as session:
        held = ledger.hold(session=session, account_id=account_id, amount=50 * YEN, idempotency_key="call-1",
                           reason="call", now=clock())
    stripe.refund(purchase.checkout_session_id, 1100, clock())
    send(stripe_app, stripe, "charge.refunded", purchase.checkout_session_id, clock)
    assert snapshot(stripe_app, purchase.id)["balance"] == 0
    with db_session(stripe_app) as session:
        ledger.settle(session=session, hold_id=held.id, charged=10 * YEN, now=clock())  # ¥40 comes back to the lot
    state = snapshot(stripe_app, purchase.id)
    assert state["balance"] == 0 and state["lot"][1] == 0 and state["held"] == 0
    ledger_ok(stripe_app)


def test_every_ordering_of_the_gateways_answers_over_time_ends_in_the_in_order_state(stripe_app, stripe, clock):
    """The webhook reads the payment's facts before it takes the account's lock, so an older
    answer can be applied after a newer one. Each ordering applies the five successive answers
    (voucher issued, paid at the store, ¥550 refunded, disputed, dispute won) in a different
    order; all end where the in-order application ends."""
    user, account_id = customer(stripe_app)
    gateway = stripe_app.extensions["portal.gateway"]
    states = []
    for order in [tuple(range(5))] + list(itertools.permutations(range(5))):
        purchase = start(stripe_app, user, account_id)
        session_id = purchase.checkout_session_id
        steps = [
            lambda: stripe.konbini_voucher(session_id, clock(), clock() + timedelta(days=3)),
            lambda: stripe.konbini_paid(session_id, clock()),
            lambda: stripe.refund(session_id, 550, clock()),
            lambda: stripe.dispute(session_id, "needs_response", clock()),
            lambda: stripe.dispute(session_id, "won", clock()),
        ]
        answers = []
        for step in steps:
            step()
            answers.append(gateway.fetch(session_id))
        with stripe_app.app_context(), db_session(stripe_app) as session:
            for index in order:
                service.apply_facts(session=session, purchase_ref=purchase.public_id, facts=answers[index], event=None,
                                    issuer=service.Issuer("Chotto KK", "T7123456789012"), now=clock())
        state = snapshot(stripe_app, purchase.id)
        state.pop("balance"), state.pop("held")
        states.append(state)
    assert states[0]["status"] == "paid" and states[0]["dispute"] == "won" and states[0]["lot"][1] == 500 * YEN
    assert all(state == states[0] for state in states[1:])
    ledger_ok(stripe_app)
