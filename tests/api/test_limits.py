"""Rate limits of the customer API (issue 9, item 8): reads are limited per credential across
every GET route, sends per account across both send routes, and every 429 says how long to
wait in whole seconds, at least 1 (also in a window's last moment, and on web pages)."""

import time
from dataclasses import replace

import psycopg
import pytest
from sqlalchemy import event, select

from portal import buckets, config
from portal.accounts.models import Membership
from portal.credentials.models import Credential
from tests.api.conftest import fund, new_key
from tests.api.test_sms import SMS
from tests.conftest import _empty_tables, make_app
from tests.helpers import PageClient, db_session, make_user

CALL = {"caller": "+81312345678", "recipient": "+819012345678", "tts_message": "hello", "tts_lang": "en"}


@pytest.fixture
def limited(database_url, clock, request):
    app = make_app(database_url, CLOCK=clock, RATELIMIT_ENABLED=True, **getattr(request, "param", {}))
    yield app
    _empty_tables(app.extensions["portal.engine"])
    app.extensions["portal.engine"].dispose()


def keys_of(app, count=2):
    user = make_user(app, email="dev@example.com")
    with db_session(app) as session:
        account_id = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
    fund(app, account_id, 1000)
    return [new_key(app, account_id, user.id, name=f"key {n}") for n in range(count)]


def test_the_read_limit_is_a_setting_read_from_the_environment():
    assert config.load(environ={"PORTAL_ENV": "test"})["API_READ_RATE_LIMIT"] == "20 per second;1200 per minute"
    assert config.load(environ={"PORTAL_ENV": "test", "PORTAL_API_READ_RATE_LIMIT": "5 per second"})["API_READ_RATE_LIMIT"] == "5 per second"


@pytest.mark.parametrize("limited", [{"API_READ_RATE_LIMIT": "3 per minute"}], indirect=True)
def test_reads_are_limited_per_credential_across_every_get_route(limited):
    first, second = keys_of(limited)
    api = limited.test_client()
    msgid = api.post("/sms/messages/", data=SMS, headers=first.headers).json[0]["msgid"]
    paths = ["/you/credits/", "/sms/messages/", f"/sms/messages/{msgid}", "/voice/calls/" + "0" * 32]
    assert [api.get(path, headers=first.headers).status_code for path in paths] == [200, 200, 200, 429]
    throttled = api.get("/sms/messages", headers=first.headers)
    assert throttled.status_code == 429 and throttled.json == {"detail": "Request was throttled. Try again later."}
    assert int(throttled.headers["Retry-After"]) >= 1
    assert api.get("/you/credits/", headers=second.headers).status_code == 200  # its own budget
    assert api.post("/sms/messages/", data=SMS, headers=first.headers).status_code == 201  # sends are counted apart


@pytest.mark.parametrize("limited", [{"API_ACCOUNT_RATE_LIMIT": "2 per minute"}], indirect=True)
def test_the_account_limit_counts_sms_and_calls_together(limited):
    first, second = keys_of(limited)
    api = limited.test_client()
    assert api.post("/sms/messages/", data=SMS, headers=first.headers).status_code == 201
    assert api.post("/voice/simple/playbacks/", data=CALL, headers=second.headers).status_code == 201
    assert api.post("/sms/messages/", data=SMS, headers=second.headers).status_code == 429


class WallClock:
    """Stands in for time.time, which the rate limiter and its memory storage read."""

    def __init__(self, at: float):
        self.at = at

    def __call__(self) -> float:
        return self.at


@pytest.mark.parametrize("limited", [{"API_SEND_RATE_LIMIT": "1 per second", "API_READ_RATE_LIMIT": "1 per second",
                                      "LOGIN_RATE_LIMIT": "1 per second"}], indirect=True)
@pytest.mark.parametrize("route", ["send", "read", "web log-in"])
def test_retry_after_is_at_least_one_second_in_a_windows_last_moment(limited, monkeypatch, route):
    """The window opens at .1 and closes a second later; at .05 before its end the limiter
    itself computes int(0.95) = 0 seconds."""
    [key] = keys_of(limited, count=1)
    api, page = limited.test_client(), PageClient(limited.test_client(), limited)
    attempt = {
        "send": lambda: api.post("/sms/messages/", data=SMS, headers=key.headers),
        "read": lambda: api.get("/you/credits/", headers=key.headers),
        "web log-in": lambda: page.post("/login", {"email": "x@example.com", "password": "wrong password here"}),
    }[route]
    wall = WallClock(2_000_000_000.1)
    monkeypatch.setattr(time, "time", wall)
    assert attempt().status_code != 429
    wall.at = 2_000_000_001.05
    throttled = attempt()
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "1"


def test_a_429_without_retry_after_gets_one_second(app):
    from flask import Response

    from portal.extensions import whole_retry_after

    assert whole_retry_after(Response(status=429)).headers["Retry-After"] == "1"
    assert whole_retry_after(Response(status=429, headers={"Retry-After": "0"})).headers["Retry-After"] == "1"
    assert whole_retry_after(Response(status=429, headers={"Retry-After": "42"})).headers["Retry-After"] == "42"
    assert "Retry-After" not in whole_retry_after(Response(status=200)).headers


