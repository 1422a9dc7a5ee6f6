"""The usage history through the real write paths, on both engines: the send paths record what
each message and call was; after any mix of sends, deliveries, failures with their refunds,
calls ending, operator edits and purges, the daily rollup equals the aggregate of the rows
(a seeded model test); the monthly statement equals the ledger's debits net of refunds; and a
callback's answers are recorded for the detail view."""

import os
import random
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select, update

from portal import db
from portal.accounts.models import Membership
from portal.api import wire
from portal.credentials import service as credentials
from portal.credentials.service import Principal
from portal.ledger.models import Transaction
from portal.messaging import delivery
from portal.messaging import service as messaging
from portal.messaging.api_models import Call, CallbackAttempt, Message
from portal.messaging.carrier import CarrierRejected
from portal.outbox import OutboxMessage
from portal.usage import rules, service
from tests.api.conftest import fund
from tests.helpers import make_user
from tests.usage_rows import from_rows, rollup

BODIES = wire.StatusCallbacks("https://portal.chotto.test")


class Carrier:
    """Accepts, or refuses when told to; calls last `seconds`."""

    def __init__(self, *, refuse=False, seconds=0):
        self.refuse, self.seconds = refuse, seconds

    def send_sms(self, *, session, sms, now):
        if self.refuse:
            raise CarrierRejected("no route")
        return f"carrier-{sms.reference}"

    def place_call(self, *, session, call, now):
        if self.refuse:
            raise CarrierRejected("busy")
        return self.seconds


@pytest.fixture
def principals(app, session):
    user = make_user(app, email="paths@example.com")
    account_id = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
    session.commit()
    fund(app, account_id, 10_000)
    made = {}
    for mode in ("live", "test"):
        credential, _ = credentials.create(session=session, account_id=account_id, user_id=user.id, name=mode,
                                           mode=mode, scopes=["sms", "voice", "read"], networks=[], monthly_cap=None,
                                           now=app.config["CLOCK"]())
        made[mode] = Principal(credential.id, credential.sid, account_id, mode, frozenset({"sms", "voice", "read"}),
                               monthly_cap=None, has_purchased=True)
    return made


def send(session, principal, now, *, body="hello", tags=None, callback=None):
    request = messaging.SendSms(recipient="+819012345678", sender="Chotto", message=body, tags=tags,
                                callbackurl=callback)
    messaging.send_sms(session=session, principal=principal, request=request, idempotency_key=None, now=now,
                       render=wire.sms_sent)
    return session.scalar(select(Message).order_by(Message.id.desc()).limit(1))


def start(session, principal, now, tags=None):
    request = messaging.StartCall(caller="0312345678", recipient="+819012345678", tts_message="hello", tts_lang="en",
                                  tags=tags)
    messaging.start_call(session=session, principal=principal, request=request, idempotency_key=None, now=now,
                         render=wire.call_started)
    return session.scalar(select(Call).order_by(Call.id.desc()).limit(1))


def test_the_send_paths_record_the_product_and_the_rollup_follows_every_status(session, principals, clock):
    live = principals["live"]
    message = send(session, live, clock(), body="x" * 200)  # two segments
    assert (message.product, message.otp_site_id, message.segments) == ("sms", None, 2)
    delivery.deliver_sms(session, message_id=message.id, carrier=Carrier(), bodies=BODIES, now=clock())
    failed = send(session, live, clock())
    delivery.deliver_sms(session, message_id=failed.id, carrier=Carrier(refuse=True), bodies=BODIES, now=clock())
    call = start(session, live, clock())
    assert call.product == "voice"
    delivery.place_call(session, call_id=call.id, carrier=Carrier(seconds=61), bodies=BODIES, now=clock())
    session.expire_all()
    assert session.get(Message, message.id).handed_at == clock()
    assert rollup(session) == from_rows(session)
    filters = rules.Filters(start=rules.jst_day(clock()), end=rules.jst_day(clock()))
    totals = service.totals(session, account_id=live.account_id, filters=filters)
    price = session.get(Message, message.id).cost // 2
    assert (totals.count, totals.segments, totals.seconds, totals.minutes) == (3, 3, 61, 2)
    assert totals.cost == 2 * price + session.get(Call, call.id).cost


