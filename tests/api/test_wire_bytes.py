"""The API's answers and status callbacks held to the byte: every answer shape the customer
API gives (successes, each error, stored idempotent answers) and the JSON the status
callbacks post, as exact bytes with the Content-Type. Xoxzo's client libraries parse these,
and a retry with an Idempotency-Key must get the very bytes of the first answer."""

import hashlib
import json

from sqlalchemy import select, update

from portal.accounts.models import Account
from portal.credentials.models import Credential
from portal.ledger import service as ledger
from portal.ledger.models import CreditState
from portal.messaging.api_models import ApiIdempotency, Call
from portal.messaging.carrier import CarrierRejected, TestInboxCarrier
from portal.messaging.models import TestInboxMessage
from tests.api.conftest import YEN, fund, new_key
from tests.api.test_sms import SMS, RefusingCarrier, send
from tests.helpers import db_session, deliver_outbox
from tests.hooks import HookServer

CALL = {"caller": "+81312345678", "recipient": "+819012345678", "tts_message": "Your code is 1 2 3 4",
        "tts_lang": "en"}
BASE = "https://portal.chotto.test"


def exactly(response, status: int, body: str) -> None:
    assert (response.status_code, response.content_type, response.data) == (status, "application/json",
                                                                          body.encode()), response.data


def call(api, key, fields=None, **headers):
    return api.post("/voice/simple/playbacks/", data=fields or CALL, headers=key.headers | headers)


# -- successes ----------------------------------------------------------------------------------


def test_a_sent_sms_and_its_replay(app, api, key):
    first = send(api, key, headers={"Idempotency-Key": "order-1"})
    msgid = first.json[0]["msgid"]
    exactly(first, 201, f'[{{"msgid": "{msgid}"}}]')
    exactly(send(api, key, headers={"Idempotency-Key": "order-1"}), 201, f'[{{"msgid": "{msgid}"}}]')


def test_one_message_and_the_list(app, api, key):
    msgid = send(api, key, SMS | {"tags": "otp,登録"}).json[0]["msgid"]
    one = (f'{{"msgid": "{msgid}", "status": "QUEUED", "sent_time": "2026-11-27 12:00:00", "cost": 10.0, '
           f'"sender": "Chotto", "recipient": "+819012345678", "url": "{BASE}/sms/messages/{msgid}/", '
           f'"tags": ["otp", "登録"], "segments": 1, "encoding": "GSM-7", "test": false, '
           f'"status_time": "2026-11-27 12:00:00"}}')
    exactly(api.get(f"/sms/messages/{msgid}", headers=key.headers), 200, one)
    exactly(api.get("/sms/messages/", headers=key.headers), 200, f"[{one}]")
    exactly(api.get("/sms/messages/?sent_date=2026-11-26", headers=key.headers), 200, "[]")


def test_a_test_message_after_delivery(app, api, customer, clock):
    user, account_id = customer
    test_key = new_key(app, account_id, user.id, mode="test")
    msgid = send(api, test_key, SMS | {"message": "こんにちは"}).json[0]["msgid"]
    clock.advance(minutes=1, seconds=30)
    deliver_outbox(app)
    exactly(api.get(f"/sms/messages/{msgid}/", headers=test_key.headers), 200,
            f'{{"msgid": "{msgid}", "status": "DELIVERED", "sent_time": "2026-11-27 12:00:00", "cost": 0.0, '
            f'"sender": "Chotto", "recipient": "+819012345678", "url": "{BASE}/sms/messages/{msgid}/", '
            f'"tags": [], "segments": 1, "encoding": "UCS-2", "test": true, "status_time": "2026-11-27 12:01:30"}}')


