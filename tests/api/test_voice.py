"""Voice calls through the API: ¥50 set aside at the start, settled to the started minutes;
status callbacks signed and retried; the OpenAPI document and the reference page."""

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from sqlalchemy import select

from portal.credentials.service import callback_signing_secrets
from portal.ledger import queries
from portal.ledger import service as ledger
from portal.messaging.models import TestInboxMessage
from portal.messaging.rules import call_minutes
from tests.api.conftest import YEN, fund, new_key
from tests.helpers import db_session, deliver_outbox

CALL = {"caller": "+81312345678", "recipient": "+819012345678", "tts_message": "Your code is 1 2 3 4",
        "tts_lang": "en"}


def summary(app, account_id):
    with db_session(app) as session:
        return queries.summary(session, account_id=account_id, now=app.config["CLOCK"]())


def test_a_call_holds_50_yen_then_costs_10_yen_a_started_minute(app, api, key):
    response = api.post("/voice/simple/playbacks/", data=CALL, headers=key.headers)
    assert response.status_code == 201
    callid = response.json[0]["callid"]
    state = summary(app, key.account_id)
    assert (state.available, state.held) == ((1050 - 50) * YEN, 50 * YEN)
    assert api.get(f"/voice/calls/{callid}", headers=key.headers).json["status"] == "QUEUED"
    deliver_outbox(app)
    call = api.get(f"/voice/calls/{callid}/", headers=key.headers).json
    assert call["status"] == "ANSWERED" and call["duration"] == 2 + 3 and call["cost"] == 10.0
    state = summary(app, key.account_id)
    assert (state.available, state.held) == (1040 * YEN, 0)
    with db_session(app) as session:
        [record] = session.scalars(select(TestInboxMessage)).all()
    assert record.channel == "voice" and "Your code is 1 2 3 4" in record.body


@pytest.mark.parametrize("seconds, minutes", [(0, 0), (1, 1), (59, 1), (60, 1), (61, 2), (300, 5)])
def test_voice_is_charged_per_started_minute(seconds, minutes):
    assert call_minutes(seconds) == minutes


def test_a_call_needs_50_yen_available(app, api, customer):
    user, account_id = customer
    fund(app, account_id, 1)
    with db_session(app) as session:
        ledger.debit(session=session, account_id=account_id, amount=2 * YEN, idempotency_key="x", reason="x",
                     now=app.config["CLOCK"]())  # ¥49 left
    key = new_key(app, account_id, user.id)
    assert api.post("/voice/simple/playbacks/", data=CALL | {"recipient": "+819011112222"},
                    headers=key.headers).status_code == 402


def test_a_recording_can_be_played_instead(app, api, key):
    data = {k: v for k, v in CALL.items() if not k.startswith("tts")} | {"recording_url": "https://example.com/a.mp3"}
    callid = api.post("/voice/simple/playbacks", data=data, headers=key.headers).json[0]["callid"]
    deliver_outbox(app)
    call = api.get(f"/voice/calls/{callid}", headers=key.headers).json
    assert (call["duration"], call["cost"]) == (30, 10.0)


@pytest.mark.parametrize("change, field", [({"tts_message": ""}, "recording_url"),
                                           ({"recording_url": "https://example.com/a.mp3"}, "recording_url"),
                                           ({"tts_lang": "xx"}, "tts_lang"), ({"caller": ""}, "caller"),
                                           ({"recipient": "+8108012345678"}, "recipient")])
def test_bad_call_requests_name_the_field(app, api, key, change, field):
    response = api.post("/voice/simple/playbacks/", data=CALL | change, headers=key.headers)
    assert response.status_code == 400 and field in response.json, response.json
    assert summary(app, key.account_id).held == 0


def test_an_unknown_call_is_404(app, api, key):
    assert api.get("/voice/calls/" + "0" * 32, headers=key.headers).status_code == 404


class Receiver(BaseHTTPRequestHandler):
    received: list = []
    fail_first = 0

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if Receiver.fail_first:
            Receiver.fail_first -= 1
            self.send_response(500)
            self.end_headers()
            return
        Receiver.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    Receiver.received, Receiver.fail_first = [], 0
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()


def test_status_changes_are_posted_signed_to_the_callback_and_retried(app, api, key, receiver, clock):
    Receiver.fail_first = 1
    sms = {"recipient": "+819012345678", "sender": "Chotto", "message": "hi", "callbackurl": receiver}
    msgid = api.post("/sms/messages/", data=sms, headers=key.headers).json[0]["msgid"]
    deliver_outbox(app)
    assert [json.loads(body)["status"] for _, body in Receiver.received] == ["DELIVERED"]  # the first answered 500
    clock.advance(minutes=5)
    deliver_outbox(app)
    statuses = sorted(json.loads(body)["status"] for _, body in Receiver.received)
    assert statuses == ["DELIVERED", "DELIVERING"]
    with db_session(app) as session:
        (secret,) = callback_signing_secrets(session=session, sid=key.sid, now=app.config["CLOCK"]())
    for headers, body in Receiver.received:
        timestamp, signature = (part.split("=", 1)[1] for part in headers["X-Chotto-Signature"].split(","))
        expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(signature, expected) and json.loads(body)["msgid"] == msgid


def test_callbacks_never_go_to_private_addresses_in_production(app):
    from portal.messaging.callbacks import CallbackRefused, pin, resolve

    for url in ("http://127.0.0.1:8080/x", "http://10.0.0.5/x", "http://169.254.169.254/latest/meta-data"):
        with pytest.raises(CallbackRefused):
            pin(url, resolver=resolve, allow_private=False)
    assert pin("http://127.0.0.1:8080/x", resolver=resolve, allow_private=True).address == "127.0.0.1"


def test_the_openapi_document_and_the_reference_page(app, api):
    spec = api.get("/api/openapi.json").json
    assert spec["openapi"].startswith("3.1") and set(spec["paths"]) == {
        "/sms/messages/", "/sms/messages/{msgid}", "/voice/simple/playbacks/", "/voice/calls/{callid}", "/you/credits/",
        "/otp/register-website/", "/otp/request/", "/otp/verify/"}
    from tests.helpers import PageClient

    page = PageClient(app.test_client(), app).page("/api/docs")
    assert "/voice/simple/playbacks/" in page.get_text() and "Idempotency-Key" in page.get_text()
