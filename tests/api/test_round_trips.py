"""On PostgreSQL an API request sends its BEGIN with its first statement (one exchange with the
server, not two): a paid SMS that is not the express case (tests/api/test_express_send.py: one
round trip) takes three (BEGIN with authenticate-and-lock, the debit with its riders, COMMIT). The connection is put in autocommit for that statement only:
once back in the pool it begins its transactions as usual again, so a page's or a job's unit
of work stays all or nothing."""

import ctypes
import tempfile

import pytest
from psycopg import pq
from sqlalchemy import event, func, insert, select

from portal import db
from portal.api import express_sends
from portal.outbox import OutboxMessage
from tests.api.test_sms import SMS
from tests.helpers import db_session

pytestmark = pytest.mark.postgresql


class Exchanges:
    """Every ReadyForQuery the server sends (one per exchange) on the engine's connections
    opened from now on (the pool is emptied first)."""

    def __init__(self, engine):
        self.file = tempfile.TemporaryFile()
        engine.dispose()  # every connection from now on is a new one, traced
        event.listen(engine, "connect", self._trace)

    def _trace(self, dbapi_connection, _record):
        dbapi_connection.pgconn.trace(self.file.fileno())
        dbapi_connection.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)

    def count(self) -> int:
        ctypes.CDLL(None).fflush(None)  # libpq writes the trace through stdio
        self.file.seek(0)
        return sum(1 for line in self.file if b"\tReadyForQuery\t" in line)


def test_a_paid_sms_the_general_way_takes_three_round_trips(app, api, key, monkeypatch):
    monkeypatch.setattr(express_sends, "send_sms", lambda **kwargs: express_sends.NotPlain(by_database=False))
    assert api.post("/sms/messages/", data=SMS | {"message": "first"}, headers=key.headers).status_code == 201
    exchanges = Exchanges(app.extensions["portal.engine"])
    assert api.post("/sms/messages/", data=SMS | {"message": "warm"}, headers=key.headers).status_code == 201
    before = exchanges.count()
    assert api.post("/sms/messages/", data=SMS, headers=key.headers).status_code == 201
    assert exchanges.count() - before == 3


def _pooled(engine) -> list:
    """The DBAPI connections waiting in the pool (looked at, not checked out)."""
    return [record.dbapi_connection for record in list(engine.pool._pool.queue)]


def test_pooled_connections_leave_autocommit_and_later_units_are_all_or_nothing(app, api, key, clock):
    engine = app.extensions["portal.engine"]
    engine.dispose()
    assert api.post("/sms/messages/", data=SMS, headers=key.headers).status_code == 201
    assert api.post("/sms/messages/", data=SMS | {"recipient": "+12"}, headers=key.headers).status_code == 400
    assert api.post("/sms/messages/", data=SMS | {"message": ""}, headers=key.headers).status_code == 400
    pooled = _pooled(engine)
    assert pooled and all(connection.autocommit is False for connection in pooled)
    outbox = OutboxMessage.__table__
    with app.app_context(), db_session(app) as session:
        jobs = session.scalar(select(func.count()).select_from(outbox))
        with pytest.raises(RuntimeError), db.write(session):
            session.execute(insert(outbox).values(kind="api_sms", payload="{}", created_at=clock(),
                                                  available_at=clock(), attempts=0))
            raise RuntimeError("the unit fails after its first write")
        assert session.scalar(select(func.count()).select_from(outbox)) == jobs


def test_a_refused_send_after_the_lock_rolls_back_and_the_next_request_begins_afresh(app, api, key):
    first = api.post("/sms/messages/", data=SMS, headers=key.headers | {"Idempotency-Key": "k1"})
    assert first.status_code == 201
    reused = api.post("/sms/messages/", data=SMS | {"message": "other"}, headers=key.headers | {"Idempotency-Key": "k1"})
    assert reused.status_code == 422  # refused under the lock: the transaction is rolled back
    again = api.post("/sms/messages/", data=SMS, headers=key.headers | {"Idempotency-Key": "k1"})
    assert again.status_code == 201 and again.get_data() == first.get_data()