def test_a_call_queued_then_answered(app, api, key, clock):
    started = call(api, key, CALL | {"tags": "待ち"})
    callid = started.json[0]["callid"]
    exactly(started, 201, f'[{{"callid": "{callid}"}}]')
    exactly(api.get(f"/voice/calls/{callid}", headers=key.headers), 200,
            f'{{"callid": "{callid}", "status": "QUEUED", "duration": null, "cost": 0.0, "caller": "+81312345678", '
            f'"recipient": "+819012345678", "start_time": null, "end_time": null, "tags": ["待ち"], "test": false}}')
    clock.advance(seconds=59)
    deliver_outbox(app)
    exactly(api.get(f"/voice/calls/{callid}/", headers=key.headers), 200,
            f'{{"callid": "{callid}", "status": "ANSWERED", "duration": 5, "cost": 10.0, "caller": "+81312345678", '
            f'"recipient": "+819012345678", "start_time": "2026-11-27 12:00:59", "end_time": "2026-11-27 12:00:59", '
            f'"tags": ["待ち"], "test": false}}')
    exactly(call(api, key, **{"Idempotency-Key": "call-1"}), 201,
            f'[{{"callid": "{_last_callid(app)}"}}]')
    exactly(call(api, key, **{"Idempotency-Key": "call-1"}), 201, f'[{{"callid": "{_last_callid(app)}"}}]')


def _last_callid(app) -> str:
    with db_session(app) as session:
        return session.scalars(select(Call.callid).order_by(Call.id.desc())).first()


def test_the_credits(app, api, key):
    call(api, key)  # ¥50 held
    exactly(api.get("/you/credits/", headers=key.headers), 200,
            '{"credits": 1000.0, "held": 50.0, "lots": [{"kind": "grant", "remaining": 1000.0, '
            '"expires_at": "2027-02-25T12:00:00+09:00"}]}')


def test_a_fraction_of_a_yen_is_answered_as_a_fraction(app, api, key):
    with db_session(app) as session:
        ledger.debit(session=session, account_id=key.account_id, amount=1_234, idempotency_key="odd", reason="odd",
                     now=app.config["CLOCK"]())
    exactly(api.get("/you/credits", headers=key.headers), 200,
            '{"credits": 1048.766, "held": 0.0, "lots": [{"kind": "trial", "remaining": 48.766, '
            '"expires_at": "2027-02-25T12:00:00+09:00"}, {"kind": "grant", "remaining": 1000.0, '
            '"expires_at": "2027-02-25T12:00:00+09:00"}]}')


# -- stored answers: replayed as stored, whatever renders answers today ----------------------------


def _sms_fingerprint(credential_id: int) -> str:
    """How the first request of a key was fingerprinted when its answer was stored."""
    fields = dict(op="sms", credential=credential_id, mode="live", recipient="+819012345678", sender="Chotto",
                  message="Your code is 1234", callback=None, tags=[])
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def test_an_answer_stored_earlier_is_replayed_byte_for_byte(app, api, key, clock):
    with db_session(app) as session:
        credential_id = session.scalar(select(Credential.id).where(Credential.sid == key.sid))
        session.add(ApiIdempotency(account_id=key.account_id, key="stored-before", request_hash=_sms_fingerprint(
            credential_id), status=201, body='[{"msgid":"0123456789abcdef0123456789abcdef"}]', created_at=clock()))
        session.commit()
    exactly(send(api, key, headers={"Idempotency-Key": "stored-before"}), 201,
            '[{"msgid":"0123456789abcdef0123456789abcdef"}]')
    exactly(send(api, key, SMS | {"message": "other"}, headers={"Idempotency-Key": "stored-before"}), 422,
            '{"detail": "This Idempotency-Key was already used for a different request."}')


def test_a_first_answer_is_stored_as_it_was_sent(app, api, key):
    first = send(api, key, headers={"Idempotency-Key": "kept"})
    with db_session(app) as session:
        stored = session.scalars(select(ApiIdempotency)).one()
    assert (stored.status, stored.body.encode()) == (201, first.data)


# -- errors -----------------------------------------------------------------------------------------


def test_invalid_fields_are_named_together(app, api, key):
    exactly(send(api, key, {"message": ""}), 400,
            '{"recipient": ["This field is required."], "sender": ["This field is required."], '
            '"message": ["This field is required."]}')
    exactly(api.post("/sms/messages/", json={"recipient": ["+819012345678"], "sender": 7, "message": "hi"},
                     headers=key.headers | {"Idempotency-Key": " "}), 400,
            '{"recipient": ["Give one value, not a list."], "sender": ["Must be a string."], '
            '"Idempotency-Key": ["Use 1 to 255 characters."]}')
    exactly(api.post("/sms/messages/", json=["not", "an", "object"], headers=key.headers), 400,
            '{"non_field_errors": ["The body must be a JSON object."]}')
    exactly(api.get("/sms/messages/?sent_date=昨日", headers=key.headers), 400,
            '{"sent_date": ["昨日 is not a date such as 2026-10-31, optionally after >=, >, <= or <."]}')


