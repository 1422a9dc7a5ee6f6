"""Rate limits of the customer API (issue 9, item 8): reads are limited per credential across
every GET route, sends per account across both send routes, and every 429 says how long to
wait in whole seconds, at least 1 (also in a window's last moment, and on web pages)."""

import time

import pytest
from sqlalchemy import select

from portal import config
from portal.accounts.models import Membership
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
