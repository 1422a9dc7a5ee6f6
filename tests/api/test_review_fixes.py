"""Cases a review of the API found: crash repair of refunds, calls capped at their hold and
counted against caps, test credentials isolated from live ones and from real carriers, the
read scope, tokens kept out of logs, cross-site requests, wrong JSON types, tags, expiry."""

import logging
from datetime import timedelta

from sqlalchemy import select, text, update

from portal.api.wire import StatusCallbacks
from portal.credentials import service as credentials
from portal.messaging.api_models import Message
from portal.messaging.carrier import TestInboxCarrier
from tests.api.conftest import YEN, Key, fund, new_key
from tests.api.test_sms import RefusingCarrier, SMS, available, send
from tests.conftest import _empty_tables, make_app
from tests.helpers import db_session, deliver_outbox, make_user

CALL = {"caller": "+81312345678", "recipient": "+819012345678", "tts_message": "hello", "tts_lang": "en"}


class NeverHangingUp(TestInboxCarrier):
    """The person called stays on the line: only the carrier's limit ends the call."""

    def place_call(self, *, session, call, now):
        super().place_call(session=session, call=call, now=now)
        return call.max_seconds


def test_a_failure_recorded_without_its_refund_is_refunded_by_the_next_attempt(app, api, key):
    msgid = send(api, key).json[0]["msgid"]
    with db_session(app) as session:  # as if the process died between the two writes of an older version
        session.execute(update(Message).where(Message.msgid == msgid).values(status="FAIL"))
        session.commit()
        message_id = session.scalars(select(Message.id)).one()
        from portal.messaging.delivery import fail_sms

        bodies = StatusCallbacks(app.config["BASE_URL"])
        with app.app_context():
            fail_sms(session, message_id=message_id, reason="again", bodies=bodies, now=app.config["CLOCK"]())
            fail_sms(session, message_id=message_id, reason="and again", bodies=bodies, now=app.config["CLOCK"]())
        refunds = session.execute(text("SELECT count(*) FROM credit_transactions WHERE kind = 'refund'")).scalar()
    assert refunds == 1 and available(app, key.account_id) == 1050 * YEN


def test_a_call_ends_when_its_hold_runs_out_and_costs_at_most_the_hold(app, api, key):
    callid = api.post("/voice/simple/playbacks/", data=CALL, headers=key.headers).json[0]["callid"]
    app.extensions["portal.carrier"] = NeverHangingUp()
    deliver_outbox(app)
    call = api.get(f"/voice/calls/{callid}", headers=key.headers).json
    assert (call["duration"], call["cost"]) == (300, 50.0)  # ¥50 pays for 5 minutes: the carrier hangs up there
    assert available(app, key.account_id) == 1000 * YEN


def test_calls_in_progress_count_against_the_monthly_cap(app, api, customer):
    user, account_id = customer
    fund(app, account_id, 1000)
    capped = new_key(app, account_id, user.id, monthly_cap=60 * YEN)
    assert api.post("/voice/simple/playbacks/", data=CALL, headers=capped.headers).status_code == 201
    refused = api.post("/voice/simple/playbacks/", data=CALL, headers=capped.headers)
    assert refused.status_code == 403 and "monthly spend cap" in refused.json["detail"]
    deliver_outbox(app)  # the first call ends: ¥10
    assert api.post("/voice/simple/playbacks/", data=CALL, headers=capped.headers).status_code == 201


def test_an_idempotency_key_from_a_test_credential_never_answers_a_live_one(app, api, customer):
    user, account_id = customer
    fund(app, account_id, 100)
    test_key, live_key = new_key(app, account_id, user.id, mode="test"), new_key(app, account_id, user.id)
    assert send(api, test_key, headers={"Idempotency-Key": "order-1"}).status_code == 201
    response = send(api, live_key, headers={"Idempotency-Key": "order-1"})
    assert response.status_code == 422


def test_test_credentials_never_reach_the_configured_carrier(app, api, customer):
    user, account_id = customer
    test_key = new_key(app, account_id, user.id, mode="test")
    msgid = send(api, test_key).json[0]["msgid"]
    app.extensions["portal.carrier"] = RefusingCarrier()  # stands in for a real network
    deliver_outbox(app)
    assert api.get(f"/sms/messages/{msgid}", headers=test_key.headers).json["status"] == "DELIVERED"