def test_a_too_long_message_and_an_invalid_number_with_a_refused_destination(app, api, key):
    exactly(send(api, key, SMS | {"message": "あ" * 671, "recipient": "+14155552671", "sender": "!"}), 400,
            '{"sender": ["Use up to 10 letters and digits, or up to 15 digits."], '
            '"message": ["The message needs 11 parts; at most 10."], '
            '"recipient": ["Sending to US is not enabled for this account."]}')
    exactly(send(api, key, SMS | {"recipient": "+8108012345678"}), 400,
            '{"recipient": ["+8108012345678 is not a valid phone number."]}')


def test_destinations(app, api, key, customer):
    exactly(send(api, key, SMS | {"recipient": "+14155552671"}), 400,
            '{"recipient": ["Sending to US is not enabled for this account."]}')
    with db_session(app) as session:
        session.execute(update(Account).where(Account.id == key.account_id).values(allowed_countries="JP,FR"))
        session.commit()
    exactly(send(api, key, SMS | {"recipient": "+33612345678"}), 400,
            '{"recipient": ["Sending to FR is not available."]}')
    exactly(send(api, key, SMS | {"recipient": "+33612345678", "sender": ""}), 400,
            '{"sender": ["This field is required."], "recipient": ["Sending to FR is not available."]}')
    user, account_id = customer
    with db_session(app) as session:
        session.get(CreditState, account_id).has_purchased = False
        session.commit()
    trial = new_key(app, account_id, user.id, name="trial")
    exactly(send(api, trial), 400, '{"recipient": ["Until the first purchase, live messages go only to the '
                                   'account\'s verified mobile numbers."]}')


def test_bad_calls(app, api, key):
    exactly(call(api, key, {"caller": "x", "recipient": "+819012345678", "tts_lang": "xx"}), 400,
            '{"caller": ["Enter a phone number in E.164 form, such as +819012345678."], '
            '"recording_url": ["Give either recording_url or tts_message (with tts_lang)."], '
            '"tts_lang": ["Use a language code such as ja or en."]}')
    exactly(call(api, key, {"caller": "+81312345678", "recipient": "+819012345678", "recording_url": "ftp://x"}), 400,
            '{"recording_url": ["Enter the http:// or https:// address of an MP3 file."]}')


def test_insufficient_credit(app, api, customer):
    user, account_id = customer
    key = new_key(app, account_id, user.id)
    with db_session(app) as session:
        ledger.debit(session=session, account_id=account_id, amount=45 * YEN, idempotency_key="x", reason="x",
                     now=app.config["CLOCK"]())
    body = '{"detail": "Insufficient credit. Buy credit in the portal to continue."}'
    exactly(send(api, key, SMS | {"recipient": "+819011112222", "message": "あ" * 71}), 402, body)
    exactly(call(api, key, CALL | {"recipient": "+819011112222"}), 402, body)


def test_scopes(app, api, customer):
    user, account_id = customer
    fund(app, account_id, 100)
    exactly(send(api, new_key(app, account_id, user.id, scopes=("read",))), 403,
            '{"detail": "This credential does not have the sms scope."}')
    exactly(call(api, new_key(app, account_id, user.id, scopes=("sms",), name="sms")), 403,
            '{"detail": "This credential does not have the voice scope."}')
    exactly(api.get("/you/credits/", headers=new_key(app, account_id, user.id, scopes=("sms",), name="s2").headers),
            403, '{"detail": "This credential does not have the read scope."}')


def test_spend_caps(app_with, customer, clock):
    app = app_with(API_DAILY_SPEND_CAP_YEN=1_015)
    client = app.test_client()
    user, account_id = customer
    fund(app, account_id, 3_000)
    capped = new_key(app, account_id, user.id, monthly_cap=1_010 * YEN)
    for _ in range(10):
        assert send(client, capped, SMS | {"message": "a" * 1530}).status_code == 201  # ¥100
    assert send(client, capped).status_code == 201
    daily = '{"detail": "This account\'s daily spend limit of ¥1,015 would be exceeded. Ask support to raise it."}'
    other = new_key(app, account_id, user.id, name="other")
    exactly(send(client, other), 403, daily)
    exactly(call(client, other), 403, daily)
    clock.advance(days=1)
    monthly = '{"detail": "This credential\'s monthly spend cap of ¥1,010 would be exceeded."}'
    exactly(send(client, capped), 403, monthly)
    exactly(call(client, capped), 403, monthly)


