"""R12: a send the worker gives up on (12 attempts with back-off) is never left queued and
charged. Sent through the real API and delivered by the worker against a carrier that fails
in the ways a real one does, on both engines: every attempt refused before sending → failed
and refunded exactly once (a call: its hold released), with the customer's callback, in the
give-up's own transaction; an attempt whose outcome is unknown → UNKNOWN, still charged, until
the reconcile pass asks the carrier by the idempotency key (taken → kept and charged; never
taken → failed and refunded once). After each: the ledger check passes and the usage rollup
equals its rows."""

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from portal import db, outbox, worker
from portal.accounts.models import User
from portal.api.wire import StatusCallbacks
from portal.ledger import queries
from portal.ledger.check import check
from portal.ledger.models import Hold, Transaction
from portal.messaging import delivery
from portal.messaging.api_models import Call, Message
from portal.messaging.carrier import CarrierRejected, CarrierUnavailable, SentSMS, TestInboxCarrier
from portal.messaging.models import TestInboxMessage
from portal.outbox import MAX_ATTEMPTS, OutboxKind, OutboxMessage
from tests.api.conftest import YEN
from tests.helpers import PageClient, db_session
from tests.usage_rows import from_rows, rollup

CALLBACK = "https://customer.example/status"
SMS = {"recipient": "+819012345678", "sender": "Chotto", "message": "Your parcel is on its way",
       "callbackurl": CALLBACK}
CALL = {"caller": "0312345678", "recipient": "+819012345678", "tts_message": "hello", "tts_lang": "en",
        "callbackurl": CALLBACK}
FUNDS = (1000 + 50) * YEN  # the key's grant and the trial


class Carrier:
    """A carrier that fails each hand-over in the way it is told (`failures`, one per attempt,
    then it takes them): "unavailable" (the request never reached it), "lost" (it went out and
    no answer came: not taken), "taken" (it went out, the carrier took it, the answer was lost),
    "rejected". Lookups answer by the idempotency key, as a real carrier's status API does."""

    def __init__(self, *failures, seconds=61):
        self.failures, self.seconds = list(failures), seconds
        self.messages, self.calls, self.lookups = {}, {}, 0
        self.down = False  # its status API cannot answer
        self.asked_in_transaction = []  # for each lookup: was a database transaction open?
        self.on_lookup = lambda: None

    def _attempt(self, taken: dict, reference: str, value) -> None:
        failure = self.failures.pop(0) if self.failures else None
        if failure == "unavailable":
            raise CarrierUnavailable("connection refused")
        if failure == "rejected":
            raise CarrierRejected("number not in service")
        if failure != "lost":
            taken.setdefault(reference, value)  # the key: a retry never sends twice
        if failure in ("lost", "taken"):
            raise TimeoutError("no answer from the carrier")

    def send_sms(self, *, session, sms, now):
        self._attempt(self.messages, sms.reference, f"carrier-{sms.reference}")
        return self.messages[sms.reference]

    def place_call(self, *, session, call, now):
        self._attempt(self.calls, call.reference, self.seconds)
        return self.calls[call.reference]

    def _lookup(self, session):
        self.lookups += 1
        self.asked_in_transaction.append(session.in_transaction())
        self.on_lookup()

    def find_sms(self, *, session, reference):
        self._lookup(session)
        if self.down:
            raise TimeoutError("status API down")
        return SentSMS(self.messages[reference], delivered=True) if reference in self.messages else None

    def find_call(self, *, session, reference):
        self._lookup(session)
        if self.down:
            raise TimeoutError("status API down")
        return self.calls.get(reference)


def send(app, api, key, carrier):
    app.extensions["portal.carrier"] = carrier
    response = api.post("/sms/messages/", data=SMS, headers=key.headers)
    assert response.status_code == 201
    return response.json[0]["msgid"]


def start(app, api, key, carrier):
    app.extensions["portal.carrier"] = carrier
    response = api.post("/voice/simple/playbacks/", data=CALL, headers=key.headers)
    assert response.status_code == 201
    return response.json[0]["callid"]


def attempts(app, clock, kind, count):
    """Run the worker `count` times, an hour apart (the longest back-off), with only the send's
    job due (callbacks are left queued: they are counted, not posted)."""
    for _ in range(count):
        with db_session(app) as session:
            session.execute(update(OutboxMessage).where(OutboxMessage.kind != kind, OutboxMessage.sent_at.is_(None))
                            .values(available_at=clock() + timedelta(days=365)))
            session.commit()
        worker.drain_once(app)
        clock.advance(hours=1)


def job(app, kind) -> OutboxMessage:
    with db_session(app) as session:
        return session.scalars(select(OutboxMessage).where(OutboxMessage.kind == kind)).one()


def message(app, msgid) -> Message:
    with db_session(app) as session:
        return session.scalars(select(Message).where(Message.msgid == msgid)).one()


def call_of(app, callid) -> Call:
    with db_session(app) as session:
        return session.scalars(select(Call).where(Call.callid == callid)).one()


def available(app, account_id) -> int:
    with db_session(app) as session:
        return queries.summary(session, account_id=account_id, now=app.config["CLOCK"]()).available


def refunds(app) -> int:
    with db_session(app) as session:
        return session.scalar(select(func.count()).select_from(Transaction).where(Transaction.kind == "refund"))


def callbacks(app, ref) -> list[str]:
    """The statuses the customer's callback was queued with, in order."""
    with db_session(app) as session:
        payloads = session.scalars(select(OutboxMessage.payload).where(OutboxMessage.kind == OutboxKind.CALLBACK)
                                   .order_by(OutboxMessage.id))
        return [data["event"] for data in map(json.loads, payloads) if data.get("ref") == ref]


