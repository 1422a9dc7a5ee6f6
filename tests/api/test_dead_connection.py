"""Without the pool's pre-ping, a send that finds its pooled connection dead (the server
restarted, or an operator ended the session) is served on a fresh connection: the first
statement of a request is run once more (portal.db.leading_read), and the send is paid once."""

import pytest
from sqlalchemy import create_engine, select, text

from portal.ledger.models import CreditState
from tests.api.test_sms import SMS
from portal import db
from tests.helpers import PageClient, db_session

pytestmark = pytest.mark.postgresql


def _end_every_other_session(app) -> int:
    url = app.extensions["portal.engine"].url
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        ended = connection.execute(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar_one()
    admin.dispose()
    return ended


def _balance(app, account_id) -> int:
    with db_session(app) as session:
        return session.scalars(select(CreditState.balance).where(CreditState.account_id == account_id)).one()


def test_a_send_survives_a_dead_pooled_connection(app, api, key):
    engine = app.extensions["portal.engine"]
    assert not engine.pool._pre_ping
    assert api.post("/sms/messages/", data=SMS, headers=key.headers).status_code == 201  # its connection is pooled
    before = _balance(app, key.account_id)
    assert engine.pool.checkedin() >= 1 and _end_every_other_session(app) >= 1
    sent = api.post("/sms/messages/", data=SMS, headers=key.headers)
    assert sent.status_code == 201, sent.get_data(as_text=True)
    price = before - _balance(app, key.account_id)
    assert price > 0
    assert api.post("/sms/messages/", data=SMS, headers=key.headers).status_code == 201
    assert before - _balance(app, key.account_id) == 2 * price  # each send paid once
    with db_session(app) as session:
        assert session.scalar(text("SELECT count(*) FROM sms_messages")) == 3



def test_pages_and_the_worker_ping_a_pooled_connection_and_the_api_does_not(app, api, key, monkeypatch):
    engine = app.extensions["portal.engine"]
    pings = []
    ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda connection: pings.append(1) or ping(connection))
    assert api.post("/sms/messages/", data=SMS, headers=key.headers).status_code == 201
    assert pings == []  # a round trip fewer: the API's first statement retries instead
    owner = PageClient(app.test_client(), app)
    owner.login("dev@example.com")
    assert engine.pool.checkedin() >= 1 and _end_every_other_session(app) >= 1
    assert "Dashboard" in owner.text("/dashboard")  # neither a 500 nor a 503: the dead connection was replaced
    assert pings
    _end_every_other_session(app)
    with app.app_context(), db.session() as session:  # a worker's unit after a mail exchange
        assert session.scalar(text("SELECT 1")) == 1