def test_not_found(app, api, key):
    body = '{"detail": "Not found."}'
    exactly(api.get("/sms/messages/0123456789abcdef0123456789abcdef", headers=key.headers), 404, body)
    exactly(api.get("/voice/calls/0123456789abcdef0123456789abcdef/", headers=key.headers), 404, body)


# -- OTP ----------------------------------------------------------------------------------------


def otp_post(api, key, path, **data):
    return api.post(path, data=data, headers=key.headers)


def test_the_otp_answers(app, api, key, clock):
    from portal.otp import service as otp

    registered = otp_post(api, key, "/otp/register-website/", website="https://shop.example.com")
    with db_session(app) as session:
        site = otp.sites_of(session=session, account_id=key.account_id)[0]
        otp.mark_proven(session=session, account_id=key.account_id, site_id=site.id, proven=True, now=clock())
    exactly(registered, 201, '{"message": "Website registered successfully.", "website": "shop.example.com", '
                             '"verification_url": "http://shop.example.com/.well-known/chotto-verification.txt", '
                             f'"verification_token": "{site.ownership_token}"}}')
    exactly(otp_post(api, key, "/otp/register-website/", website="shop.example.com"), 400,
            '{"website": ["A website with this domain already exists."]}')
    asked = dict(website="shop.example.com", phone_number="+819012345678")
    sent = otp_post(api, key, "/otp/request/", **asked)
    otp_id = sent.json["otp_id"]
    exactly(sent, 201, f'{{"msgid": "{otp_id}", "otp_id": "{otp_id}", "expires_at": "2026-11-27T12:05:00+09:00"}}')
    deliver_outbox(app)
    with db_session(app) as session:
        code = session.scalars(select(TestInboxMessage.body)).one().split("は")[1][:6]
    wrong = "000000" if code != "000000" else "111111"
    exactly(otp_post(api, key, "/otp/verify/", otp_id=otp_id, code=wrong), 400,
            '{"code": ["The code is wrong."], "reason": "wrong", "attempts_left": 4}')
    exactly(otp_post(api, key, "/otp/verify/", **asked, code=code), 200,
            f'{{"message": "Verified.", "verified": true, "otp_id": "{otp_id}", "phone_number": "+819012345678"}}')
    exactly(otp_post(api, key, "/otp/verify/", **asked, code=code), 400,
            '{"code": ["The code was already used."], "reason": "already_used"}')
    clock.advance(seconds=5)
    cooldown = otp_post(api, key, "/otp/request/", **asked)
    exactly(cooldown, 429, '{"detail": "A code was sent to this number a moment ago. Wait before requesting another.", '
                           '"reason": "resend_cooldown"}')
    assert cooldown.headers["Retry-After"] == "25"
    exactly(otp_post(api, key, "/otp/request/", website="shop.example.com", phone_number="+14155552671"), 400,
            '{"phone_number": ["This site does not send codes to that country."], "reason": "country_not_allowed"}')


# -- status callbacks -----------------------------------------------------------------------------


def test_sms_status_callbacks(app, api, key, clock):
    with HookServer() as hook:
        url = f"http://127.0.0.1:{hook.port}/hook"
        msgid = send(api, key, SMS | {"callbackurl": url, "tags": "登録"}).json[0]["msgid"]
        clock.advance(seconds=3)
        deliver_outbox(app)
        app.extensions["portal.carrier"] = RefusingCarrier()
        failed = send(api, key, SMS | {"callbackurl": url}).json[0]["msgid"]
        deliver_outbox(app)
    common = (f'"sent_time": "2026-11-27 12:00:00", "cost": 10.0, "sender": "Chotto", "recipient": "+819012345678", '
              f'"url": "{BASE}/sms/messages/{msgid}/", "tags": ["\\u767b\\u9332"], "segments": 1, "encoding": "GSM-7", '
              f'"test": false, "status_time": "2026-11-27 12:00:03"}}')
    assert [received.body.decode() for received in hook.received] == [
        f'{{"msgid": "{msgid}", "status": "DELIVERING", {common}',
        f'{{"msgid": "{msgid}", "status": "DELIVERED", {common}',
        f'{{"msgid": "{failed}", "status": "FAIL", "sent_time": "2026-11-27 12:00:03", "cost": 10.0, '
        f'"sender": "Chotto", "recipient": "+819012345678", "url": "{BASE}/sms/messages/{failed}/", "tags": [], '
        f'"segments": 1, "encoding": "GSM-7", "test": false, "status_time": "2026-11-27 12:00:03"}}',
    ]