def consistent(app) -> bool:
    """The ledger's invariants hold and the usage rollup equals its rows."""
    with db_session(app) as session:
        problems, _ = check(session, now=app.config["CLOCK"]())
        return problems == [] and rollup(session) == from_rows(session)


def reconcile(app) -> int:
    return worker.reconcile_sends(app)


# -- definite failures ---------------------------------------------------------------------------


def test_attempt_11_is_retried_and_attempt_12_fails_the_sms_and_refunds_it_once(app, api, key, clock):
    carrier = Carrier(*["unavailable"] * MAX_ATTEMPTS)
    msgid = send(app, api, key, carrier)
    attempts(app, clock, OutboxKind.API_SMS, MAX_ATTEMPTS - 1)
    assert job(app, OutboxKind.API_SMS).attempts == 11 and job(app, OutboxKind.API_SMS).failed_at is None
    assert message(app, msgid).status == "QUEUED" and message(app, msgid).in_doubt_since is None
    assert available(app, key.account_id) == FUNDS - 10 * YEN and refunds(app) == 0
    attempts(app, clock, OutboxKind.API_SMS, 1)
    given_up = job(app, OutboxKind.API_SMS)
    assert given_up.attempts == 12 and given_up.failed_at is not None and "message_id" not in given_up.data()
    assert "CarrierUnavailable" in given_up.last_error
    failed = message(app, msgid)
    assert failed.status == "FAIL" and failed.refunded_at is not None and failed.carrier_ref is None
    assert available(app, key.account_id) == FUNDS and refunds(app) == 1
    assert callbacks(app, msgid) == ["FAIL"]
    assert api.get(f"/sms/messages/{msgid}", headers=key.headers).json["status"] == "FAIL"
    assert consistent(app)
    assert carrier.messages == {}  # never sent


def test_giving_up_twice_refunds_once(app, api, key, clock):
    msgid = send(app, api, key, Carrier(*["unavailable"] * MAX_ATTEMPTS))
    attempts(app, clock, OutboxKind.API_SMS, MAX_ATTEMPTS)
    row = job(app, OutboxKind.API_SMS)
    with db_session(app) as session:
        assert outbox.mark_failed_attempt(session, message_id=row.id, lease=row.leased_until, error="again",
                                          now=clock(), on_give_up=worker.give_up) is False  # given up already
        with db.write(session):  # the give-up's step itself, run again
            assert delivery.give_up_sms_in(session, message_id=message(app, msgid).id,
                                           bodies=StatusCallbacks(app.config["BASE_URL"]), now=clock()) is None
        delivery.fail_sms(session, message_id=message(app, msgid).id, reason="a late refusal",
                          bodies=StatusCallbacks(app.config["BASE_URL"]), now=clock())
    assert refunds(app) == 1 and available(app, key.account_id) == FUNDS and callbacks(app, msgid) == ["FAIL"]
    assert consistent(app)


def test_a_call_that_never_reached_the_carrier_fails_and_its_hold_is_released(app, api, key, clock):
    callid = start(app, api, key, Carrier(*["unavailable"] * MAX_ATTEMPTS))
    assert available(app, key.account_id) == FUNDS - 50 * YEN  # the hold
    attempts(app, clock, OutboxKind.API_CALL, MAX_ATTEMPTS - 1)
    assert call_of(app, callid).status == "QUEUED" and available(app, key.account_id) == FUNDS - 50 * YEN
    attempts(app, clock, OutboxKind.API_CALL, 1)
    failed = call_of(app, callid)
    assert (failed.status, failed.cost, failed.duration, failed.started_at) == ("FAILED", 0, 0, None)
    with db_session(app) as session:
        hold = session.get(Hold, failed.hold_id)
        assert hold.closed_at is not None and hold.charged == 0
    assert available(app, key.account_id) == FUNDS and callbacks(app, callid) == ["FAILED"]
    assert api.get(f"/voice/calls/{callid}", headers=key.headers).json["status"] == "FAILED"
    assert consistent(app)


def test_a_refusal_on_any_attempt_still_fails_at_once(app, api, key, clock):
    msgid = send(app, api, key, Carrier("unavailable", "lost", "rejected"))
    attempts(app, clock, OutboxKind.API_SMS, 3)
    assert message(app, msgid).status == "FAIL" and refunds(app) == 1 and job(app, OutboxKind.API_SMS).sent_at
    assert consistent(app)


# -- unknown outcomes ----------------------------------------------------------------------------


def test_an_sms_the_carrier_took_without_answering_is_unknown_until_reconciled_and_stays_charged(
        app, api, key, clock):
    carrier = Carrier("unavailable", "taken", *["unavailable"] * (MAX_ATTEMPTS - 2))
    msgid = send(app, api, key, carrier)
    attempts(app, clock, OutboxKind.API_SMS, MAX_ATTEMPTS)
    held = message(app, msgid)
    assert held.status == "UNKNOWN" and held.in_doubt_since is not None and held.refunded_at is None
    assert available(app, key.account_id) == FUNDS - 10 * YEN and refunds(app) == 0
    assert callbacks(app, msgid) == []  # the wire still reads DELIVERING: no news
    assert api.get(f"/sms/messages/{msgid}", headers=key.headers).json["status"] == "DELIVERING"  # Xoxzo's four
    with db_session(app) as session:
        [listed] = delivery.in_doubt(session)
    assert (listed.channel, listed.ref, listed.amount, listed.account_id) == ("sms", msgid, 10 * YEN, key.account_id)
    assert consistent(app)
    assert reconcile(app) == 1 and carrier.lookups == 1
    settled = message(app, msgid)
    assert (settled.status, settled.carrier_ref, settled.in_doubt_since) == ("DELIVERED", f"carrier-{msgid}", None)
    assert settled.handed_at == held.in_doubt_since and settled.refunded_at is None
    assert available(app, key.account_id) == FUNDS - 10 * YEN and refunds(app) == 0
    assert callbacks(app, msgid) == ["DELIVERED"]
    assert reconcile(app) == 0 and carrier.lookups == 1  # nothing left to ask about
    assert consistent(app)


