"""On PostgreSQL an SMS's debit and what rides with it (the message, its outbox job, the spend
counters) are written by one statement composed from the table definitions, compiled once, and
it writes the same rows as the statement-by-statement path other databases take."""

import json
import re

import pytest
from sqlalchemy import event, select
from sqlalchemy.engine.interfaces import CacheStats

from portal.accounts.models import Membership
from portal.api import express_sends
from portal.ledger import writes
from portal.ledger.models import CreditState, Entry, Lot, Transaction
from portal.messaging.api_models import Message
from portal.messaging.spend import SpendCounter
from portal.outbox import OutboxMessage
from tests.api.conftest import fund, new_key
from tests.helpers import db_session, make_user

pytestmark = pytest.mark.postgresql

SMS = {"recipient": "+819012345678", "sender": "Chotto", "message": "Your code is 1234"}
WRITE = re.compile(r"\b(?:INSERT INTO|UPDATE|DELETE FROM) (\w+)")
BOOKED = {"credit_lots", "credit_states", "credit_transactions", "credit_entries", "sms_messages", "outbox",
          "spend_counters"}
IDS = {"id", "msgid", "account_id", "credential_id", "transaction_id", "lot_id", "payload"}


@pytest.fixture(autouse=True)
def general_path(monkeypatch):
    """The general path's statement: the express send (tests/api/test_express_send.py) stays out."""
    monkeypatch.setattr(express_sends, "send_sms", lambda **kwargs: express_sends.NotPlain(by_database=False))


def send_watching(app, api, key) -> tuple[str, list]:
    """Send an SMS; returns its msgid and each statement the cursor executed that writes one
    of the tables a booking writes, with the tables and the compiled cache's verdict."""
    engine = app.extensions["portal.engine"]
    seen = []

    def watch(connection, cursor, statement, parameters, context, executemany):
        tables = set(WRITE.findall(statement)) & BOOKED
        if tables:
            seen.append((tables, context.cache_hit))

    event.listen(engine, "before_cursor_execute", watch)
    try:
        response = api.post("/sms/messages/", data=SMS, headers=key.headers)
    finally:
        event.remove(engine, "before_cursor_execute", watch)
    assert response.status_code == 201, response.text
    return response.json[0]["msgid"], seen


def another_key(app):
    user = make_user(app, email="second@example.com", phone="+819033334444")
    with db_session(app) as session:
        account_id = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
    fund(app, account_id, 1000)
    return new_key(app, account_id, user.id)


def written_by(app, msgid) -> dict:
    """The rows one send wrote or changed, without what differs between two accounts (ids)."""
    with db_session(app) as session:
        message = session.scalars(select(Message).where(Message.msgid == msgid)).one()
        job = session.scalars(select(OutboxMessage).where(  # the very text outbox.enqueue writes
            OutboxMessage.payload == json.dumps({"message_id": message.id}))).one()
        line = session.scalars(select(Transaction).where(Transaction.idempotency_key == f"sms:{msgid}")).one()
        entries = session.scalars(select(Entry).where(Entry.transaction_id == line.id)).all()
        lots = session.scalars(select(Lot).where(Lot.account_id == message.account_id).order_by(Lot.id)).all()
        state = session.get(CreditState, message.account_id)
        counters = session.scalars(select(SpendCounter).where(SpendCounter.scope.in_(
            [f"account:{message.account_id}", f"credential:{message.credential_id}"]))).all()
    return {
        "message": _without_ids(message),
        "job": _without_ids(job),
        "line": _without_ids(line) | {"reason": line.reason.replace(msgid, "…"), "idempotency_key": "…", "request_hash": "…"},
        "entries": [_without_ids(entry) for entry in entries],
        "lots": [(lot.kind, lot.amount, lot.remaining, lot.expires_at) for lot in lots],
        "state": (state.balance, state.held, state.updated_at),
        "counters": sorted((counter.scope.partition(":")[0], counter.period, counter.spent) for counter in counters),
    }


def _without_ids(row) -> dict:
    return {name: value for name, value in row.model_dump().items() if name not in IDS}


def test_an_sms_debit_and_its_riders_are_one_statement_compiled_once(app, api, key):
    _, first = send_watching(app, api, key)
    _, second = send_watching(app, api, key)
    assert [tables for tables, _ in first] == [BOOKED]  # one statement writes all seven tables
    assert [tables for tables, _ in second] == [BOOKED]
    assert second[0][1] is CacheStats.CACHE_HIT  # the composed statement was compiled once


def test_the_one_statement_writes_what_the_statement_by_statement_path_writes(app, api, key, monkeypatch):
    composed, _ = send_watching(app, api, key)
    monkeypatch.setattr(writes, "ONE_STATEMENT", frozenset())  # this database too books statement by statement
    other = another_key(app)
    fallback, statements = send_watching(app, api, other)
    assert len(statements) > 1 and set().union(*(tables for tables, _ in statements)) == BOOKED
    one, several = written_by(app, composed), written_by(app, fallback)
    assert one == several
    assert one["counters"] == [("account", "2026-11-27", 10_000), ("credential", "2026-11", 10_000)]
    assert one["line"]["amount"] == -10_000 and one["message"]["cost"] == 10_000
