"""The SMS half of the customer API: every route, every error shape, prices and segments,
trial limits, idempotency, delivery and refunds."""

import json

import pytest
from sqlalchemy import select, text, update

from portal.accounts.models import Account
from portal.api.wire import StatusCallbacks
from portal.ledger import queries
from portal.ledger.check import check
from portal.messaging.api_models import Message
from portal.messaging.carrier import CarrierRejected, TestInboxCarrier
from portal.messaging.models import TestInboxMessage
from tests.api.conftest import YEN, fund, new_key
from tests.helpers import db_session, deliver_outbox

SMS = {"recipient": "+819012345678", "sender": "Chotto", "message": "Your code is 1234"}


def available(app, account_id):
    with db_session(app) as session:
        return queries.summary(session, account_id=account_id, now=app.config["CLOCK"]()).available


def send(api, key, fields=None, **kwargs):
    return api.post("/sms/messages/", data=fields or SMS, headers=key.headers | kwargs.pop("headers", {}), **kwargs)


def test_sending_an_sms_debits_10_yen_a_segment_and_records_it(app, api, key):
    response = send(api, key)
    assert response.status_code == 201
    [answer] = response.json
    assert set(answer) == {"msgid"} and len(answer["msgid"]) == 32
    assert available(app, key.account_id) == (1000 + 50 - 10) * YEN
    status = api.get(f"/sms/messages/{answer['msgid']}", headers=key.headers).json
    assert status["status"] == "QUEUED" and status["cost"] == 10.0 and status["recipient"] == "+819012345678"
    assert status["sent_time"] == "2026-11-27 12:00:00"  # Japan time
    deliver_outbox(app)
    status = api.get(f"/sms/messages/{answer['msgid']}/", headers=key.headers).json
    assert status["status"] == "DELIVERED"
    with db_session(app) as session:
        [inbox] = session.scalars(select(TestInboxMessage)).all()
    assert (inbox.recipient, inbox.sender, inbox.body) == ("+819012345678", "Chotto", "Your code is 1234")


def test_paths_work_with_and_without_the_trailing_slash_and_json_bodies_too(app, api, key):
    assert api.post("/sms/messages", json=SMS, headers=key.headers).status_code == 201
    assert api.get("/sms/messages", headers=key.headers).status_code == 200
    assert api.get("/you/credits", headers=key.headers).json["credits"] == 1040.0
    assert api.get("/you/credits/", headers=key.headers).status_code == 200


@pytest.mark.parametrize("body, parts", [("a" * 160, 1), ("a" * 161, 2), ("a" * 306, 2), ("a" * 307, 3),
                                         ("あ" * 70, 1), ("あ" * 71, 2), ("€" * 80, 1), ("€" * 81, 2)])
def test_messages_are_priced_per_segment(app, api, key, body, parts):
    response = send(api, key, SMS | {"message": body})
    msgid = response.json[0]["msgid"]
    status = api.get(f"/sms/messages/{msgid}", headers=key.headers).json
    assert (status["segments"], status["cost"]) == (parts, 10.0 * parts)


def test_more_than_ten_parts_is_refused_naming_the_message(app, api, key):
    response = send(api, key, SMS | {"message": "あ" * (67 * 10 + 1)})
    assert response.status_code == 400 and list(response.json) == ["message"]
    assert available(app, key.account_id) == 1050 * YEN


def test_missing_fields_are_named(app, api, key):
    response = send(api, key, {"message": ""})
    assert response.status_code == 400
    assert response.json == {"recipient": ["This field is required."], "sender": ["This field is required."],
                             "message": ["This field is required."]}


@pytest.mark.parametrize("field, value", [("recipient", "+8108012345678"), ("recipient", "12345"),
                                          ("recipient", "not a number"), ("sender", "Chotto-Japan!"),
                                          ("sender", "12345678901234567"), ("callbackurl", "ftp://example.com/x"),
                                          ("tags", ",".join(["t"] * 11))])
def test_invalid_values_get_400_naming_the_field(app, api, key, field, value):
    response = send(api, key, SMS | {field: value})
    assert response.status_code == 400 and list(response.json) == [field], response.json
    assert available(app, key.account_id) == 1050 * YEN


def test_numbers_are_normalised_to_e164(app, api, key):
    msgid = send(api, key, SMS | {"recipient": "090-1234-5678", "sender": "+819000000000"}).json[0]["msgid"]
    status = api.get(f"/sms/messages/{msgid}", headers=key.headers).json
    assert status["recipient"] == "+819012345678" and status["sender"] == "819000000000"


def test_destinations_outside_the_allowed_countries_are_refused(app, api, key):
    response = send(api, key, SMS | {"recipient": "+14155552671"})
    assert response.status_code == 400 and "US is not enabled" in response.json["recipient"][0]
    with db_session(app) as session:
        session.execute(update(Account).where(Account.id == key.account_id).values(allowed_countries="JP,US"))
        session.commit()
    msgid = send(api, key, SMS | {"recipient": "+14155552671"}).json[0]["msgid"]
    assert api.get(f"/sms/messages/{msgid}", headers=key.headers).json["cost"] == 12.0