def test_an_sms_the_carrier_never_took_is_failed_and_refunded_once_by_the_reconcile_pass(app, api, key, clock):
    carrier = Carrier(*["lost"] * MAX_ATTEMPTS)
    msgid = send(app, api, key, carrier)
    attempts(app, clock, OutboxKind.API_SMS, MAX_ATTEMPTS)
    assert message(app, msgid).status == "UNKNOWN" and refunds(app) == 0
    carrier.down = True  # the carrier cannot tell now: asked again on the next pass
    assert reconcile(app) == 0 and message(app, msgid).status == "UNKNOWN"
    carrier.down = False
    assert reconcile(app) == 1
    failed = message(app, msgid)
    assert failed.status == "FAIL" and failed.refunded_at is not None and failed.in_doubt_since is None
    assert available(app, key.account_id) == FUNDS and refunds(app) == 1
    assert callbacks(app, msgid) == ["FAIL"]
    with db_session(app) as session:  # a second report changes nothing
        delivery.fail_sms(session, message_id=failed.id, reason="again", bodies=StatusCallbacks(app.config["BASE_URL"]),
                          now=clock())
    assert reconcile(app) == 0 and refunds(app) == 1 and available(app, key.account_id) == FUNDS
    assert consistent(app)


def test_the_reconcile_pass_stops_at_the_first_send_the_carrier_cannot_tell_about(app, api, key, clock):
    carrier = Carrier(*["lost"] * (3 * MAX_ATTEMPTS))
    sent = [send(app, api, key, carrier) for _ in range(3)]
    attempts(app, clock, OutboxKind.API_SMS, MAX_ATTEMPTS)
    assert [message(app, msgid).status for msgid in sent] == ["UNKNOWN"] * 3
    carrier.down = True
    assert reconcile(app) == 0 and carrier.lookups == 1  # not asked about the other two
    carrier.down = False
    assert reconcile(app) == 3 and carrier.lookups == 4
    assert carrier.asked_in_transaction == [False] * 4  # no transaction open while the carrier is asked
    assert [message(app, msgid).status for msgid in sent] == ["FAIL"] * 3 and refunds(app) == 3 and consistent(app)


def test_the_reconcile_pass_stops_asking_when_its_time_is_up(app, api, key, clock):
    """Each lookup takes 15 s (a slow status API, on a fake timer): a 20-second pass asks about
    two sends, and the third waits for the next pass."""
    carrier = Carrier(*["lost"] * (3 * MAX_ATTEMPTS))
    sent = [send(app, api, key, carrier) for _ in range(3)]
    attempts(app, clock, OutboxKind.API_SMS, MAX_ATTEMPTS)
    assert [message(app, msgid).status for msgid in sent] == ["UNKNOWN"] * 3
    seconds = [0.0]
    carrier.on_lookup = lambda: seconds.__setitem__(0, seconds[0] + 15)
    assert worker.reconcile_sends(app, budget=20, timer=lambda: seconds[0]) == 2
    assert carrier.lookups == 2 and [message(app, msgid).status for msgid in sent] == ["FAIL", "FAIL", "UNKNOWN"]
    assert worker.reconcile_sends(app, budget=20, timer=lambda: seconds[0]) == 1
    assert message(app, sent[2]).status == "FAIL" and available(app, key.account_id) == FUNDS and consistent(app)


def test_a_retry_after_a_lost_answer_is_not_sent_twice(app, api, key, clock):
    """The idempotency key: the second attempt finds what the first handed over."""
    carrier = Carrier("taken")
    msgid = send(app, api, key, carrier)
    attempts(app, clock, OutboxKind.API_SMS, 1)
    assert message(app, msgid).status == "QUEUED" and message(app, msgid).in_doubt_since is not None
    attempts(app, clock, OutboxKind.API_SMS, 1)
    delivered = message(app, msgid)
    assert (delivered.status, delivered.carrier_ref, delivered.in_doubt_since) == ("DELIVERED", f"carrier-{msgid}", None)
    assert list(carrier.messages) == [msgid] and refunds(app) == 0 and consistent(app)


def test_a_call_in_doubt_keeps_its_hold_until_the_carrier_answers(app, api, key, clock):
    carrier = Carrier("taken", *["unavailable"] * (MAX_ATTEMPTS - 1), seconds=61)
    callid = start(app, api, key, carrier)
    attempts(app, clock, OutboxKind.API_CALL, MAX_ATTEMPTS)
    held = call_of(app, callid)
    assert held.status == "UNKNOWN" and held.ended_at is None
    assert api.get(f"/voice/calls/{callid}", headers=key.headers).json["status"] == "IN PROGRESS"  # Xoxzo's
    with db_session(app) as session:
        assert session.get(Hold, held.hold_id).closed_at is None
        [listed] = delivery.in_doubt(session)
    assert (listed.channel, listed.amount) == ("voice", 50 * YEN)
    assert available(app, key.account_id) == FUNDS - 50 * YEN and callbacks(app, callid) == []
    assert consistent(app)
    assert reconcile(app) == 1
    answered = call_of(app, callid)
    assert (answered.status, answered.duration, answered.cost) == ("ANSWERED", 61, 20 * YEN)
    assert answered.started_at == held.in_doubt_since
    assert available(app, key.account_id) == FUNDS - 20 * YEN
    assert callbacks(app, callid) == ["IN PROGRESS", "ANSWERED"]
    assert consistent(app)