def test_call_status_callbacks(app, api, key, clock):
    with HookServer() as hook:
        callid = call(api, key, CALL | {"callbackurl": f"http://127.0.0.1:{hook.port}/hook", "tags": "a,b"}
                      ).json[0]["callid"]
        clock.advance(minutes=2)
        deliver_outbox(app)
    common = f'"callid": "{callid}"'
    assert [received.body.decode() for received in hook.received] == [
        f'{{{common}, "status": "IN PROGRESS", "duration": null, "cost": 0.0, "caller": "+81312345678", '
        f'"recipient": "+819012345678", "start_time": "2026-11-27 12:02:00", "end_time": null, "tags": ["a", "b"], '
        f'"test": false}}',
        f'{{{common}, "status": "ANSWERED", "duration": 5, "cost": 10.0, "caller": "+81312345678", '
        f'"recipient": "+819012345678", "start_time": "2026-11-27 12:02:00", "end_time": "2026-11-27 12:02:00", '
        f'"tags": ["a", "b"], "test": false}}',
    ]


class RefusingCalls(TestInboxCarrier):
    """Writes the test inbox as a real call would, then refuses: nothing it wrote may stay."""

    def place_call(self, *, session, call, now):
        super().place_call(session=session, call=call, now=now)
        raise CarrierRejected("number not in service")


def test_a_refused_call_and_its_callbacks(app, api, key):
    with HookServer() as hook:
        callid = call(api, key, CALL | {"callbackurl": f"http://127.0.0.1:{hook.port}/hook"}).json[0]["callid"]
        app.extensions["portal.carrier"] = RefusingCalls()
        deliver_outbox(app)
    failed = (f'{{"callid": "{callid}", "status": "FAILED", "duration": 0, "cost": 0.0, "caller": "+81312345678", '
              f'"recipient": "+819012345678", "start_time": "2026-11-27 12:00:00", "end_time": "2026-11-27 12:00:00", '
              f'"tags": [], "test": false}}')
    exactly(api.get(f"/voice/calls/{callid}", headers=key.headers), 200, failed)
    assert [received.body.decode() for received in hook.received] == [
        f'{{"callid": "{callid}", "status": "IN PROGRESS", "duration": null, "cost": 0.0, "caller": "+81312345678", '
        f'"recipient": "+819012345678", "start_time": "2026-11-27 12:00:00", "end_time": null, "tags": [], '
        f'"test": false}}', failed]
    exactly(api.get("/you/credits/", headers=key.headers), 200,
            '{"credits": 1050.0, "held": 0.0, "lots": [{"kind": "trial", "remaining": 50.0, '
            '"expires_at": "2027-02-25T12:00:00+09:00"}, {"kind": "grant", "remaining": 1000.0, '
            '"expires_at": "2027-02-25T12:00:00+09:00"}]}')
    with db_session(app) as session:
        assert session.scalars(select(TestInboxMessage)).all() == []


def test_a_test_call_with_a_recording(app, api, customer):
    user, account_id = customer
    test_key = new_key(app, account_id, user.id, mode="test")
    fields = {"caller": "0312345678", "recipient": "+819012345678", "recording_url": "https://example.com/a.mp3"}
    callid = call(api, test_key, fields).json[0]["callid"]
    deliver_outbox(app)
    exactly(api.get(f"/voice/calls/{callid}", headers=test_key.headers), 200,
            f'{{"callid": "{callid}", "status": "ANSWERED", "duration": 30, "cost": 0.0, "caller": "+81312345678", '
            f'"recipient": "+819012345678", "start_time": "2026-11-27 12:00:00", "end_time": "2026-11-27 12:00:00", '
            f'"tags": [], "test": true}}')
