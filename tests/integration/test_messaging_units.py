"""The messaging services commit only through the unit of work: reads never take SQLite's
write lock, a send is one write unit, and a send refused after its debit leaves nothing
behind (no message, no delivery job, no spend counted, no answer stored under its key)."""

from dataclasses import replace

import pytest
from sqlalchemy import event, func, select

from portal.accounts.models import Membership
from portal.api import wire
from portal.credentials import service as credentials
from portal.credentials.service import Principal
from portal.messaging import service as messaging
from portal.messaging.api_models import ApiIdempotency, Message
from portal.messaging.errors import InvalidFields, SpendCapReached
from portal.messaging.spend import SpendCounter
from portal.outbox import OutboxMessage
from tests.api.conftest import YEN, fund
from tests.helpers import make_user

SMS = messaging.SendSms(recipient="+819012345678", sender="Chotto", message="Your code is 1234")


@pytest.fixture
def principal(app, session):
    user = make_user(app, email="dev@example.com")
    account_id = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
    session.commit()
    fund(app, account_id, 100)
    credential, _ = credentials.create(session=session, account_id=account_id, user_id=user.id, name="k", mode="live",
                                       scopes=["sms", "voice", "read"], networks=[], monthly_cap=None,
                                       now=app.config["CLOCK"]())
    return Principal(credential.id, credential.sid, account_id, "live", frozenset({"sms", "voice", "read"}),
                     monthly_cap=None, has_purchased=True)


def begins(app, work) -> list[str]:
    seen = []

    def note(conn, cursor, statement, *args):
        if statement.startswith("BEGIN"):
            seen.append(statement)

    engine = app.extensions["portal.engine"]
    event.listen(engine, "before_cursor_execute", note)
    try:
        work()
    finally:
        event.remove(engine, "before_cursor_execute", note)
    return seen


@pytest.fixture
def sqlite_only(app):
    if app.extensions["portal.engine"].dialect.name != "sqlite":
        pytest.skip("PostgreSQL locks rows, not the database")


def send(session, principal, now, request=SMS, key=None):
    return messaging.send_sms(session=session, principal=principal, request=request, idempotency_key=key, now=now,
                              render=wire.sms_sent)


def test_a_send_is_one_write_unit_and_reading_takes_no_write_lock(app, session, principal, clock, sqlite_only):
    assert begins(app, lambda: send(session, principal, clock())) == ["BEGIN IMMEDIATE"]
    msgid = session.scalar(select(Message.msgid))
    session.commit()
    assert begins(app, lambda: messaging.message_of(session, principal=principal, msgid=msgid)) == ["BEGIN"]
    assert begins(app, lambda: messaging.messages_of(session, principal=principal, date_filters=[],
                                                     now=clock())) == ["BEGIN"]
    assert begins(app, lambda: messaging.call_of(session, principal=principal, callid="0" * 32)) == ["BEGIN"]
    assert begins(app, lambda: messaging.credits_of(session, principal=principal, now=clock())) == ["BEGIN"]


def test_invalid_fields_are_checked_against_the_destinations_without_the_write_lock(app, session, principal, clock,
                                                                                     sqlite_only):
    refused = []

    def attempt():
        try:
            send(session, principal, clock(), messaging.SendSms(recipient="+14155552671", sender="", message="hi"))
        except InvalidFields as invalid:
            refused.append(invalid.errors)

    assert begins(app, attempt) == ["BEGIN"]
    assert list(refused[0]) == ["sender", "recipient"]


def _counts(session) -> tuple:
    counted = tuple(session.scalar(select(func.count()).select_from(table))
                    for table in (Message, OutboxMessage, ApiIdempotency))
    spent = session.scalar(select(func.coalesce(func.sum(SpendCounter.spent), 0)))
    session.commit()
    return counted + (spent,)


def test_a_send_refused_after_its_debit_leaves_nothing_behind(app, session, principal, clock):
    capped = replace(principal, monthly_cap=10 * YEN)
    send(session, capped, clock())
    before = _counts(session)
    with pytest.raises(SpendCapReached):
        send(session, capped, clock(), key="over-the-cap")
    assert _counts(session) == before
    assert send(session, principal, clock(), key="over-the-cap").status == 201  # the key was not used up