def test_a_call_the_carrier_never_placed_is_failed_by_the_reconcile_pass_and_its_hold_released(
        app, api, key, clock):
    callid = start(app, api, key, Carrier(*["lost"] * MAX_ATTEMPTS))
    attempts(app, clock, OutboxKind.API_CALL, MAX_ATTEMPTS)
    assert call_of(app, callid).status == "UNKNOWN"
    assert reconcile(app) == 1
    assert call_of(app, callid).status == "FAILED" and available(app, key.account_id) == FUNDS
    assert callbacks(app, callid) == ["FAILED"] and consistent(app)


def test_an_unknown_calls_hold_outlives_the_expiry_sweep_and_the_call_is_charged_when_reconciled(
        app, api, key, clock):
    """The 24-hour expiry sweep leaves an UNKNOWN call's hold alone: a call the carrier placed,
    reconciled a day later (its status API was down meanwhile), is charged its minutes."""
    from portal.ledger.operator import sweep

    carrier = Carrier(*["taken"] * MAX_ATTEMPTS)
    callid = start(app, api, key, carrier)
    attempts(app, clock, OutboxKind.API_CALL, MAX_ATTEMPTS)
    carrier.down = True
    clock.advance(hours=25)
    sweep(engine=app.extensions["portal.engine"], now=clock())
    assert reconcile(app) == 0 and call_of(app, callid).status == "UNKNOWN"
    with db_session(app) as session:
        assert session.get(Hold, call_of(app, callid).hold_id).closed_at is None
    assert available(app, key.account_id) == FUNDS - 50 * YEN and consistent(app)
    carrier.down = False
    assert reconcile(app) == 1
    answered = call_of(app, callid)
    assert (answered.status, answered.duration, answered.cost) == ("ANSWERED", 61, 20 * YEN)
    assert available(app, key.account_id) == FUNDS - 20 * YEN and consistent(app)


def test_a_call_still_unknown_when_its_kept_hold_runs_out_costs_nothing(app, api, key, clock):
    """After UNKNOWN_CALL_HOLD (a month) the sweep releases the hold after all; a call reconciled
    later still says what the ledger kept: nothing."""
    from portal.ledger.operator import sweep

    carrier = Carrier(*["taken"] * MAX_ATTEMPTS)
    callid = start(app, api, key, carrier)
    attempts(app, clock, OutboxKind.API_CALL, MAX_ATTEMPTS)
    clock.advance(seconds=(delivery.UNKNOWN_CALL_HOLD + timedelta(minutes=1)).total_seconds())
    sweep(engine=app.extensions["portal.engine"], now=clock())
    assert available(app, key.account_id) == FUNDS
    assert reconcile(app) == 1
    answered = call_of(app, callid)
    assert (answered.status, answered.duration, answered.cost) == ("ANSWERED", 61, 0)
    assert available(app, key.account_id) == FUNDS and consistent(app)


def test_an_otp_code_whose_sms_never_reached_the_carrier_is_refunded_and_reported_failed(app, api, key, clock):
    from portal.otp.models import OtpCode
    from tests.api.test_otp import ask, prove, register

    assert register(api, key).status_code == 201
    prove(app, key)
    app.extensions["portal.carrier"] = Carrier(*["unavailable"] * MAX_ATTEMPTS)
    before = available(app, key.account_id)
    assert ask(api, key).status_code == 201
    attempts(app, clock, OutboxKind.API_SMS, MAX_ATTEMPTS)
    with db_session(app) as session:
        code = session.scalars(select(OtpCode)).one()
        sms = session.scalars(select(Message).where(Message.msgid == code.msgid)).one()
    assert (sms.product, sms.status, code.delivery_event) == ("otp", "FAIL", "failed")
    assert available(app, key.account_id) == before and refunds(app) == 1 and consistent(app)


def test_an_otp_code_whose_sms_the_carrier_took_is_reported_delivered_once_reconciled(app, api, key, clock):
    from portal.otp.models import OtpCode
    from tests.api.test_otp import ask, prove, register

    assert register(api, key).status_code == 201
    prove(app, key)
    app.extensions["portal.carrier"] = Carrier(*["taken"] * MAX_ATTEMPTS)
    assert ask(api, key).status_code == 201
    attempts(app, clock, OutboxKind.API_SMS, MAX_ATTEMPTS)
    with db_session(app) as session:
        assert session.scalars(select(OtpCode.delivery_event)).one() is None  # not known yet
    assert reconcile(app) == 1
    with db_session(app) as session:
        code = session.scalars(select(OtpCode)).one()
        sms = session.scalars(select(Message).where(Message.msgid == code.msgid)).one()
    assert (sms.status, code.delivery_event) == ("DELIVERED", "delivered")
    assert refunds(app) == 0 and consistent(app)


# -- what people see -----------------------------------------------------------------------------


def test_operators_list_the_unknown_sends_and_can_reconcile_them_now(app, api, key, clock):
    carrier = Carrier(*["lost"] * MAX_ATTEMPTS)
    msgid = send(app, api, key, carrier)
    attempts(app, clock, OutboxKind.API_SMS, MAX_ATTEMPTS)
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["sends", "unknown"])
    assert listed.exit_code == 0 and msgid in listed.output and "¥10" in listed.output
    assert "1 sends with an unknown outcome" in listed.output
    settled = runner.invoke(args=["sends", "reconcile"])
    assert settled.exit_code == 0 and "1 settled" in settled.output
    assert "0 sends with an unknown outcome" in runner.invoke(args=["sends", "unknown"]).output
    assert message(app, msgid).status == "FAIL" and refunds(app) == 1


