"""API credentials: token format, storage, authentication, lifecycle, IP allow-lists, rate
limits, logs (S20, S22–S25, S27)."""

import base64
import re
from datetime import timedelta

import pytest
from sqlalchemy import inspect, select, text

from portal.credentials import service as credentials
from portal.credentials import tokens
from portal.credentials.models import Credential
from tests.api.conftest import Key, fund, new_key
from tests.conftest import _empty_tables, make_app
from tests.helpers import PageClient, db_session, make_user, mails_to, deliver_outbox

SMS = {"recipient": "+819012345678", "sender": "Chotto", "message": "hello"}


def test_100000_tokens_match_the_published_pattern_validate_offline_and_never_collide():
    made = [tokens.new_token("live" if n % 2 else "test") for n in range(100_000)]
    assert len(set(made)) == len(made)
    assert all(tokens.PATTERN.fullmatch(token) and tokens.well_formed(token) for token in made)
    token = made[0]
    typo = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    assert not tokens.well_formed(typo) and not tokens.well_formed(token[:-1])
    assert len(token) == len("chotto_live_") + 36


def test_only_a_digest_prefix_and_last_four_are_stored(app, customer):
    user, account_id = customer
    key = new_key(app, account_id, user.id)
    engine = app.extensions["portal.engine"]
    with engine.connect() as connection:
        for table in inspect(engine).get_table_names():
            for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                assert key.token not in " ".join(str(value) for value in row), table
    if engine.dialect.name == "sqlite":
        engine.dispose()
        with open(engine.url.database, "rb") as database:
            assert key.token.encode() not in database.read()


def test_no_credentials_means_401_with_detail_and_a_basic_challenge(app, api):
    response = api.get("/you/credits/")
    assert response.status_code == 401 and response.json == {"detail": "Authentication credentials were not provided."}
    assert response.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize("sid, token", [("0" * 32, None), (None, "chotto_live_" + "A" * 36), (None, "nonsense")])
def test_a_wrong_sid_or_token_is_401_with_detail(app, api, key, sid, token):
    raw = base64.b64encode(f"{sid or key.sid}:{token or key.token}".encode()).decode()
    response = api.get("/you/credits/", headers={"Authorization": f"Basic {raw}"})
    assert response.status_code == 401 and response.json == {"detail": "Invalid username/password."}


def test_a_signed_in_browser_cookie_does_not_reach_the_api(app, customer):
    user, _ = customer
    browser = PageClient(app.test_client(), app)
    browser.login(user.email)
    response = browser.client.post("/sms/messages/", data=SMS)
    assert response.status_code == 401


def test_an_api_request_neither_reads_nor_writes_the_session_cookie(app, key):
    browser = PageClient(app.test_client(), app)
    browser.login("dev@example.com")
    for path, data in (("/sms/messages/", SMS), ("/sms/messages", SMS), ("/otp/verify/", {"code": "1"})):
        response = browser.client.post(path, data=data, headers=key.headers)
        assert response.status_code in (201, 400) and "Set-Cookie" not in response.headers
    assert "Dashboard" in browser.text("/dashboard")  # the page session is untouched


def test_only_the_api_answers_under_its_own_prefixes(app):
    from portal.api import API_ONLY_PREFIXES

    under = [rule for rule in app.url_map.iter_rules() if rule.rule.startswith(API_ONLY_PREFIXES)]
    assert under and all(rule.endpoint.startswith("api.") for rule in under)


def test_a_token_in_the_query_string_is_refused_and_never_logged(app, api, key, caplog):
    for query in (f"api_key={key.token}", f"token={key.token}", f"x={key.token}"):
        response = api.get(f"/you/credits/?{query}", headers=key.headers)
        assert response.status_code == 401 and "Authorization header" in response.json["detail"]
    send = api.post("/sms/messages/", data=SMS | {"message": "hi"}, headers=key.headers)
    assert send.status_code == 201
    assert key.token not in caplog.text and key.token[12:] not in caplog.text


def test_a_revoked_credential_is_refused_on_the_very_next_request(app, api, key, clock):
    assert api.get("/you/credits/", headers=key.headers).status_code == 200
    with db_session(app) as session:
        credential = session.scalars(select(Credential).where(Credential.sid == key.sid)).one()
    with app.app_context(), db_session(app) as session:
        credentials.revoke(session=session, account_id=key.account_id, user_id=key.user_id,
                           credential_id=credential.id, now=clock())
    assert api.get("/you/credits/", headers=key.headers).status_code == 401


def test_a_rotated_then_revoked_credential_is_refused_on_the_very_next_send(app, api, key, clock):
    """Nothing about a credential is kept between requests: each send reads it with its lock."""
    otp = {"website": "shop.example.com", "phone_number": "+819012345678"}
    assert api.post("/sms/messages/", data=SMS, headers=key.headers).status_code == 201
    with db_session(app) as session:
        credential_id = session.scalars(select(Credential.id).where(Credential.sid == key.sid)).one()
    with app.app_context(), db_session(app) as session:
        _, new_token = credentials.rotate(session=session, account_id=key.account_id, user_id=key.user_id,
                                          credential_id=credential_id, overlap=timedelta(0), now=clock())
    new = Key(key.sid, new_token, key.account_id, key.user_id)
    assert api.post("/sms/messages/", data=SMS, headers=key.headers).status_code == 401
    assert api.post("/sms/messages/", data=SMS, headers=new.headers).status_code == 201
    with app.app_context(), db_session(app) as session:
        credentials.revoke(session=session, account_id=key.account_id, user_id=key.user_id,
                           credential_id=credential_id, now=clock())
    assert api.post("/sms/messages/", data=SMS, headers=new.headers).status_code == 401
    assert api.post("/otp/request/", data=otp, headers=new.headers).status_code == 401
    assert api.post("/otp/verify/", data=otp | {"code": "123456"}, headers=new.headers).status_code == 401
    with db_session(app) as session:
        sent = session.scalar(text("SELECT count(*) FROM sms_messages"))
    assert sent == 2