def test_trial_accounts_send_live_only_to_their_own_verified_numbers(app, api, customer):
    user, account_id = customer
    trial = new_key(app, account_id, user.id)
    response = send(api, trial)
    assert response.status_code == 400 and "verified mobile numbers" in response.json["recipient"][0]
    assert send(api, trial, SMS | {"recipient": "+819011112222"}).status_code == 201
    test_key = new_key(app, account_id, user.id, mode="test")
    assert send(api, test_key).status_code == 201  # a test credential sends nothing anyway


def test_test_credentials_record_everything_and_charge_nothing(app, api, customer):
    user, account_id = customer
    test_key = new_key(app, account_id, user.id, mode="test")
    msgid = send(api, test_key).json[0]["msgid"]
    deliver_outbox(app)
    status = api.get(f"/sms/messages/{msgid}", headers=test_key.headers).json
    assert status["status"] == "DELIVERED" and status["cost"] == 0.0 and status["test"] is True
    assert available(app, account_id) == 50 * YEN
    with db_session(app) as session:
        assert len(session.scalars(select(TestInboxMessage)).all()) == 1


def test_insufficient_credit_is_402_and_changes_nothing(app, api, customer):
    user, account_id = customer
    fund(app, account_id, 1)
    with db_session(app) as session:  # spend all but ¥5
        from portal.ledger import service

        service.debit(session=session, account_id=account_id, amount=46 * YEN, idempotency_key="x", reason="x",
                      now=app.config["CLOCK"]())
    key = new_key(app, account_id, user.id)
    response = send(api, key)
    assert response.status_code == 402 and "detail" in response.json
    assert available(app, account_id) == 5 * YEN
    with db_session(app) as session:
        assert session.scalars(select(Message)).all() == []


def test_scopes_are_enforced_with_403(app, api, customer):
    user, account_id = customer
    fund(app, account_id, 100)
    read_only = new_key(app, account_id, user.id, scopes=("read",))
    assert send(api, read_only).status_code == 403
    assert api.post("/voice/simple/playbacks/", data={"caller": "+81312345678", "recipient": "+819012345678",
                                                      "tts_message": "hi", "tts_lang": "en"},
                    headers=read_only.headers).status_code == 403
    assert api.get("/you/credits/", headers=read_only.headers).status_code == 200


def test_unknown_or_foreign_messages_are_404(app, api, key):
    assert api.get("/sms/messages/0123456789abcdef0123456789abcdef", headers=key.headers).json == {"detail": "Not found."}
    msgid = send(api, key).json[0]["msgid"]
    from tests.helpers import make_user

    other_user = make_user(app, email="other@example.com")
    with db_session(app) as session:
        from portal.accounts.models import Membership

        other_account = session.scalars(select(Membership.account_id).where(Membership.user_id == other_user.id)).one()
    other = new_key(app, other_account, other_user.id)
    assert api.get(f"/sms/messages/{msgid}", headers=other.headers).status_code == 404


def test_listing_filters_by_sent_date_in_every_spelling(app, api, key, clock):
    first = send(api, key).json[0]["msgid"]
    clock.advance(days=2)
    second = send(api, key, SMS | {"message": "later"}).json[0]["msgid"]
    today = "2026-11-29"

    def listed(query):
        response = api.get(f"/sms/messages/?{query}", headers=key.headers)
        assert response.status_code == 200, response.json
        return [m["msgid"] for m in response.json]

    assert listed("") == [second, first]
    assert listed(f"sent_date={today}") == [second]
    assert listed("sent_date=%3E%3D2026-11-28") == [second]  # sent_date=>=2026-11-28
    assert listed("sent_date>=2026-11-28") == [second]  # the operator in the parameter's name
    assert listed("sent_date<2026-11-28") == [first]
    assert listed("sent_date<=2026-11-27") == [first]
    assert listed("sent_date>2026-11-27") == [second]


@pytest.mark.parametrize("value", ["2026-08-28", ">=2026-08-28", "yesterday", "2026-13-01", "=>2026-11-01"])
def test_a_bad_sent_date_or_one_over_90_days_back_is_400_naming_sent_date(app, api, key, value):
    from urllib.parse import quote

    response = api.get(f"/sms/messages/?sent_date={quote(value)}", headers=key.headers)
    assert response.status_code == 400 and list(response.json) == ["sent_date"], response.json


def test_90_days_back_is_still_listed(app, api, key):
    """Today is 2026-11-27 in Japan: 2026-08-29 is 90 days back, 2026-08-28 is 91."""
    assert api.get("/sms/messages/?sent_date=%3E%3D2026-08-29", headers=key.headers).status_code == 200


# -- idempotency ------------------------------------------------------------------------------