@pytest.mark.parametrize(("language", "words"), [("en", "Checking with the carrier"), ("ja", "通信事業者に確認中")])
def test_the_usage_pages_say_the_outcome_is_being_checked(app, api, key, clock, language, words):
    msgid = send(app, api, key, Carrier(*["lost"] * MAX_ATTEMPTS))
    attempts(app, clock, OutboxKind.API_SMS, MAX_ATTEMPTS)
    with db_session(app) as session:
        session.execute(update(User).where(User.id == key.user_id).values(language=language))
        session.commit()
    owner = PageClient(app.test_client(), app)
    owner.login("dev@example.com")
    listing = owner.page("/usage").get_text(" ")
    detail = owner.page(f"/usage/sms/{msgid}").get_text(" ")
    assert words in listing and words in detail
    step = "Outcome unknown" if language == "en" else "結果不明"
    assert step in detail


# -- the test inbox honours the idempotency key --------------------------------------------------


def test_the_test_inbox_records_a_reference_once_and_finds_it(app, session, clock):
    from portal.messaging.carrier import OutgoingCall, OutgoingSMS

    inbox = TestInboxCarrier()
    sms = OutgoingSMS(account_id=None, recipient="+819012345678", sender="Chotto", body="hi", reference="m" * 32)
    first = inbox.send_sms(session=session, sms=sms, now=clock())
    assert inbox.send_sms(session=session, sms=sms, now=clock()) == first
    assert inbox.find_sms(session=session, reference="m" * 32) == SentSMS(first, delivered=True)
    assert inbox.find_sms(session=session, reference="x" * 32) is None
    call = OutgoingCall(account_id=None, caller="0312345678", recipient="+819012345678", tts_message="hello there",
                        tts_lang="en", recording_url=None, reference="c" * 32)
    seconds = inbox.place_call(session=session, call=call, now=clock())
    assert inbox.place_call(session=session, call=call, now=clock()) == seconds == 4
    assert inbox.find_call(session=session, reference="c" * 32) == seconds
    assert inbox.find_call(session=session, reference="m" * 32) is None  # a message is not a call
    assert session.scalar(select(func.count()).select_from(TestInboxMessage)) == 2
    session.rollback()


# -- real parallel workers (PostgreSQL) ------------------------------------------------------------


def _in_app(app, work):
    def run(session, job):
        with app.app_context():
            return work(session, job)
    return run


@pytest.mark.postgresql
def test_sixteen_workers_giving_up_on_one_job_at_once_refund_it_once(app, api, key, clock):
    from tests.integration.test_ledger_concurrency import CLIENTS, parallel

    msgid = send(app, api, key, Carrier())
    row = job(app, OutboxKind.API_SMS)
    lease = clock() + timedelta(minutes=5)
    with db_session(app) as session:
        session.execute(update(OutboxMessage).where(OutboxMessage.id == row.id)
                        .values(attempts=MAX_ATTEMPTS, leased_until=lease))
        session.commit()

    def give_up(session, _):
        return outbox.mark_failed_attempt(session, message_id=row.id, lease=lease, error="TimeoutError()",
                                          now=clock(), on_give_up=worker.give_up)

    outcomes = parallel(app.extensions["portal.engine"], list(range(CLIENTS)), _in_app(app, give_up))
    assert outcomes.count(True) == 1 and outcomes.count(False) == CLIENTS - 1
    assert message(app, msgid).status == "FAIL" and refunds(app) == 1 and available(app, key.account_id) == FUNDS
    assert callbacks(app, msgid) == ["FAIL"] and consistent(app)


@pytest.mark.postgresql
def test_sixteen_give_ups_of_one_message_outside_the_outbox_lock_still_refund_once(app, api, key, clock):
    from tests.integration.test_ledger_concurrency import CLIENTS, parallel

    msgid = send(app, api, key, Carrier())
    message_id = message(app, msgid).id

    def give_up(session, _):
        with db.write(session):
            return delivery.give_up_sms_in(session, message_id=message_id,
                                           bodies=StatusCallbacks(app.config["BASE_URL"]), now=clock())

    outcomes = parallel(app.extensions["portal.engine"], list(range(CLIENTS)), _in_app(app, give_up))
    assert outcomes.count("FAIL") == 1 and outcomes.count(None) == CLIENTS - 1
    assert refunds(app) == 1 and available(app, key.account_id) == FUNDS and callbacks(app, msgid) == ["FAIL"]
    assert consistent(app)


