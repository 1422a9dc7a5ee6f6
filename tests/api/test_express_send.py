"""The express send (PostgreSQL, portal.messaging.express): a live SMS in the plain case is
authenticated, paid, recorded and queued by one function call in one round trip, and writes
exactly the rows the general path writes; in every case that is not plain it writes nothing
and answers None, and the request goes the general way, whose answer is the same as before."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select, text, update

from portal import db
from portal.api import express_sends
from portal.credentials.models import Credential, CredentialSecret
from portal.credentials import tokens
from portal.ledger.models import CreditState, Entry, Lot, Transaction
from portal.ledger import rules
from portal.ledger import steps as ledger_steps
from portal.ledger import service as ledger
from portal.ledger.check import check
from portal.messaging import service as messaging
from portal.messaging.api_models import Message, Price, Product
from portal.messaging.express import NotPlain
from portal.messaging.service import SendSms, Sent
from tests.api.conftest import YEN, fund, new_key
from tests.api.test_round_trips import Exchanges
from tests.api.test_sms_one_statement import another_key, written_by
from tests.helpers import db_session

pytestmark = pytest.mark.postgresql

SMS = {"recipient": "+819012345678", "sender": "Chotto", "message": "Your code is 1234"}
FORM_TYPE = "application/x-www-form-urlencoded"
NOT_BY_DATABASE, NOT_BY_FIELDS = NotPlain(by_database=True), NotPlain(by_database=False)
TABLES = ("credit_lots", "credit_states", "credit_transactions", "credit_entries", "sms_messages", "outbox",
          "spend_counters", "usage_daily", "api_credentials")


@pytest.fixture
def calls(monkeypatch):
    """What each express attempt answered: Sent, or NotPlain."""
    answered = []
    send = express_sends.send_sms

    def spy(**kwargs):
        answered.append(send(**kwargs))
        return answered[-1]

    monkeypatch.setattr(express_sends, "send_sms", spy)
    return answered


def snapshot(app) -> dict:
    """Every row of the tables a send could write, as text: what "nothing written" compares."""
    with db_session(app) as session:
        return {table: sorted(map(str, session.execute(text(f"SELECT * FROM {table}")).all())) for table in TABLES}


def express(app, key, clock, *, daily_cap=None, **fields):
    """One direct call of the express send, the price cache warm."""
    with app.test_request_context(), db_session(app) as session:
        messaging._price(session, Product.SMS, "JP", "recipient")
        with db.statement_connection() as connection:
            return express_sends.send_sms(connection=connection, prices=str(db.engine().url), sid=key.sid,
                                          digest=tokens.digest(key.token), request=SendSms(**(SMS | fields)),
                                          ip="127.0.0.1", now=clock(), daily_cap=daily_cap)


def test_a_plain_paid_sms_is_one_round_trip(app, api, key, calls):
    assert api.post("/sms/messages/", data=SMS | {"message": "first"}, headers=key.headers).status_code == 201
    exchanges = Exchanges(app.extensions["portal.engine"])
    assert api.post("/sms/messages/", data=SMS | {"message": "warm"}, headers=key.headers).status_code == 201
    before = exchanges.count()
    response = api.post("/sms/messages/", data=SMS, headers=key.headers)
    assert response.status_code == 201 and exchanges.count() - before == 1
    assert calls[-1].msgid == response.json[0]["msgid"]


def test_it_writes_what_the_general_path_writes(app, api, key, calls, monkeypatch):
    fields = SMS | {"message": "日本語のメッセージ" * 10, "tags": "a,b", "callbackurl": "https://example.com/cb"}
    api.post("/sms/messages/", data=SMS, headers=key.headers)  # the price cache, warm
    fast = api.post("/sms/messages/", data=fields, headers=key.headers)
    assert fast.status_code == 201 and isinstance(calls[-1], Sent)
    monkeypatch.setattr(express_sends, "send_sms", lambda **kwargs: NOT_BY_FIELDS)
    other = another_key(app)
    api.post("/sms/messages/", data=SMS, headers=other.headers)
    general = api.post("/sms/messages/", data=fields, headers=other.headers)
    assert general.status_code == 201
    one, another = written_by(app, fast.json[0]["msgid"]), written_by(app, general.json[0]["msgid"])
    assert one == another
    assert one["message"]["segments"] == 2 and one["line"]["amount"] == -20 * YEN


def _lots(app, account_id, clock, *lots):
    """Grant (kind, yen, days to expiry, days ago issued) lots, in order."""
    with db_session(app) as session:
        for n, (kind, yen, days, issued_days_ago) in enumerate(lots):
            issued = clock() - timedelta(days=issued_days_ago)
            ledger.grant(session=session, account_id=account_id, kind=kind, amount=yen * YEN,
                         expires_at=issued + timedelta(days=days), source_ref=f"lot:{account_id}:{n}",
                         idempotency_key=f"lot{n}", reason="test lot", now=clock(), issued_at=issued)
        session.execute(update(CreditState).where(CreditState.account_id == account_id).values(has_purchased=True))
        session.commit()


LOTS = [("grant", 100, 90, 0), ("purchase", 7, 30, 5), ("trial", 4, 35, 0), ("grant", 3, 30, 2),
        ("adjustment", 6, 30, 5)]


@pytest.mark.parametrize("parts", [1, 2, 3])
def test_a_send_across_several_lots_takes_them_in_burn_order_as_the_general_path(app, api, customer, clock, calls,
                                                                                   monkeypatch, parts):
    user, account_id = customer
    _lots(app, account_id, clock, *LOTS)
    first = new_key(app, account_id, user.id)
    message = "x" * (153 * parts)
    api.post("/sms/messages/", data=SMS, headers=first.headers)
    fast = api.post("/sms/messages/", data=SMS | {"message": message}, headers=first.headers)
    assert fast.status_code == 201 and isinstance(calls[-1], Sent)
    monkeypatch.setattr(express_sends, "send_sms", lambda **kwargs: NOT_BY_FIELDS)
    other = another_key(app)
    with db_session(app) as session:  # the other account: its fund lot spent, then the same lots
        other_account = other.account_id
        ledger.debit(session=session, account_id=other_account, amount=1000 * YEN, idempotency_key="empty",
                     reason="empty the fund lot", now=clock())
    _lots(app, other_account, clock, *LOTS)
    api.post("/sms/messages/", data=SMS, headers=other.headers)
    general = api.post("/sms/messages/", data=SMS | {"message": message}, headers=other.headers)
    one, another = written_by(app, fast.json[0]["msgid"]), written_by(app, general.json[0]["msgid"])
    spent = [lot for lot in one["lots"] if lot[1] != lot[2]]
    assert one["entries"] == another["entries"] and len(one["entries"]) >= 1
    assert one["lots"][1:] == another["lots"][2:]  # the lots granted alike (each account's first lot differs)
    assert one["line"] == another["line"] | {"balance_after": one["line"]["balance_after"]}
    assert spent  # something was taken, in burn order: the trial lot (soonest) first
    with db_session(app) as session:
        problems, _ = check(session, now=clock())
    assert problems == []


def test_each_send_takes_from_the_lots_what_the_ledgers_split_takes(app, customer, clock):
    """Ties on expiry broken as the ledger's burn_key breaks them: trial before paid, then
    oldest, then id; sends of ¥20 across lots of ¥15 and ¥7 also split one send over two lots."""
    user, account_id = customer
    _lots(app, account_id, clock, ("grant", 15, 40, 0), ("purchase", 7, 30, 1), ("trial", 15, 30, 0),
          ("grant", 7, 30, 3), ("grant", 15, 30, 3), ("adjustment", 15, 31, 10))
    key = new_key(app, account_id, user.id)
    _set(app, text("UPDATE balance_thresholds SET amount = 1, armed = true"))  # none moves
    for _ in range(5):
        with db_session(app) as session:
            lots = ledger_steps.lots_of(session, account_id)
        expected = [(take.lot.id, -take.amount) for take in rules.split(lots, 20 * YEN, clock())]
        sent = express(app, key, clock, message="x" * 306)  # two parts: ¥20
        assert isinstance(sent, Sent)
        with db_session(app) as session:
            line = session.scalars(select(Transaction).where(Transaction.idempotency_key == f"sms:{sent.msgid}")).one()
            taken = session.execute(select(Entry.lot_id, Entry.amount).where(Entry.transaction_id == line.id)
                                    .order_by(Entry.id)).all()
        assert [tuple(row) for row in taken] == expected
    with db_session(app) as session:
        problems, _ = check(session, now=clock())
    assert problems == []


def _set(app, statement):
    with db_session(app) as session:
        session.execute(statement)
        session.commit()


NOT_PLAIN = {
    "a trial account": lambda app, key, clock: _set(app, update(CreditState).values(has_purchased=False)),
    "a test credential": lambda app, key, clock: _set(app, update(Credential).values(mode="test")),
    "an IP allow-list": lambda app, key, clock: _set(app, update(Credential).values(allowed_networks="127.0.0.0/8")),
    "no sms scope": lambda app, key, clock: _set(app, update(Credential).values(scopes="voice,read")),
    "a revoked credential": lambda app, key, clock: _set(app, update(Credential).values(revoked_at=clock())),
    "a secret past its overlap": lambda app, key, clock: _set(app, update(CredentialSecret).values(expires_at=clock())),
    "a lot due to expire": lambda app, key, clock: _set(app, update(Lot).values(issued_at=clock() - timedelta(days=1),
                                                                               expires_at=clock())),
    "a refunded lot with credit": lambda app, key, clock: _set(app, update(Lot).values(refunded_at=clock())),
    "a threshold crossed": lambda app, key, clock: _set(app, text(
        "UPDATE balance_thresholds SET amount = 999995000, armed = true")),
    "a threshold re-armed": lambda app, key, clock: _set(app, text(
        "UPDATE balance_thresholds SET amount = 1000, armed = false")),
    "a monthly cap": lambda app, key, clock: _set(app, update(Credential).values(monthly_cap=9 * YEN)),
    "a price changed since": lambda app, key, clock: _set(app, update(Price).where(
        Price.product == "sms", Price.country == "JP").values(unit_price=Price.unit_price + 1)),
}


@pytest.mark.parametrize("case", sorted(NOT_PLAIN))
def test_a_case_that_is_not_plain_writes_nothing(app, key, clock, case):
    express(app, key, clock)  # the credential's first use noted
    NOT_PLAIN[case](app, key, clock)
    before = snapshot(app)
    try:
        assert express(app, key, clock) == NOT_BY_DATABASE
    finally:
        if case == "a price changed since":
            _set(app, update(Price).where(Price.product == "sms", Price.country == "JP")
                 .values(unit_price=Price.unit_price - 1))
            messaging._PRICES.clear()
    assert snapshot(app) == before


@pytest.mark.parametrize("fields", [{"recipient": "+8108012345678"}, {"recipient": "+14155550100"},
                                    {"message": ""}, {"sender": "bad sender!"}, {"message": "x" * 1531}])
def test_invalid_or_undeliverable_fields_write_nothing(app, key, clock, fields):
    before = snapshot(app)
    assert isinstance(express(app, key, clock, **fields), NotPlain)
    assert snapshot(app) == before


def test_the_credit_short_by_a_yen_writes_nothing_and_exactly_enough_is_spent(app, customer, clock):
    user, account_id = customer
    _lots(app, account_id, clock, ("grant", 10, 30, 0))
    key = new_key(app, account_id, user.id)
    _set(app, text("UPDATE balance_thresholds SET armed = false, amount = 1"))  # no threshold moves
    with db_session(app) as session:
        ledger.debit(session=session, account_id=account_id, amount=50 * YEN + 1, idempotency_key="short",
                     reason="leave ¥10 less a milli-yen", now=clock())
    before = snapshot(app)
    assert express(app, key, clock) == NOT_BY_DATABASE
    assert snapshot(app) == before
    with db_session(app) as session:
        ledger.grant(session=session, account_id=account_id, kind="grant", amount=1, expires_at=clock() + timedelta(1),
                     source_ref="a milli-yen", idempotency_key="milli", reason="a milli-yen", now=clock())
    _set(app, text("UPDATE balance_thresholds SET amount = 1, armed = false"))  # none moves at ¥0 either
    assert express(app, key, clock) != NOT_BY_DATABASE
    with db_session(app) as session:
        assert session.get(CreditState, account_id).balance == 0


def test_the_daily_cap_is_kept_to_the_yen(app, key, clock):
    assert express(app, key, clock, daily_cap=20 * YEN) != NOT_BY_DATABASE
    assert express(app, key, clock, daily_cap=20 * YEN) != NOT_BY_DATABASE  # exactly the cap
    before = snapshot(app)
    assert express(app, key, clock, daily_cap=20 * YEN) == NOT_BY_DATABASE
    assert snapshot(app) == before


def test_a_lot_is_spent_until_the_second_before_its_expiry(app, customer, clock):
    user, account_id = customer
    _lots(app, account_id, clock, ("purchase", 10, 30, 0))
    key = new_key(app, account_id, user.id)
    with db_session(app) as session:
        session.execute(update(Lot).where(Lot.account_id == account_id).values(expires_at=clock() + timedelta(seconds=1)))
        session.commit()
    with db_session(app) as session:
        lots_before = {lot.id: lot.remaining for lot in session.scalars(select(Lot).where(Lot.account_id == account_id))}
    assert express(app, key, clock) != NOT_BY_DATABASE  # the second before: spendable
    with db_session(app) as session:
        spent = {lot.id: lots_before[lot.id] - lot.remaining
                 for lot in session.scalars(select(Lot).where(Lot.account_id == account_id))}
    assert sorted(spent.values()) == [0, 10 * YEN]
    clock.advance(seconds=1)  # at its expiry: due to be written off first, by the general path
    before = snapshot(app)
    assert express(app, key, clock) == NOT_BY_DATABASE
    assert snapshot(app) == before


def test_the_api_answers_every_case_that_is_not_plain_as_before(app, api, key, clock, calls):
    assert api.post("/sms/messages/", data=SMS, headers=key.headers).status_code == 201
    _set(app, update(Credential).values(monthly_cap=15 * YEN))
    capped = api.post("/sms/messages/", data=SMS, headers=key.headers)
    assert capped.status_code == 403 and "monthly spend cap" in capped.json["detail"] and calls[-1] == NOT_BY_DATABASE
    _set(app, update(Credential).values(monthly_cap=None, revoked_at=clock()))
    assert api.post("/sms/messages/", data=SMS, headers=key.headers).status_code == 401  # the very next request
    with db_session(app) as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 1


def limited(app_with, send_limit: str, **key_options):
    """A portal with the rate limits on (so callers are known and the lane runs), a funded
    account and a key of it; returns the portal, the key and a test client."""
    from portal.accounts.models import Membership
    from tests.helpers import make_user

    app = app_with(RATELIMIT_ENABLED=True, API_SEND_RATE_LIMIT=send_limit, API_ACCOUNT_RATE_LIMIT="1000 per minute")
    user = make_user(app, email="limited@example.com", phone="+819055556666")
    with db_session(app) as session:
        account_id = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
    fund(app, account_id, 1000)
    return app, new_key(app, account_id, user.id, **key_options), app.test_client()


def test_a_known_caller_whose_case_is_not_plain_skips_the_express_call_until_forgotten(app_with, clock, calls):
    app, key, api = limited(app_with, "1000 per second", networks=["127.0.0.0/8"])
    for _ in range(3):
        assert api.post("/sms/messages/", data=SMS, headers=key.headers).status_code == 201
    assert calls == [NOT_BY_DATABASE]  # the first request authenticated (not known yet), the second tried, the third did not
    clock.advance(seconds=11)
    assert api.post("/sms/messages/", data=SMS, headers=key.headers).status_code == 201
    assert calls == [NOT_BY_DATABASE]  # forgotten: authenticated again, then known as not plain


# -- the express lane: the plain send before Flask --------------------------------------------------


@pytest.fixture
def lane(monkeypatch):
    """What the lane answered for each request it tried (None: it went on to Flask)."""
    import portal.api

    tried = []
    send = portal.api.lane_sms

    def spy(*args):
        tried.append(send(*args))
        return tried[-1]

    monkeypatch.setattr(portal.api, "lane_sms", spy)
    return tried


def test_the_lane_answers_a_plain_form_send_as_flask_answers_a_plain_json_send(app, api, key, calls, lane):
    api.post("/sms/messages/", data=SMS, headers=key.headers)  # the price cache, warm
    by_lane = api.post("/sms/messages", data=SMS, headers=key.headers)
    assert by_lane.status_code == 201 and lane[-1] is not None and isinstance(calls[-1], Sent)
    by_flask = api.post("/sms/messages/", json=SMS, headers=key.headers)  # not a form: Flask's express guard
    assert by_flask.status_code == 201 and len(lane) == 2 and isinstance(calls[-1], Sent)
    assert by_lane.status == by_flask.status
    assert sorted(by_lane.headers.items()) == sorted((name, value if name != "Content-Length" else by_lane.headers[name])
                                                     for name, value in by_flask.headers.items())
    assert set(by_lane.json[0]) == set(by_flask.json[0]) == {"msgid"}


CHANGES = {
    "a query string": {"query_string": "page=1"},
    "a cookie": {"cookie": ("a", "b")},
    "an Origin": {"headers": {"Origin": "https://elsewhere.example"}},
    "Sec-Fetch-Site": {"headers": {"Sec-Fetch-Site": "cross-site"}},
    "an Idempotency-Key": {"headers": {"Idempotency-Key": "k-1"}},
    "a NUL": {"data": SMS | {"message": "a\x00b"}},
    "a lone surrogate": {"data": "recipient=%2B819012345678&sender=Chotto&message=%ED%A0%80", "content_type": FORM_TYPE},
    "bytes that are not UTF-8": {"data": "recipient=%2B819012345678&sender=Chotto&message=%FF", "content_type": FORM_TYPE},
    "a body over 16 kB": {"data": SMS | {"message": "x" * 17_000}},
    "credentials that are not a key": {"authorization": "Basic " + "bm90LWEtc2lkOm5vdC1hLXRva2Vu"},
    "not Basic": {"authorization": "Bearer abc"},
    "base64 with junk": {"junk": "!!"},
    "a NUL in Content-Type": {"content_type": FORM_TYPE + "; x=\x00"},
}


@pytest.mark.parametrize("case", sorted(CHANGES))
def test_what_the_lane_is_not_sure_of_goes_on_to_flask_which_answers_as_before(app, api, key, lane, case):
    change = CHANGES[case]
    headers = dict(key.headers) | change.get("headers", {})
    if "authorization" in change:
        headers["Authorization"] = change["authorization"]
    if "cookie" in change:
        api.set_cookie(*change["cookie"])
    if "junk" in change:
        headers["Authorization"] += change["junk"]

    def post():
        return api.post("/sms/messages/", data=change.get("data", SMS), headers=headers,
                        query_string=change.get("query_string"), content_type=change.get("content_type"))

    answered = post()
    assert all(answer is None for answer in lane)
    lane_first, app.wsgi_app = app.wsgi_app, app.wsgi_app.inner  # the same request to Flask alone
    try:
        before = post()
    finally:
        app.wsgi_app = lane_first
    assert answered.status_code == before.status_code
    if isinstance(before.json, dict):
        assert answered.json.keys() == before.json.keys()


def test_a_send_whose_connection_is_lost_after_its_commit_is_answered_as_sent(app, api, key, monkeypatch):
    send = express_sends.send_sms

    def committed_then_lost(**kwargs):
        sent = send(**kwargs)
        raise express_sends.InDoubt(sent.msgid, server_pid=0)

    monkeypatch.setattr(express_sends, "send_sms", committed_then_lost)
    response = api.post("/sms/messages/", data=SMS, headers=key.headers)
    assert response.status_code == 201
    with db_session(app) as session:
        assert session.scalars(select(Message.msgid)).all() == [response.json[0]["msgid"]]


def test_a_send_lost_and_not_committed_is_a_plain_503(app, api, key, monkeypatch):
    def lost(**kwargs):
        raise express_sends.InDoubt("0" * 32, server_pid=0)  # no such server process: it is over

    monkeypatch.setattr(express_sends, "send_sms", lost)
    response = api.post("/sms/messages/", data=SMS, headers=key.headers)
    assert response.status_code == 503 and "Nothing was done and nothing was charged" in response.json["detail"]


def test_a_send_whose_fate_cannot_be_told_is_a_503_that_names_it_and_claims_nothing(app, api, key, monkeypatch):
    def lost(**kwargs):
        raise express_sends.InDoubt("0" * 32, server_pid=0)

    monkeypatch.setattr(express_sends, "send_sms", lost)
    monkeypatch.setattr(express_sends, "settle", lambda **kwargs: None)
    for path in ("/sms/messages/", "/sms/messages"):  # the lane, and Flask's guard (JSON)
        response = api.post(path, data=SMS, headers=key.headers) if path.endswith("/") else api.post(
            path, json=SMS, headers=key.headers)
        assert response.status_code == 503 and response.json["msgid"] == "0" * 32
        assert "whether it was sent and charged is not known" in response.json["detail"]
        assert "nothing was charged" not in response.text.lower() and int(response.headers["Retry-After"]) >= 1
    with db_session(app) as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 0


def _waiting_send(app, key, clock, **fields):
    """An express send started in a thread while the account's credit row is locked by another
    transaction (the returned connection, still open): it waits for the lock."""
    import threading

    import psycopg

    holder = psycopg.connect(str(app.extensions["portal.engine"].url).replace("+psycopg", ""))
    holder.execute("SELECT 1 FROM credit_states WHERE account_id = %s FOR UPDATE", (key.account_id,))
    outcome, pid = [], []

    def run():
        with app.test_request_context(), db.statement_connection() as connection:
            pid.append(connection.info.backend_pid)
            try:
                outcome.append(express_sends.send_sms(
                    connection=connection, prices=str(db.engine().url), sid=key.sid, digest=tokens.digest(key.token),
                    request=SendSms(**(SMS | fields)), ip="127.0.0.1", now=clock(), daily_cap=None))
            except Exception as error:  # noqa: BLE001 - what the test looks at
                outcome.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    with psycopg.connect(str(app.extensions["portal.engine"].url).replace("+psycopg", ""), autocommit=True) as watcher:
        for _ in range(200):
            if pid and watcher.execute("SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted", (pid[0],)).fetchone():
                break
            threading.Event().wait(0.02)
    return holder, thread, outcome, pid


def test_settling_a_lost_send_ends_its_server_process_so_it_never_commits_later(app, key, clock):
    express(app, key, clock)  # warm: prices cached, the credential's use noted
    before = snapshot(app)
    holder, thread, outcome, pid = _waiting_send(app, key, clock)
    try:
        with app.test_request_context(), db.statement_connection() as connection:
            settled = express_sends.settle(connection=connection,
                                           doubt=express_sends.InDoubt("f" * 32, server_pid=pid[0]))
    finally:
        holder.commit()  # the lock is free: an orphan still running would commit now
        holder.close()
        thread.join(10)
    assert settled is False and isinstance(outcome[0], Exception)
    assert snapshot(app) == before


def test_a_credential_revoked_while_its_send_waits_for_the_lock_sends_nothing(app, key, clock):
    express(app, key, clock)
    before = snapshot(app)
    holder, thread, outcome, _pid = _waiting_send(app, key, clock)
    try:
        _set(app, update(Credential).values(revoked_at=clock()))
    finally:
        holder.commit()
        holder.close()
        thread.join(10)
    assert outcome == [NOT_BY_DATABASE]
    assert snapshot(app) == before | {"api_credentials": snapshot(app)["api_credentials"]}


def test_a_statement_timeout_is_a_503_not_a_second_try_the_general_way(app_with, clock, calls):
    app = app_with(DATABASE_STATEMENT_TIMEOUT_MS=300)
    from portal.accounts.models import Membership
    from tests.helpers import make_user

    user = make_user(app, email="timeout@example.com", phone="+819044443333")
    with db_session(app) as session:
        account_id = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
    fund(app, account_id, 1000)
    key = new_key(app, account_id, user.id)
    api = app.test_client()
    assert api.post("/sms/messages/", data=SMS, headers=key.headers).status_code == 201  # warm
    import psycopg

    with psycopg.connect(str(app.extensions["portal.engine"].url).replace("+psycopg", "")) as holder:
        holder.execute("SELECT 1 FROM credit_states WHERE account_id = %s FOR UPDATE", (account_id,))
        response = api.post("/sms/messages/", data=SMS, headers=key.headers)
        holder.rollback()
    assert response.status_code == 503 and "Nothing was done" in response.json["detail"]
    with db_session(app) as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 1


def test_a_database_behind_the_code_sends_the_general_way_and_logs_an_error(app, api, key, caplog):
    engine = app.extensions["portal.engine"]
    with engine.begin() as connection:
        connection.execute(text("ALTER FUNCTION express_sms RENAME TO express_sms_away"))
    engine.dispose()  # no connection keeps the prepared call
    try:
        response = api.post("/sms/messages/", data=SMS, headers=key.headers)
    finally:
        with engine.begin() as connection:
            connection.execute(text("ALTER FUNCTION express_sms_away RENAME TO express_sms"))
        engine.dispose()
    assert response.status_code == 201
    assert any(record.levelname == "ERROR" and "express send failed" in record.getMessage() for record in caplog.records)
    with db_session(app) as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 1


def test_with_rate_limits_on_the_lane_takes_the_buckets_once(app_with, clock, lane):
    app, key, api = limited(app_with, "3 per minute")
    codes = [api.post("/sms/messages/", data=SMS, headers=key.headers).status_code for _ in range(4)]
    assert codes == [201, 201, 201, 429]
    # the first is authenticated the general way (not known yet); the fourth finds a bucket empty
    assert [answer is not None for answer in lane] == [False, True, True, False]
    throttled = api.post("/sms/messages/", data=SMS, headers=key.headers)
    assert throttled.status_code == 429 and throttled.json == {"detail": "Request was throttled. Try again later."}
    assert int(throttled.headers["Retry-After"]) >= 1


def test_a_known_caller_revoked_is_refused_on_its_very_next_request(app_with, clock, lane):
    from portal.credentials import service as credentials

    app, key, api = limited(app_with, "100 per minute")
    assert [api.post("/sms/messages/", data=SMS, headers=key.headers).status_code for _ in range(3)] == [201] * 3
    assert lane[-1] is not None  # known to this process, sent by the lane
    with app.app_context(), db_session(app) as session:
        credential_id = session.scalar(select(Credential.id).where(Credential.sid == key.sid))
        credentials.revoke(session=session, account_id=key.account_id, credential_id=credential_id,
                           user_id=key.user_id, now=clock())
    refused = api.post("/sms/messages/", data=SMS, headers=key.headers)
    assert refused.status_code == 401 and lane[-1] is None
    with db_session(app) as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 3