@pytest.mark.parametrize("durations, minutes", [((61, 30), 3), ((60, 1), 2), ((0, 59), 1)])
def test_a_tag_filter_adds_up_started_minutes_per_call_from_the_base_rows(session, principals, clock, durations,
                                                                          minutes):
    """A tag filter reads the base rows: minutes are started minutes per call, summed as whole
    numbers (SQL's "/" on integers is not the integer division a bill needs)."""
    live = principals["live"]
    for seconds in durations:
        call = start(session, live, clock(), tags="campaign")
        delivery.place_call(session, call_id=call.id, carrier=Carrier(seconds=seconds), bodies=BODIES, now=clock())
    filters = rules.Filters(start=rules.jst_day(clock()), end=rules.jst_day(clock()), tag="campaign")
    totals = service.totals(session, account_id=live.account_id, filters=filters)
    assert (totals.count, totals.seconds, totals.minutes) == (2, sum(durations), minutes)


def test_the_rollup_equals_the_rows_after_any_mix_of_writes(session, principals, clock):
    """A seeded model test: random sends, deliveries, refused deliveries (refunds), calls ending
    or refused, operator edits and purges; the rollup is compared with the rows at checkpoints."""
    seed = int(os.environ.get("USAGE_MODEL_SEED", random.randrange(10**6)))
    print(f"USAGE_MODEL_SEED={seed}")
    chance = random.Random(seed)
    queued_messages, queued_calls = [], []
    for step in range(60):
        now = clock() + timedelta(hours=chance.randrange(0, 24 * 40), seconds=chance.randrange(60))
        principal = principals[chance.choice(("live", "live", "test"))]
        action = chance.choice(("sms", "sms", "deliver", "refuse", "call", "place", "edit", "purge"))
        if action == "sms":
            body = chance.choice(("hi", "y" * 170, "こんにちは" * 20))
            tags = chance.choice((None, "a,b", "キャンペーン"))
            queued_messages.append(send(session, principal, now, body=body, tags=tags).id)
        elif action in ("deliver", "refuse") and queued_messages:
            message_id = queued_messages.pop(chance.randrange(len(queued_messages)))
            delivery.deliver_sms(session, message_id=message_id, carrier=Carrier(refuse=action == "refuse"),
                                 bodies=BODIES, now=now)
        elif action == "call":
            queued_calls.append(start(session, principal, now).id)
        elif action == "place" and queued_calls:
            call_id = queued_calls.pop(chance.randrange(len(queued_calls)))
            delivery.place_call(session, call_id=call_id, carrier=Carrier(refuse=chance.random() < 0.3,
                                                                          seconds=chance.randrange(0, 200)),
                                bodies=BODIES, now=now)
        elif action == "edit":  # an operator's fix in SQL: moves a row to another day and country
            with db.write(session):
                session.execute(update(Message).where(Message.id == session.scalar(select(func.min(Message.id))))
                                .values(created_at=now, country="US"))
        elif action == "purge":
            service.purge(session, now=now + timedelta(days=chance.randrange(380, 420)), batch=3)
            queued_messages = [i for i in queued_messages if session.get(Message, i) is not None]
            queued_calls = [i for i in queued_calls if session.get(Call, i) is not None]
        if step % 10 == 9:
            session.expire_all()
            with db.read(session):
                assert rollup(session) == from_rows(session), f"seed {seed}, step {step}"
    session.expire_all()
    with db.read(session):
        assert rollup(session) == from_rows(session), f"seed {seed}"