@pytest.mark.postgresql
def test_sixteen_reconcile_passes_at_once_settle_each_send_once(app, api, key, clock):
    from tests.integration.test_ledger_concurrency import CLIENTS, parallel

    carrier = Carrier(*["lost"] * (2 * MAX_ATTEMPTS))
    msgid = send(app, api, key, carrier)
    attempts(app, clock, OutboxKind.API_SMS, MAX_ATTEMPTS)
    callid = start(app, api, key, carrier)
    attempts(app, clock, OutboxKind.API_CALL, MAX_ATTEMPTS)
    carrier.calls[callid] = 61  # the carrier did place the call after all
    assert (message(app, msgid).status, call_of(app, callid).status) == ("UNKNOWN", "UNKNOWN")
    message_id, call_id = message(app, msgid).id, call_of(app, callid).id
    bodies = StatusCallbacks(app.config["BASE_URL"])

    def settle(session, job):
        if job % 2:
            return delivery.reconcile_sms(session, message_id=message_id, carrier=carrier, bodies=bodies, now=clock())
        return delivery.reconcile_call(session, call_id=call_id, carrier=carrier, bodies=bodies, now=clock())

    outcomes = parallel(app.extensions["portal.engine"], list(range(CLIENTS)), _in_app(app, settle))
    assert outcomes.count("FAIL") == 1 and outcomes.count("ANSWERED") == 1 and outcomes.count(None) == CLIENTS - 2
    assert refunds(app) == 1 and available(app, key.account_id) == FUNDS - 20 * YEN
    assert callbacks(app, msgid) == ["FAIL"]
    assert callbacks(app, callid) == ["IN PROGRESS", "ANSWERED"]
    assert consistent(app)


# -- stale workers: a worker whose lease ran out records nothing ---------------------------------


def only_the_job_due(app, clock, kind, *, attempts_made: int) -> OutboxMessage:
    """The send's job, with `attempts_made` attempts behind it and every other job put off."""
    row = job(app, kind)
    with db_session(app) as session:
        session.execute(update(OutboxMessage).where(OutboxMessage.id != row.id)
                        .values(available_at=clock() + timedelta(days=365)))
        session.execute(update(OutboxMessage).where(OutboxMessage.id == row.id).values(attempts=attempts_made))
        session.commit()
    return row


def claim_the_job(app, clock):
    """One worker's claim: the lease it holds (leased_until)."""
    with app.app_context(), db_session(app) as session:
        [claimed] = outbox.claim(session, now=clock(), leases={})
        return claimed.leased_until


def test_a_stale_workers_failure_neither_gives_up_nor_frees_the_job_another_worker_holds(app, api, key, clock):
    msgid = send(app, api, key, Carrier())
    row = only_the_job_due(app, clock, OutboxKind.API_SMS, attempts_made=MAX_ATTEMPTS - 2)
    stale = claim_the_job(app, clock)  # attempt 11
    clock.advance(minutes=6)  # its lease ran out: another worker claims attempt 12
    current = claim_the_job(app, clock)
    with db_session(app) as session:
        assert outbox.mark_failed_attempt(session, message_id=row.id, lease=stale, error="TimeoutError()",
                                          now=clock(), on_give_up=worker.give_up) is False
    held = job(app, OutboxKind.API_SMS)
    assert (held.failed_at, held.last_error, held.leased_until, held.attempts) == (None, None, current, MAX_ATTEMPTS)
    assert message(app, msgid).status == "QUEUED" and refunds(app) == 0
    with db_session(app) as session:  # the worker holding the lease still gives up
        assert outbox.mark_failed_attempt(session, message_id=row.id, lease=current, error="CarrierUnavailable()",
                                          now=clock(), on_give_up=worker.give_up) is True
    assert message(app, msgid).status == "FAIL" and refunds(app) == 1 and consistent(app)


class Handovers:
    """A carrier each of whose hand-overs waits until the test releases it, then ends as told
    ("unavailable": refused before taking it; "taken"; "timeout": taken, the answer lost)."""

    def __init__(self, *outcomes, seconds=61):
        import threading

        self.outcomes, self.seconds, self.started = list(outcomes), seconds, 0
        self.entered = [threading.Event() for _ in outcomes]
        self.release = [threading.Event() for _ in outcomes]
        self.taken, self.lookups = [], 0

    def _handover(self, reference):
        mine = self.started
        self.started += 1
        self.entered[mine].set()
        assert self.release[mine].wait(30)
        if self.outcomes[mine] == "unavailable":
            raise CarrierUnavailable("connection refused")
        self.taken.append(reference)
        if self.outcomes[mine] == "timeout":
            raise TimeoutError("no answer from the carrier")

    def send_sms(self, *, session, sms, now):
        self._handover(sms.reference)
        return f"carrier-{sms.reference}"

    def place_call(self, *, session, call, now):
        self._handover(call.reference)
        return self.seconds

    def find_sms(self, *, session, reference):
        self.lookups += 1
        return SentSMS(f"carrier-{reference}", delivered=True) if reference in self.taken else None

    def find_call(self, *, session, reference):
        self.lookups += 1
        return self.seconds if reference in self.taken else None


def in_thread(app, work):
    import threading

    thread = threading.Thread(target=lambda: _run_in_app(app, work))
    thread.start()
    return thread


def _run_in_app(app, work):
    with app.app_context():
        try:
            work()
        except Exception:  # what a worker's hand-over raised: the test looks at the rows
            pass


@pytest.mark.postgresql
@pytest.mark.parametrize("channel", ["sms", "voice"])
def test_a_stale_worker_refused_by_the_carrier_does_not_give_up_while_the_current_attempt_is_in_flight(
        app, api, key, clock, channel):
    """Two real workers: A's lease runs out mid hand-over and B claims the last attempt; A is
    then refused (CarrierUnavailable) while the carrier takes B's. Nothing is refunded."""
    carrier = Handovers("unavailable", "taken")
    ref = send(app, api, key, carrier) if channel == "sms" else start(app, api, key, carrier)
    kind = OutboxKind.API_SMS if channel == "sms" else OutboxKind.API_CALL
    row = only_the_job_due(app, clock, kind, attempts_made=MAX_ATTEMPTS - 2)
    lease_a = claim_the_job(app, clock)
    a = in_thread(app, lambda: worker._deliver_one(row.id, lease_a))
    assert carrier.entered[0].wait(10)
    clock.advance(minutes=6)
    lease_b = claim_the_job(app, clock)
    b = in_thread(app, lambda: worker._deliver_one(row.id, lease_b))
    assert carrier.entered[1].wait(10)
    carrier.release[0].set()
    a.join(30)
    assert job(app, kind).failed_at is None and refunds(app) == 0
    carrier.release[1].set()
    b.join(30)
    assert carrier.taken == [ref]
    if channel == "sms":
        assert (message(app, ref).status, message(app, ref).refunded_at) == ("DELIVERED", None)
        assert available(app, key.account_id) == FUNDS - 10 * YEN and refunds(app) == 0
    else:
        assert (call_of(app, ref).status, call_of(app, ref).cost) == ("ANSWERED", 20 * YEN)
        assert available(app, key.account_id) == FUNDS - 20 * YEN
    assert job(app, kind).sent_at is not None and consistent(app)