def test_a_retry_with_the_same_key_is_answered_identically_and_charged_once(app, api, key):
    first = send(api, key, headers={"Idempotency-Key": "order-42"})
    again = send(api, key, headers={"Idempotency-Key": "order-42"})
    as_json = api.post("/sms/messages/", json=SMS, headers=key.headers | {"Idempotency-Key": "order-42"})
    assert first.status_code == again.status_code == as_json.status_code == 201
    assert first.data == again.data == as_json.data
    assert available(app, key.account_id) == 1040 * YEN
    different = send(api, key, SMS | {"message": "another"}, headers={"Idempotency-Key": "order-42"})
    assert different.status_code == 422 and "detail" in different.json


def test_idempotency_keys_are_kept_24_hours(app, api, key, clock):
    first = send(api, key, headers={"Idempotency-Key": "k"})
    clock.advance(hours=23, minutes=59)
    assert send(api, key, headers={"Idempotency-Key": "k"}).data == first.data
    clock.advance(minutes=1, seconds=1)
    later = send(api, key, headers={"Idempotency-Key": "k"})
    assert later.status_code == 201 and later.data != first.data
    assert available(app, key.account_id) == 1030 * YEN


def test_a_failed_request_is_not_remembered_under_its_key(app, api, key):
    assert send(api, key, SMS | {"recipient": "+8108012345678"}, headers={"Idempotency-Key": "k2"}).status_code == 400
    assert send(api, key, headers={"Idempotency-Key": "k2"}).status_code == 201


# -- delivery ---------------------------------------------------------------------------------


class RefusingCarrier(TestInboxCarrier):
    def send_sms(self, *, session, sms, now):
        raise CarrierRejected("number not in service")


class FlakyCarrier(TestInboxCarrier):
    def __init__(self):
        self.calls = 0

    def send_sms(self, *, session, sms, now):
        self.calls += 1
        if self.calls == 1:
            raise TimeoutError("no answer from the carrier")
        return super().send_sms(session=session, sms=sms, now=now)


def test_a_carrier_refusal_fails_the_message_and_refunds_it_exactly_once(app, api, key):
    msgid = send(api, key).json[0]["msgid"]
    app.extensions["portal.carrier"] = RefusingCarrier()
    deliver_outbox(app)
    assert api.get(f"/sms/messages/{msgid}", headers=key.headers).json["status"] == "FAIL"
    assert available(app, key.account_id) == 1050 * YEN
    with db_session(app) as session:
        from portal.messaging.delivery import fail_sms

        message = session.scalars(select(Message)).one()
        fail_sms(session, message_id=message.id, reason="again", bodies=StatusCallbacks(app.config["BASE_URL"]),
                 now=app.config["CLOCK"]())  # a second report
        refunds = session.execute(text("SELECT count(*) FROM credit_transactions WHERE kind = 'refund'")).scalar()
        problems, _ = check(session, now=app.config["CLOCK"]())
    assert refunds == 1 and problems == [] and available(app, key.account_id) == 1050 * YEN


def test_an_unknown_carrier_outcome_is_retried_not_refunded(app, api, key, clock):
    msgid = send(api, key).json[0]["msgid"]
    flaky = app.extensions["portal.carrier"] = FlakyCarrier()
    deliver_outbox(app)
    assert api.get(f"/sms/messages/{msgid}", headers=key.headers).json["status"] == "QUEUED"
    clock.advance(minutes=5)
    deliver_outbox(app)
    assert api.get(f"/sms/messages/{msgid}", headers=key.headers).json["status"] == "DELIVERED"
    assert flaky.calls == 2 and available(app, key.account_id) == 1040 * YEN


def test_the_monthly_spend_cap_refuses_what_would_exceed_it(app, api, customer):
    user, account_id = customer
    fund(app, account_id, 100)
    capped = new_key(app, account_id, user.id, monthly_cap=15 * YEN)
    assert send(api, capped).status_code == 201
    response = send(api, capped)
    assert response.status_code == 403 and "monthly spend cap" in response.json["detail"]


def test_message_json_has_xoxzo_fields(app, api, key):
    msgid = send(api, key, SMS | {"tags": "otp,signup"}).json[0]["msgid"]
    body = api.get(f"/sms/messages/{msgid}", headers=key.headers).json
    for field in ("msgid", "status", "sent_time", "cost", "sender", "recipient", "url", "tags"):
        assert field in body
    assert body["tags"] == ["otp", "signup"] and body["url"].endswith(f"/sms/messages/{msgid}/")
    assert json.loads(api.get("/sms/messages/", headers=key.headers).data)[0]["msgid"] == msgid


def test_history_older_than_90_days_is_not_listed(app, api, key, clock):
    send(api, key)
    clock.advance(days=91)
    assert api.get("/sms/messages/", headers=key.headers).json == []
    with db_session(app) as session:
        assert len(session.scalars(select(Message)).all()) == 1  # kept (13 months), just not listed