def test_a_bulk_delete_and_a_bulk_update_keep_the_rollup_exact(session, principals, clock):
    for n in range(6):
        send(session, principals["live"], clock() + timedelta(days=n))
    with db.write(session):
        session.execute(update(Message).values(status="FAIL", refunded_at=clock()))
    assert rollup(session) == from_rows(session)
    with db.write(session):
        session.execute(delete(OutboxMessage))
        session.execute(delete(Message).where(Message.id % 2 == 0))
    assert rollup(session) == from_rows(session)


def test_the_monthly_statement_equals_the_ledgers_debits_net_of_refunds(session, principals, clock):
    live, test = principals["live"], principals["test"]
    now = clock()  # 27 November, 12:00 in Japan
    delivered = [send(session, live, now + timedelta(minutes=n), body="z" * (70 * n + 1)) for n in range(1, 4)]
    for message in delivered:
        delivery.deliver_sms(session, message_id=message.id, carrier=Carrier(), bodies=BODIES, now=now)
    refused = send(session, live, now)
    delivery.deliver_sms(session, message_id=refused.id, carrier=Carrier(refuse=True), bodies=BODIES, now=now)
    send(session, test, now)
    for seconds in (0, 59, 61, 600):
        call = start(session, live, now)
        delivery.place_call(session, call_id=call.id, carrier=Carrier(seconds=seconds), bodies=BODIES, now=now)
    statement = service.monthly_statement(session, account_id=live.account_id, month=now.date())
    month_start = rules.day_start(statement.start)
    month_end = rules.day_start(statement.end + timedelta(days=1))
    journal = session.execute(select(Transaction.kind, Transaction.idempotency_key, Transaction.amount).where(
        Transaction.account_id == live.account_id, Transaction.occurred_at >= month_start,
        Transaction.occurred_at < month_end)).all()
    usage_lines = [line for line in journal if line.kind in ("debit", "hold", "release")
                   or line.idempotency_key.startswith("refund:sms:")]
    assert statement.amount == -sum(line.amount for line in usage_lines) > 0
    by_product = Counter()
    for line in statement.lines:
        by_product[line.product] += line.count
    assert by_product == {"sms": 4, "voice": 4}  # the test message is not on the statement
    voice = next(line for line in statement.lines if line.product == "voice")
    durations = session.scalars(select(Call.duration)).all()  # a call is cut at what its hold covers
    assert (voice.unit, voice.units) == ("minutes", sum(-(-seconds // 60) for seconds in durations)) and voice.units > 3


def test_each_callback_attempt_is_recorded_with_the_answer(app, session, principals, clock, monkeypatch):
    from portal.messaging import callbacks

    message = send(session, principals["live"], clock(), callback="https://hooks.example.com/sms")
    delivery.deliver_sms(session, message_id=message.id, carrier=Carrier(), bodies=BODIES, now=clock())
    answers = iter([503, 200, 200])
    monkeypatch.setattr(callbacks, "post", lambda url, **kwargs: next(answers))
    monkeypatch.setattr(delivery, "callback_signing_secrets", lambda **kwargs: ["secret"])
    payloads = [job.data() for job in session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "callback")
                                                        .order_by(OutboxMessage.id))]
    session.commit()
    with app.app_context():
        with pytest.raises(ValueError):
            delivery.post_callback(payloads[0], allow_private=False, now=clock())
        for payload in payloads:
            delivery.post_callback(payload, allow_private=False, now=clock() + timedelta(seconds=30))
    session.expire_all()
    attempts = session.scalars(select(CallbackAttempt).order_by(CallbackAttempt.id)).all()
    assert [(a.ref, a.event, a.status_code) for a in attempts] == [
        (message.msgid, "DELIVERING", 503), (message.msgid, "DELIVERING", 200), (message.msgid, "DELIVERED", 200)]
    detail = service.detail(session, account_id=message.account_id, kind="sms", ref=message.msgid, role="billing")
    assert [answer.status_code for answer in detail.callbacks] == [503, 200, 200]