# -- the in-doubt mark: set and taken back only by the attempt that owns it ----------------------


@pytest.mark.parametrize("model", [Message, Call])
def test_only_the_attempt_that_set_the_mark_takes_it_back_and_only_while_it_holds_the_lease(
        app, api, key, clock, model):
    carrier = Carrier()
    ref = send(app, api, key, carrier) if model is Message else start(app, api, key, carrier)
    kind = OutboxKind.API_SMS if model is Message else OutboxKind.API_CALL
    row_id = (message(app, ref) if model is Message else call_of(app, ref)).id
    queued = "QUEUED"

    def mark():
        with db_session(app) as session:
            return session.get(model, row_id).in_doubt_since

    def begin(session):
        with db.write(session):
            return delivery._begin_doubt(session, model, row_id, queued, clock())

    stale = outbox.Held(only_the_job_due(app, clock, kind, attempts_made=0).id, claim_the_job(app, clock))
    with db_session(app) as session:
        first = begin(session)
    clock.advance(minutes=6)
    current = outbox.Held(stale.id, claim_the_job(app, clock))
    with db_session(app) as session:
        assert first is not None and begin(session) is None  # a mark stands: this attempt relies on it
        delivery._end_doubt(session, model, row_id, None, current)  # so it cannot take it back
        assert mark() == first
        delivery._end_doubt(session, model, row_id, first, stale)  # its setter lost the lease
        assert mark() == first
        delivery._end_doubt(session, model, row_id, first, current)  # the setter, holding the lease
        assert mark() is None
        clock.advance(seconds=1)
        second = begin(session)
        delivery._end_doubt(session, model, row_id, first, current)  # an older mark's token
        assert second is not None and mark() == second


@pytest.mark.postgresql
@pytest.mark.parametrize("channel", ["sms", "voice"])
def test_an_older_attempt_refused_by_the_carrier_leaves_the_mark_a_newer_attempt_relied_on(
        app, api, key, clock, channel):
    """Worker A marks the send and waits on the carrier; its lease runs out, B claims the job,
    finds A's mark standing, and the carrier takes B's hand-over without answering; then A is
    refused. A must not take the mark back: the last attempt (refused) gives up as UNKNOWN, and
    the reconcile pass finds the send taken."""
    carrier = Handovers("unavailable", "timeout", "unavailable")
    ref = send(app, api, key, carrier) if channel == "sms" else start(app, api, key, carrier)
    kind = OutboxKind.API_SMS if channel == "sms" else OutboxKind.API_CALL
    row = only_the_job_due(app, clock, kind, attempts_made=MAX_ATTEMPTS - 3)
    lease_a = claim_the_job(app, clock)
    a = in_thread(app, lambda: worker._deliver_one(row.id, lease_a))
    assert carrier.entered[0].wait(10)
    clock.advance(minutes=6)
    lease_b = claim_the_job(app, clock)
    b = in_thread(app, lambda: worker._deliver_one(row.id, lease_b))
    assert carrier.entered[1].wait(10)
    carrier.release[1].set()
    b.join(30)
    carrier.release[0].set()
    a.join(30)
    clock.advance(hours=1)
    carrier.release[2].set()
    assert worker.drain_once(app) == 1  # the last attempt, refused: the give-up
    assert job(app, kind).failed_at is not None and carrier.taken == [ref]
    send_row = message(app, ref) if channel == "sms" else call_of(app, ref)
    assert send_row.status == "UNKNOWN" and refunds(app) == 0
    assert reconcile(app) == 1
    if channel == "sms":
        assert (message(app, ref).status, message(app, ref).refunded_at) == ("DELIVERED", None)
        assert available(app, key.account_id) == FUNDS - 10 * YEN
    else:
        assert (call_of(app, ref).status, call_of(app, ref).cost) == ("ANSWERED", 20 * YEN)
        assert available(app, key.account_id) == FUNDS - 20 * YEN
    assert refunds(app) == 0 and consistent(app)


# -- a hand-over that returns late never overwrites the give-up's or the reconcile pass's outcome --