# -- a throttled request never reaches the database, so it never waits for the account's lock ------


def _statements_during(app, request) -> tuple[object, list[str]]:
    engine = app.extensions["portal.engine"]
    seen = []

    def watch(connection, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", watch)
    try:
        return request(), seen
    finally:
        event.remove(engine, "before_cursor_execute", watch)


@pytest.mark.parametrize("limited", [{"API_ACCOUNT_RATE_LIMIT": "1 per hour"}], indirect=True)
def test_a_throttled_send_runs_no_statement_and_a_revoked_key_is_still_refused_on_its_next_request(limited, clock):
    [key, other] = keys_of(limited, count=2)
    api = limited.test_client()
    assert api.post("/sms/messages/", data=SMS, headers=key.headers).status_code == 201
    for path, body in (("/sms/messages/", SMS), ("/voice/simple/playbacks/", CALL), ("/otp/verify/", {})):
        throttled, statements = _statements_during(limited, lambda: api.post(path, data=body, headers=key.headers))
        assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1
        assert statements == [], statements
    # the other key of the account is not known yet: authenticated (and the account locked) first
    throttled, statements = _statements_during(limited, lambda: api.post("/sms/messages/", data=SMS,
                                                                          headers=other.headers))
    assert throttled.status_code == 429 and statements
    with db_session(limited) as session:
        session.scalars(select(Credential).where(Credential.sid == key.sid)).one().revoked_at = clock()
        session.commit()
    limited.extensions["portal.buckets"] = buckets.InProcess()  # within its limits again
    assert api.post("/sms/messages/", data=SMS, headers=key.headers).status_code == 401  # the very next request
    limited.extensions["portal.buckets"] = buckets.InProcess()
    refused, statements = _statements_during(limited, lambda: api.post("/sms/messages/", data=SMS,
                                                                        headers=key.headers))
    assert refused.status_code == 401 and statements  # forgotten: authenticated by the database again


@pytest.mark.parametrize("limited", [{"API_ACCOUNT_RATE_LIMIT": "1 per hour"}], indirect=True)
def test_a_caller_is_known_for_ten_seconds_from_its_own_address_with_its_own_token(limited, clock):
    [key] = keys_of(limited, count=1)
    api = limited.test_client()
    assert api.post("/sms/messages/", data=SMS, headers=key.headers).status_code == 201
    elsewhere = {"REMOTE_ADDR": "192.0.2.7"}
    _, statements = _statements_during(limited, lambda: api.post("/sms/messages/", data=SMS, headers=key.headers,
                                                                  environ_base=elsewhere))
    assert statements  # another address: authenticated first
    clock.advance(seconds=9)
    assert _statements_during(limited, lambda: api.post("/sms/messages/", data=SMS, headers=key.headers))[1] == []
    clock.advance(seconds=1)
    assert _statements_during(limited, lambda: api.post("/sms/messages/", data=SMS, headers=key.headers))[1]
    wrong = replace(key, token=key.token[:-1] + ("A" if key.token[-1] != "A" else "B"))
    assert api.post("/sms/messages/", data=SMS, headers=wrong.headers).status_code == 401  # not the known one's 429


@pytest.mark.postgresql
@pytest.mark.parametrize("limited", [{"API_ACCOUNT_RATE_LIMIT": "1 per hour"}], indirect=True)
def test_a_throttled_send_answers_429_while_another_transaction_holds_the_accounts_lock(limited):
    """The account's credit row is locked by another transaction; the app's connections give up
    waiting for any lock after 200 ms. The over-limit request answers 429 (it never asks for
    the lock); the control, the same request with the buckets emptied, does ask for it and
    fails on the lock timeout, so the setting has teeth."""
    [key] = keys_of(limited, count=1)
    api = limited.test_client()
    assert api.post("/sms/messages/", data=SMS, headers=key.headers).status_code == 201
    engine = limited.extensions["portal.engine"]
    engine.dispose()

    def short_lock_timeout(connection, record):
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '200ms'")
        connection.commit()

    event.listen(engine, "connect", short_lock_timeout)
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as other:
        other.execute("SELECT 1 FROM credit_states WHERE account_id = %s FOR UPDATE", [key.account_id])
        throttled = api.post("/sms/messages/", data=SMS, headers=key.headers)
        assert throttled.status_code == 429, throttled.text
        assert throttled.json == {"detail": "Request was throttled. Try again later."}
        limited.extensions["portal.buckets"] = buckets.InProcess()  # the control: a request within its limit
        waited = api.post("/sms/messages/", data=SMS, headers=key.headers)
        assert waited.status_code == 503, waited.text  # lock_timeout: it asked for the lock, and gave up
        other.rollback()
    limited.extensions["portal.buckets"] = buckets.InProcess()  # the control took the new bucket's token
    assert api.post("/sms/messages/", data=SMS, headers=key.headers).status_code == 201
    event.remove(engine, "connect", short_lock_timeout)