def test_rotation_keeps_the_old_token_for_the_overlap_only(app, api, key, clock):
    with db_session(app) as session:
        credential_id = session.scalars(select(Credential.id).where(Credential.sid == key.sid)).one()
    with app.app_context(), db_session(app) as session:
        _, new_token = credentials.rotate(session=session, account_id=key.account_id, user_id=key.user_id,
                                          credential_id=credential_id, overlap=timedelta(hours=1), now=clock())
    new = Key(key.sid, new_token, key.account_id, key.user_id)
    assert api.get("/you/credits/", headers=key.headers).status_code == 200
    assert api.get("/you/credits/", headers=new.headers).status_code == 200
    clock.advance(hours=1)
    assert api.get("/you/credits/", headers=key.headers).status_code == 401
    assert api.get("/you/credits/", headers=new.headers).status_code == 200
    with pytest.raises(credentials.InvalidCredential), app.app_context(), db_session(app) as session:
        credentials.rotate(session=session, account_id=key.account_id, user_id=key.user_id, credential_id=credential_id,
                           overlap=timedelta(days=7, seconds=1), now=clock())


def test_last_used_is_written_at_most_once_a_minute(app, api, key, clock):
    def last_used():
        with db_session(app) as session:
            row = session.scalars(select(Credential).where(Credential.sid == key.sid)).one()
            return row.last_used_at, row.last_used_ip

    api.get("/you/credits/", headers=key.headers)
    first = last_used()
    assert first == (clock(), "127.0.0.1")
    clock.advance(seconds=59)
    api.get("/you/credits/", headers=key.headers)
    assert last_used() == first
    clock.advance(seconds=1)
    api.get("/you/credits/", headers=key.headers)
    assert last_used()[0] == clock()


def test_an_ip_allow_list_refuses_other_addresses_with_403(app, api, customer):
    user, account_id = customer
    fund(app, account_id, 100)
    listed = new_key(app, account_id, user.id, networks=["203.0.113.0/24"])
    assert api.get("/you/credits/", headers=listed.headers).status_code == 403
    inside = api.get("/you/credits/", headers=listed.headers, environ_base={"REMOTE_ADDR": "203.0.113.7"})
    assert inside.status_code == 200


def test_creation_and_revocation_are_audited_and_mailed_to_owners(app, customer, clock):
    user, account_id = customer
    key = new_key(app, account_id, user.id, name="ci runner")
    with db_session(app) as session:
        credential_id = session.scalars(select(Credential.id)).one()
    with app.app_context(), db_session(app) as session:
        credentials.revoke(session=session, account_id=account_id, user_id=user.id, credential_id=credential_id,
                           now=clock())
        actions = session.execute(text("SELECT action FROM audit_events ORDER BY id")).scalars().all()
    assert actions == ["credential.created", "credential.revoked"]
    deliver_outbox(app)
    subjects = [mail.subject for mail in mails_to(app, user.email)]
    assert "[Chotto] A new API credential was created" in subjects and "[Chotto] An API credential was revoked" in subjects
    assert all(key.token not in mail.text_body for mail in mails_to(app, user.email))


@pytest.fixture
def limited_app(database_url, clock):
    app = make_app(database_url, CLOCK=clock, RATELIMIT_ENABLED=True, API_SEND_RATE_LIMIT="3 per minute",
                   API_ACCOUNT_RATE_LIMIT="5 per minute")
    yield app
    _empty_tables(app.extensions["portal.engine"])
    app.extensions["portal.engine"].dispose()


def test_bursts_above_the_per_key_and_per_account_limits_get_429_with_retry_after(limited_app):
    app = limited_app
    user = make_user(app, email="dev@example.com")
    with db_session(app) as session:
        from portal.accounts.models import Membership

        account_id = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
    fund(app, account_id, 1000)
    first, second = new_key(app, account_id, user.id), new_key(app, account_id, user.id, name="second")
    api = app.test_client()
    codes = [api.post("/sms/messages/", data=SMS, headers=first.headers).status_code for _ in range(5)]
    assert codes == [201, 201, 201, 429, 429]
    limited = api.post("/sms/messages/", data=SMS, headers=first.headers)
    assert limited.json == {"detail": "Request was throttled. Try again later."}
    assert int(limited.headers["Retry-After"]) > 0
    codes = [api.post("/sms/messages/", data=SMS, headers=second.headers).status_code for _ in range(3)]
    assert codes == [201, 201, 429]  # the account's 5 a minute: 3 + 2


def test_keys_create_prints_the_sid_and_token_once(app, customer):
    user, account_id = customer
    result = app.test_cli_runner().invoke(args=["keys", "create", user.email, "--name", "deploy", "--test"])
    assert result.exit_code == 0, result.output
    token = re.search(r"Token: (\S+)", result.output).group(1)
    sid = re.search(r"SID:\s+(\S+)", result.output).group(1)
    assert tokens.well_formed(token) and token.startswith("chotto_test_")
    assert app.test_client().get("/you/credits/", headers=Key(sid, token, account_id, user.id).headers).status_code == 200
    assert app.test_cli_runner().invoke(args=["keys", "create", "nobody@example.com", "--name", "x"]).exit_code != 0