@pytest.mark.postgresql
@pytest.mark.parametrize("channel", ["sms", "voice"])
def test_a_hand_over_taken_after_the_send_was_failed_and_refunded_leaves_it_failed_and_tells_the_operators(
        app, api, key, clock, channel, caplog):
    """A stale hand-over is in flight while the give-up makes the send UNKNOWN and the reconcile
    pass, asking before the request reached the carrier, fails and refunds it; then the carrier
    takes it. The send stays failed and refunded (its FAIL callback was the last word), and the
    operators get an error; nothing is charged twice or delivered-and-refunded."""
    carrier = Handovers("taken")
    ref = send(app, api, key, carrier) if channel == "sms" else start(app, api, key, carrier)
    row_id = (message(app, ref) if channel == "sms" else call_of(app, ref)).id
    bodies = StatusCallbacks(app.config["BASE_URL"])
    stale = in_thread(app, lambda: _hand_over(app, channel, row_id, carrier, bodies, clock))
    assert carrier.entered[0].wait(10)
    with app.app_context(), db_session(app) as session:
        if channel == "sms":
            with db.write(session):
                assert delivery.give_up_sms_in(session, message_id=row_id, bodies=bodies, now=clock()) == "UNKNOWN"
            assert delivery.reconcile_sms(session, message_id=row_id, carrier=carrier, bodies=bodies,
                                          now=clock()) == "FAIL"
        else:
            with db.write(session):
                assert delivery.give_up_call_in(session, call_id=row_id, bodies=bodies, now=clock()) == "UNKNOWN"
            assert delivery.reconcile_call(session, call_id=row_id, carrier=carrier, bodies=bodies,
                                           now=clock()) == "FAILED"
    carrier.release[0].set()
    stale.join(30)
    assert carrier.taken == [ref]
    if channel == "sms":
        failed = message(app, ref)
        assert (failed.status, failed.carrier_ref) == ("FAIL", None) and failed.refunded_at is not None
        assert refunds(app) == 1 and callbacks(app, ref) == ["FAIL"]
    else:
        failed = call_of(app, ref)
        assert (failed.status, failed.cost) == ("FAILED", 0) and callbacks(app, ref) == ["FAILED"]
    assert available(app, key.account_id) == FUNDS and consistent(app)
    assert any(record.levelname == "ERROR" and ref in record.getMessage() and "Chotto bears its cost"
               in record.getMessage() for record in caplog.records)


@pytest.mark.postgresql
@pytest.mark.parametrize("channel", ["sms", "voice"])
def test_a_hand_over_that_returns_while_the_send_is_unknown_settles_it(app, api, key, clock, channel):
    carrier = Handovers("taken")
    ref = send(app, api, key, carrier) if channel == "sms" else start(app, api, key, carrier)
    row_id = (message(app, ref) if channel == "sms" else call_of(app, ref)).id
    bodies = StatusCallbacks(app.config["BASE_URL"])
    stale = in_thread(app, lambda: _hand_over(app, channel, row_id, carrier, bodies, clock))
    assert carrier.entered[0].wait(10)
    with app.app_context(), db_session(app) as session, db.write(session):
        give_up = delivery.give_up_sms_in if channel == "sms" else delivery.give_up_call_in
        assert give_up(session, **{"message_id" if channel == "sms" else "call_id": row_id}, bodies=bodies,
                       now=clock()) == "UNKNOWN"
    carrier.release[0].set()
    stale.join(30)
    if channel == "sms":
        assert (message(app, ref).status, message(app, ref).in_doubt_since) == ("DELIVERED", None)
        assert callbacks(app, ref) == ["DELIVERING", "DELIVERED"]
        assert available(app, key.account_id) == FUNDS - 10 * YEN
    else:
        assert (call_of(app, ref).status, call_of(app, ref).cost) == ("ANSWERED", 20 * YEN)
        assert available(app, key.account_id) == FUNDS - 20 * YEN
    assert refunds(app) == 0 and reconcile(app) == 0 and consistent(app)


def _hand_over(app, channel, row_id, carrier, bodies, clock):
    with db_session(app) as session:
        if channel == "sms":
            delivery.deliver_sms(session, message_id=row_id, carrier=carrier, bodies=bodies, now=clock())
        else:
            delivery.place_call(session, call_id=row_id, carrier=carrier, bodies=bodies, now=clock())


def test_a_hand_over_ends_well_within_the_jobs_lease(app):
    """The carrier adapter's contract (portal.messaging.carrier.HANDOVER_TIMEOUT): a hand-over
    not answered by then is abandoned as unknown, long before the send job's lease (the
    outbox's default: sends get no shorter one) runs out, so a live worker never loses its lease
    mid hand-over, and a stale one's hand-over is over soon after its lease is."""
    from portal.messaging.carrier import HANDOVER_TIMEOUT

    assert HANDOVER_TIMEOUT * 2 <= outbox.LEASE
    from portal import services

    with app.app_context():
        leases = services.outbox_leases()
    assert outbox.lease_of(OutboxKind.API_SMS, leases) == outbox.lease_of(OutboxKind.API_CALL, leases) == outbox.LEASE


def test_a_send_the_carrier_fails_to_answer_about_is_skipped_and_the_others_are_settled(app, api, key, clock):
    """One reference the status API answers with an error (not a timeout): the pass skips it and
    settles the others, every pass, instead of stopping at it for ever."""
    carrier = Carrier(*["lost"] * (3 * MAX_ATTEMPTS))
    sent = [send(app, api, key, carrier) for _ in range(3)]
    attempts(app, clock, OutboxKind.API_SMS, MAX_ATTEMPTS)
    assert [message(app, msgid).status for msgid in sent] == ["UNKNOWN"] * 3
    poison, original = sent[0], carrier.find_sms

    def find_sms(*, session, reference):
        if reference == poison:
            carrier._lookup(session)
            raise ValueError("the carrier answered 400 about this reference")
        return original(session=session, reference=reference)

    carrier.find_sms = find_sms
    assert worker.reconcile_sends(app) == 2
    assert [message(app, msgid).status for msgid in sent] == ["UNKNOWN", "FAIL", "FAIL"]
    assert refunds(app) == 2 and consistent(app)
    carrier.find_sms = original  # answered on a later pass
    assert worker.reconcile_sends(app) == 1 and message(app, poison).status == "FAIL" and refunds(app) == 3
