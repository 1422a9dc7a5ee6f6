"""Status callbacks end to end (API, outbox, worker): signed with the credential's own stored
random secret, two signatures while a rotation overlaps, and posted to the address that was
checked even when the host's DNS answer changes in between."""

import json
import re
import socket
from datetime import timedelta

from sqlalchemy import select

from portal.credentials import service as credentials
from portal.credentials.models import CallbackSecret, Credential
from portal.outbox import OutboxMessage
from tests.api.conftest import new_key
from tests.api.test_sms import SMS
from tests.conftest import make_app
from tests.helpers import db_session, deliver_outbox
from tests.hooks import HookServer, signatures, signed_by

PUBLIC = "93.184.216.34"


def send_with_callback(api, key, url):
    response = api.post("/sms/messages/", data=SMS | {"callbackurl": url}, headers=key.headers)
    assert response.status_code == 201, response.json


def secrets_of(app, sid) -> list[CallbackSecret]:
    with db_session(app) as session:
        return list(session.scalars(select(CallbackSecret).join(Credential, Credential.id == CallbackSecret.credential_id)
                                    .where(Credential.sid == sid).order_by(CallbackSecret.id)))


def test_every_credential_gets_its_own_random_secret(app, key, customer):
    user, account_id = customer
    other = new_key(app, account_id, user.id, name="other")
    (first,), (second,) = secrets_of(app, key.sid), secrets_of(app, other.sid)
    assert first.secret != second.secret
    for secret in (first.secret, second.secret):
        assert re.fullmatch(r"chotto_whsec_[0-9A-Za-z]{32}", secret)
        assert app.config["SECRET_KEY"] not in secret


def test_a_callback_is_signed_with_the_stored_secret_whatever_the_portals_secret_key(app, api, key, database_url,
                                                                                   clock):
    (stored,) = secrets_of(app, key.sid)
    with HookServer() as hook:
        send_with_callback(api, key, f"http://127.0.0.1:{hook.port}/hook")
        deliver_outbox(app)
        rekeyed = make_app(database_url, CLOCK=clock, SECRET_KEY="another-secret-key-just-as-long-as-the-first-one")
        send_with_callback(rekeyed.test_client(), key, f"http://127.0.0.1:{hook.port}/hook")
        deliver_outbox(rekeyed)
        rekeyed.extensions["portal.engine"].dispose()
    assert secrets_of(app, key.sid) == [stored]
    assert len(hook.received) == 4  # DELIVERING and DELIVERED of each message
    for received in hook.received:
        assert len(signatures(received.headers["X-Chotto-Signature"])[1]) == 1
        assert signed_by(received, stored.secret)


def test_during_a_rotation_callbacks_carry_both_signatures_and_after_it_only_the_new(app, api, key, clock):
    (old,) = secrets_of(app, key.sid)
    with db_session(app) as session:
        credential_id = session.scalar(select(Credential.id).where(Credential.sid == key.sid))
        credentials.rotate_callback_secret(session=session, account_id=key.account_id, user_id=key.user_id,
                                           credential_id=credential_id, overlap=timedelta(hours=1), now=clock())
    new = next(row for row in secrets_of(app, key.sid) if row.id != old.id)
    with HookServer() as hook:
        send_with_callback(api, key, f"http://127.0.0.1:{hook.port}/hook")
        deliver_outbox(app)
        during = list(hook.received)
        clock.advance(hours=1)
        send_with_callback(api, key, f"http://127.0.0.1:{hook.port}/hook")
        deliver_outbox(app)
        after = hook.received[len(during):]
    assert during and after
    for received in during:
        assert len(signatures(received.headers["X-Chotto-Signature"])[1]) == 2
        assert signed_by(received, new.secret) and signed_by(received, old.secret)
    for received in after:
        assert len(signatures(received.headers["X-Chotto-Signature"])[1]) == 1
        assert signed_by(received, new.secret) and not signed_by(received, old.secret)


def test_a_host_that_rebinds_to_the_loopback_gets_the_callback_at_the_address_that_was_checked(
        app, api, key, monkeypatch):
    """The DNS answer for the callback host is public the first time and the loopback after
    that. The public address is played by a server on 127.0.0.2; the provider's own network
    by one on 127.0.0.1. The first callback must reach the public one; the second (the host
    now resolves to the loopback) is refused; nothing reaches the loopback."""
    app.config["CALLBACK_ALLOW_PRIVATE"] = False
    answers = [PUBLIC, "127.0.0.1"]
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host == "hooks.example.test":
            address = answers.pop(0) if len(answers) > 1 else answers[0]
        elif host == PUBLIC:
            address = "127.0.0.2"
        else:
            return real(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port or 0))]

    with HookServer("127.0.0.1") as internal, HookServer("127.0.0.2", port=internal.port) as public:
        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        send_with_callback(api, key, f"http://hooks.example.test:{internal.port}/hook")
        deliver_outbox(app)
        monkeypatch.undo()
    assert internal.received == []
    (received,) = public.received
    assert received.headers["Host"] == f"hooks.example.test:{internal.port}"
    assert json.loads(received.body)["status"] == "DELIVERING"


def test_in_production_a_private_callback_address_is_refused_and_retried_later(app, api, key):
    app.config["CALLBACK_ALLOW_PRIVATE"] = False
    with HookServer() as hook:
        send_with_callback(api, key, f"http://127.0.0.1:{hook.port}/hook")
        deliver_outbox(app)
    assert hook.received == []
    with db_session(app) as session:
        pending = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "callback",
                                                              OutboxMessage.sent_at.is_(None))).all()
    assert len(pending) == 2 and all("not a public internet address" in (row.last_error or "") for row in pending)


def test_outside_production_callbacks_may_go_to_the_loopback_by_default(app, api, key):
    assert "CALLBACK_ALLOW_PRIVATE" not in app.config
    with HookServer() as hook:
        send_with_callback(api, key, f"http://127.0.0.1:{hook.port}/hook")
        deliver_outbox(app)
    assert len(hook.received) == 2