def test_reading_needs_the_read_scope(app, api, customer):
    user, account_id = customer
    fund(app, account_id, 100)
    sms_only = new_key(app, account_id, user.id, scopes=("sms",))
    msgid = send(api, sms_only).json[0]["msgid"]
    for path in ("/you/credits/", "/sms/messages/", f"/sms/messages/{msgid}", "/voice/calls/" + "0" * 32):
        response = api.get(path, headers=sms_only.headers)
        assert response.status_code == 403 and "read scope" in response.json["detail"], path


def test_the_log_filter_removes_tokens_from_any_line(app, key, caplog):
    logger = logging.getLogger("werkzeug")
    with caplog.at_level(logging.INFO, logger="werkzeug"):
        logger.info('127.0.0.1 - - "GET /you/credits/?api_key=%s HTTP/1.1" 401 -', key.token)
    assert key.token not in caplog.text and "chotto_live_[redacted]" in caplog.text


def test_a_token_pasted_as_the_user_name_is_not_logged(app, api, key, caplog):
    import base64

    raw = base64.b64encode(f"{key.token}:{key.token}".encode()).decode()
    assert api.get("/you/credits/", headers={"Authorization": f"Basic {raw}"}).status_code == 401
    assert key.token[:20] not in caplog.text


def test_a_cross_site_browser_post_to_the_api_is_refused(app, api, key):
    response = api.post("/sms/messages/", data=SMS, headers=key.headers | {"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 403 and "detail" in response.json
    assert available(app, key.account_id) == 1050 * YEN


def test_json_values_of_the_wrong_type_are_400_naming_the_field(app, api, key):
    response = api.post("/sms/messages/", json=SMS | {"recipient": 819012345678, "sender": ["x"]}, headers=key.headers)
    assert response.status_code == 400 and response.json == {"recipient": ["Must be a string."],
                                                              "sender": ["Give one value, not a list."]}


def test_ten_long_tags_fit_and_a_comma_inside_a_tag_is_refused(app, api, key):
    tags = [f"{n}" * 50 for n in range(10)]
    response = api.post("/sms/messages/", json=SMS | {"tags": tags}, headers=key.headers)
    assert response.status_code == 201
    assert api.get(f"/sms/messages/{response.json[0]['msgid']}", headers=key.headers).json["tags"] == tags
    response = api.post("/sms/messages/", json=SMS | {"tags": ["a,b"]}, headers=key.headers)
    assert response.status_code == 400 and list(response.json) == ["tags"]


def test_the_operator_url_encoded_in_the_parameter_name_works(app, api, key):
    send(api, key)
    assert len(api.get("/sms/messages/?sent_date%3E%3D=2026-11-27", headers=key.headers).json) == 1


def test_the_account_daily_spend_limit(database_url, clock):
    app = make_app(database_url, CLOCK=clock, API_DAILY_SPEND_CAP_YEN=15)
    try:
        user = make_user(app, email="dev@example.com")
        with db_session(app) as session:
            from portal.accounts.models import Membership

            account_id = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
        fund(app, account_id, 100)
        key = new_key(app, account_id, user.id)
        api = app.test_client()
        assert send(api, key).status_code == 201
        response = send(api, key)
        assert response.status_code == 403 and "daily spend limit" in response.json["detail"]
        clock.advance(days=1)
        assert send(api, key).status_code == 201
    finally:
        _empty_tables(app.extensions["portal.engine"])
        app.extensions["portal.engine"].dispose()


def test_a_credential_can_expire_and_its_rotated_token_keeps_that_expiry(app, api, customer, clock):
    user, account_id = customer
    with app.app_context(), db_session(app) as session:
        credential, token = credentials.create(session=session, account_id=account_id, user_id=user.id, name="temp",
                                               mode="test", scopes=["read"], networks=[], monthly_cap=None,
                                               now=clock(), expires_at=clock() + timedelta(days=30))
        _, rotated = credentials.rotate(session=session, account_id=account_id, user_id=user.id,
                                        credential_id=credential.id, overlap=timedelta(0), now=clock())
    key = Key(credential.sid, rotated, account_id, user.id)
    clock.advance(days=30, seconds=-1)
    assert api.get("/you/credits/", headers=key.headers).status_code == 200
    clock.advance(seconds=1)
    assert api.get("/you/credits/", headers=key.headers).status_code == 401
