"""When the database cannot answer, every API route and page says 503 with Retry-After (never a
500, never a 2xx for something that needed the database), and serves again once it is back.
Here the outage is simulated by pointing the running portal at a database nobody serves (the
real stop-and-start of a PostgreSQL server is tests/integration/test_database_down.py)."""

import re
import socket
import sqlite3
from pathlib import Path

import pytest

from portal import db
from portal.config import normalise_database_url
from tests.api.conftest import fund, new_key
from tests.helpers import PASSWORD, PageClient, make_user

# answers that need no database at all: files, the signed webhook's refusal, the language
# cookie, the API's own description
NO_DATABASE = {"static", "webhooks.stripe_webhook", "public.set_language", "api.openapi", "api.docs"}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _unreachable(database_url: str, tmp_path: Path) -> str:
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'no-such-folder' / 'portal.sqlite3'}"
    return normalise_database_url(f"postgresql://chotto@127.0.0.1:{_closed_port()}/chotto")


@pytest.fixture
def outage(app, database_url, tmp_path):
    """A signed-in owner and a funded credential; then `outage.start()` / `outage.end()`."""
    from sqlalchemy import select

    from portal.accounts.models import Membership
    from tests.helpers import db_session

    user = make_user(app, phone="+819011112222")
    with db_session(app) as session:
        account_id = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
    fund(app, account_id, 1000)
    client = PageClient(app.test_client(), app)
    client.login("owner@example.com")

    class Outage:
        key = new_key(app, account_id, user.id)
        csrf = client.csrf_token()
        healthy = app.extensions["portal.engine"]
        broken = db.make_engine(_unreachable(database_url, tmp_path))

        def start(self):
            app.extensions["portal.engine"] = self.broken

        def end(self):
            app.extensions["portal.engine"] = self.healthy

    Outage.client = client
    yield Outage()
    app.extensions["portal.engine"] = Outage.healthy
    Outage.broken.dispose()


def _assert_unavailable(response, *, json: bool, where):
    assert response.status_code == 503, (where, response.status_code, response.get_data(as_text=True)[:300])
    assert int(response.headers["Retry-After"]) >= 1, where
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"], where
    if json:
        assert response.mimetype == "application/json" and "detail" in response.get_json(), where
    else:
        assert response.mimetype == "text/html", where
        page = response.get_data(as_text=True)  # the walk passes the language switch, so either language
        assert "The service is briefly unavailable" in page or "ただいまサービスを一時的にご利用いただけません" in page, where
        PageClient.check_page(response)


def test_every_route_answers_503_with_retry_after_while_the_database_is_unreachable(app, outage):
    from portal import api

    outage.start()
    answered = 0
    for rule in app.url_map.iter_rules():
        path = rule.rule.replace("<path:filename>", "css/app.css").replace("<lang>", "ja")
        path = path.replace("<token>", "A" * 43)
        path = re.sub(r"<(?:\w+:)?\w+>", "1", path)
        with app.test_request_context(path):
            is_api = api.is_api_request()
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            headers = outage.key.headers if is_api else {}
            data = None if is_api or method == "GET" else {"csrf_token": outage.csrf}
            response = outage.client.client.open(path, method=method, headers=headers, data=data)
            if rule.endpoint in NO_DATABASE:
                assert response.status_code < 500, (rule.rule, method, response.status_code)
                continue
            _assert_unavailable(response, json=is_api, where=(rule.rule, method))
            answered += 1
    assert answered > 40
    _assert_unavailable(outage.client.client.get("/no/such/page"), json=False, where="a 404 needing the person")
    outage.end()
    outage.client.get("/dashboard")
    assert outage.client.client.get("/you/credits/", headers=outage.key.headers).status_code == 200


def test_a_send_during_an_outage_is_refused_with_503_and_nothing_is_charged(app, outage):
    send = {"recipient": "+819011112222", "sender": "Chotto", "message": "hello"}
    before = outage.client.client.get("/you/credits/", headers=outage.key.headers).get_json()["credits"]
    outage.start()
    response = outage.client.client.post("/sms/messages/", data=send, headers=outage.key.headers)
    _assert_unavailable(response, json=True, where="send")
    assert "Nothing was done and nothing was charged" in response.get_json()["detail"]
    outage.end()
    assert outage.client.client.get("/you/credits/", headers=outage.key.headers).get_json()["credits"] == before


def test_a_sqlite_database_locked_past_the_busy_timeout_is_a_503(database_url, app_with):
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's busy timeout: PostgreSQL has no database-wide write lock")
    app = app_with(SQLITE_BUSY_TIMEOUT_MS=20)
    make_user(app)
    client = PageClient(app.test_client(), app)
    client.login("owner@example.com")
    visitor = PageClient(app.test_client(), app)
    visitor.get("/login")
    holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        for path in ("/dashboard", "/credit/statement"):  # read units never wait for the write lock (WAL)
            client.get(path)
        response = visitor.post("/login", {"email": "owner@example.com", "password": PASSWORD})
        _assert_unavailable(response, json=False, where="/login")  # a login writes its session
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    client.get("/dashboard")


def test_only_unavailability_is_a_503_a_broken_query_stays_a_500(app):
    """A missing table on SQLite is a bug, not an outage: a 500, logged as such."""
    from sqlalchemy import text

    @app.get("/boom/missing-table")
    def missing_table():
        db.session().execute(text("SELECT * FROM no_such_table"))

    response = app.test_client().get("/boom/missing-table")
    assert response.status_code == 500 and "Retry-After" not in response.headers


def test_a_statement_that_outlives_the_statement_timeout_is_a_503_on_postgresql(database_url, app_with):
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's statement_timeout: SQLite has none (its busy timeout is tested above)")
    from sqlalchemy import text

    app = app_with(DATABASE_STATEMENT_TIMEOUT_MS=100)

    @app.get("/slow")
    def slow():
        db.session().execute(text("SELECT pg_sleep(30)"))
        return "finished"

    response = app.test_client().get("/slow")
    _assert_unavailable(response, json=False, where="/slow")
    with app.app_context(), db.job_session() as session:
        assert session.scalar(text("SHOW statement_timeout")) == "100ms"
    engine = db.make_engine(database_url)
    with engine.connect() as connection:
        assert connection.scalar(text("SHOW statement_timeout")) == f"{db.STATEMENT_TIMEOUT_MS // 1000}s"
        assert 1 <= int(connection.connection.dbapi_connection.info.get_parameters()["connect_timeout"]) <= 5
    engine.dispose()


def test_the_api_document_declares_the_503_on_every_operation(app):
    document = app.test_client().get("/api/openapi.json").get_json()
    operations = [operation for path in document["paths"].values() for operation in path.values()]
    assert operations and all("503" in operation["responses"] for operation in operations)
    assert all("Retry-After" in operation["responses"]["503"]["headers"] for operation in operations)
