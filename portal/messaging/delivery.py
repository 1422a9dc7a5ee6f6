"""The worker's half of sending: hand queued messages and calls to the carrier, move their
status forward, settle or refund their credit exactly once, and post signed status
callbacks through the outbox (retried with back-off until the customer's server answers 2xx).

When the outbox gives up on a send (R12), what happens depends on whether any attempt may have
reached the carrier. Before each hand-over the worker commits `in_doubt_since`; a hand-over
that succeeds, or that the carrier definitely refused before taking it (CarrierRejected,
CarrierUnavailable), clears it again. Anything else (a timeout after the request went out, a
worker killed mid-send) leaves it set. So at the give-up: no doubt → the send failed and its
debit is refunded (a call's hold released) exactly once; doubt → the send is UNKNOWN, keeps
its charge or hold, and the reconcile pass asks the carrier by the idempotency key (the msgid
or callid): taken → the carrier's outcome is kept and charged; never taken → failed and refunded.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import select, update
from sqlmodel import Session

from portal import db, outbox
from portal.credentials.models import Credential
from portal.credentials.service import callback_signing_secrets
from portal.ledger import service as ledger
from portal.ledger.models import Hold, Transaction
from portal.messaging import callbacks, rules, spend
from portal.messaging.api_models import Call, CallbackAttempt, CallStatus, Message, MessageStatus
from portal.messaging.carrier import (Carrier, CarrierRejected, CarrierUnavailable, OutgoingCall, OutgoingSMS,
                                     TestInboxCarrier)

log = logging.getLogger("portal.messaging")
LOGGED_REASON_LENGTH = 200  # a carrier's reason for a failure is logged up to this many characters
UNKNOWN_CALL_HOLD = timedelta(days=30)
"""How long an UNKNOWN call's hold is kept from the expiry sweep: until the reconcile pass (every
five minutes) hears from the carrier, which settles or releases it. A call still unknown after a
month is the operators' (portal sends unknown lists it); then its hold goes, and it costs nothing."""


class StatusBodies(Protocol):
    """What a status callback posts: the API's JSON of the message or the call, passed in by
    the worker (the wire format is the API's)."""

    def message(self, message: Message) -> str: ...

    def call(self, call: Call) -> str: ...


def _carrier_for(mode: str, carrier: Carrier) -> Carrier:
    """Test credentials never reach a real network, whatever carrier is configured."""
    return TestInboxCarrier() if mode == "test" else carrier


def deliver_sms(session: Session, *, message_id: int, carrier: Carrier, bodies: StatusBodies, now: datetime,
                held: outbox.Held | None = None) -> None:
    """Hand a queued message to the carrier: DELIVERING, then DELIVERED (the test inbox
    delivers at once), each status committed with its callback. A refusal fails the message
    and refunds it; any other error leaves it queued for a retry, in doubt unless the carrier
    definitely never took it (CarrierUnavailable). `held` is the outbox job's lease, when a
    worker delivers: only while it holds it may this attempt take its in-doubt mark back.

    The answer is recorded with the account locked and the message read again after the lock
    (as the give-up and the reconcile pass do), so a hand-over that returns late never
    overwrites what they decided. One taken after they failed and refunded the message is
    logged as an error for the operators and left FAIL and refunded: the customer was told
    FAIL by its callback, a charge taken back later could not be relied on to be payable, so
    Chotto bears that send's cost."""
    with db.write(session):
        message = session.get(Message, message_id, populate_existing=True)
        if message is None or message.status != MessageStatus.QUEUED:
            return
        doubt = _begin_doubt(session, Message, message_id, MessageStatus.QUEUED, now)
        account_id, mode = message.account_id, message.mode
        sms = OutgoingSMS(account_id=message.account_id, recipient=message.recipient, sender=message.sender,
                          body=message.body, reference=message.msgid)
    try:
        with db.write(session):
            if session.scalar(select(Message.status).where(Message.id == message_id)) != MessageStatus.QUEUED:
                return  # ended elsewhere since the mark was committed: nothing to hand over
            carrier_ref = _carrier_for(mode, carrier).send_sms(session=session, sms=sms, now=now)
            state, _ = ledger.lock(session, account_id)
            message = session.get(Message, message_id, populate_existing=True)
            if message.status not in (MessageStatus.QUEUED, MessageStatus.UNKNOWN):
                _taken_late("SMS", message.msgid, message.status, carrier_ref)
                return
            message.carrier_ref, message.in_doubt_since = carrier_ref, None
            _set_status(session, message, MessageStatus.DELIVERING, bodies, now)
    except CarrierRejected as rejected:
        fail_sms(session, message_id=message_id, reason=str(rejected), bodies=bodies, now=now)
        return
    except CarrierUnavailable:
        _end_doubt(session, Message, message_id, doubt, held)
        raise
    with db.write(session):
        _set_status(session, message, MessageStatus.DELIVERED, bodies, now)


def _taken_late(what: str, ref: str, status: str, carrier_ref: str) -> None:
    """A hand-over that returned after the send had ended otherwise. Failed and refunded (or
    released) meanwhile: the carrier did send it for free, which the operators must hear of;
    delivered by another worker: the idempotency key made it one send, nothing to tell."""
    if status in (MessageStatus.FAIL, CallStatus.FAILED):
        log.error("%s %s was taken by the carrier (%s) after it had been failed and its charge given back: "
                  "it stays %s, and Chotto bears its cost", what, ref, carrier_ref, status)
    else:
        log.info("%s %s was taken again by the carrier, already %s", what, ref, status)


def _begin_doubt(session: Session, model: type, row_id: int, queued: str, now: datetime) -> datetime | None:
    """Mark the hand-over about to start as possibly reaching the carrier, in the caller's unit
    (committed before the carrier is asked). One conditional UPDATE (compare-and-set): it marks
    a queued row that has no mark yet, and returns this attempt's mark; None when an earlier
    attempt's mark stands, which this attempt may then never take back (that attempt's outcome
    stays unknown until the reconcile pass asks the carrier)."""
    marked = session.execute(update(model).where(model.id == row_id, model.status == queued,
                                                 model.in_doubt_since.is_(None))
                             .values(in_doubt_since=now)).rowcount
    return now if marked == 1 else None


def _end_doubt(session: Session, model: type, row_id: int, doubt: datetime | None,
               held: outbox.Held | None) -> None:
    """The carrier definitely did not take this attempt: its mark goes, but only when this
    attempt set it (`doubt`), the mark is still that one, and the worker still holds the job's
    lease (checked with the job locked, so no other worker can claim it and start an attempt
    that relies on the mark meanwhile). One conditional UPDATE."""
    if doubt is None:
        return
    with db.write(session):
        if held is not None and not outbox.still_held(session, held):
            return
        session.execute(update(model).where(model.id == row_id, model.in_doubt_since == doubt)
                        .values(in_doubt_since=None))


def fail_sms(session: Session, *, message_id: int, reason: str, bodies: StatusBodies, now: datetime) -> None:
    """A definite failure: FAIL and the debit given back, in one transaction (the account
    locked first); decided by `refunded_at`, so a crash in between is repaired by a retry, and
    the journal's key makes a second refund impossible."""
    with db.write(session):
        account_id = session.scalar(select(Message.account_id).where(Message.id == message_id))
        state, _ = ledger.lock(session, account_id)
        message = session.get(Message, message_id, populate_existing=True)
        _fail_sms_in(session, state, message, bodies, now)
    log.info("SMS %s failed at the carrier: %s", message.msgid, reason[:LOGGED_REASON_LENGTH])


def _fail_sms_in(session: Session, state: ledger.State, message: Message, bodies: StatusBodies,
                 now: datetime) -> None:
    """FAIL with its callback and the refund, inside the caller's unit (the account locked,
    the message read after the lock); nothing when it was refunded already."""
    if message.refunded_at is not None or (message.status == MessageStatus.FAIL and not message.cost):
        return
    message.in_doubt_since = None
    if message.status != MessageStatus.FAIL:
        _set_status(session, message, MessageStatus.FAIL, bodies, now)
    if message.cost:
        ledger.reverse_in(session, state, transaction_id=_debit_of(session, message),
                          key=f"refund:sms:{message.msgid}", reason=f"refund of failed SMS {message.msgid}",
                          now=now)
        spend.add(session, spend.keys(account_id=message.account_id, credential_id=message.credential_id,
                                      at=message.created_at), -message.cost)
        message.refunded_at = now


def give_up_sms_in(session: Session, *, message_id: int, bodies: StatusBodies, now: datetime) -> str | None:
    """The outbox gave up on the message's job, inside the give-up's own unit: with no attempt
    in doubt, FAIL and the refund (exactly once: the account locked, then `refunded_at`);
    otherwise UNKNOWN, charged until the reconcile pass hears from the carrier. Each with its
    callback. Returns the status left, or None when the message had moved on meanwhile."""
    account_id = session.scalar(select(Message.account_id).where(Message.id == message_id))
    if account_id is None:
        return None
    state, _ = ledger.lock(session, account_id)
    message = session.get(Message, message_id, populate_existing=True)
    if message.status != MessageStatus.QUEUED:
        return None
    if message.in_doubt_since is None:
        _fail_sms_in(session, state, message, bodies, now)
        log.warning("SMS %s never reached the carrier: failed and refunded", message.msgid)
        return MessageStatus.FAIL
    message.status, message.updated_at = MessageStatus.UNKNOWN, now  # no callback: the wire still says DELIVERING
    log.warning("SMS %s: outcome unknown since %s, held for reconciliation", message.msgid, message.in_doubt_since)
    return MessageStatus.UNKNOWN


def give_up_call_in(session: Session, *, call_id: int, bodies: StatusBodies, now: datetime) -> str | None:
    """As give_up_sms_in, for a call: FAILED and its hold released, or UNKNOWN with its hold kept."""
    account_id = session.scalar(select(Call.account_id).where(Call.id == call_id))
    if account_id is None:
        return None
    state, _ = ledger.lock(session, account_id)
    call = session.get(Call, call_id, populate_existing=True)
    if call.status != CallStatus.QUEUED:
        return None
    if call.in_doubt_since is None:
        _fail_call_in(session, state, call, bodies, now)
        log.warning("call %s never reached the carrier: failed, its hold released", call.callid)
        return CallStatus.FAILED
    call.status = CallStatus.UNKNOWN  # no callback: the wire says IN PROGRESS until the carrier answers
    if call.hold_id:  # the 24-hour expiry sweep must not release it: the call may have taken place
        ledger.keep_hold_in(session, state, hold_id=call.hold_id, until=now + UNKNOWN_CALL_HOLD)
    log.warning("call %s: outcome unknown since %s, held for reconciliation", call.callid, call.in_doubt_since)
    return CallStatus.UNKNOWN


def _fail_call_in(session: Session, state: ledger.State, call: Call, bodies: StatusBodies, now: datetime) -> None:
    """A call that never took place: FAILED with nothing charged, its hold released (the caller
    locked the account and read the call after the lock)."""
    call.status, call.duration, call.cost, call.ended_at, call.in_doubt_since = CallStatus.FAILED, 0, 0, now, None
    if call.hold_id:
        ledger.settle_in(session, state, hold_id=call.hold_id, charged=0, now=now)
        spend.add(session, spend.keys(account_id=call.account_id, credential_id=call.credential_id, at=call.created_at),
                  -_hold_amount(session, call))
    if call.callback_url:
        _queue_callback(session, call.credential_id, call.callback_url, bodies.call(call), now,
                        about=(call.account_id, call.callid, call.status))


def reconcile_sms(session: Session, *, message_id: int, carrier: Carrier, bodies: StatusBodies,
                  now: datetime) -> str | None:
    """Ask the carrier about an UNKNOWN message by its idempotency key (the msgid), then in one
    unit (the account locked first): taken → the carrier's status, the charge kept; never
    taken → FAIL and the refund, exactly once. A carrier that cannot tell now raises
    CarrierCannotTell, and the message stays UNKNOWN for the next pass. The carrier is asked
    between the two units, with no transaction open. Returns the status set, or None."""
    with db.read(session):
        message = session.get(Message, message_id, populate_existing=True)
        if message is None or message.status != MessageStatus.UNKNOWN:
            return None
        account_id, mode, msgid = message.account_id, message.mode, message.msgid
    found = _ask(lambda: _carrier_for(mode, carrier).find_sms(session=session, reference=msgid), msgid)
    with db.write(session):
        state, _ = ledger.lock(session, account_id)
        message = session.get(Message, message_id, populate_existing=True)
        if message.status != MessageStatus.UNKNOWN:
            return None
        if found is None:
            _fail_sms_in(session, state, message, bodies, now)
            log.info("SMS %s was never taken by the carrier: failed and refunded", message.msgid)
            return MessageStatus.FAIL
        handed = message.in_doubt_since or now
        message.carrier_ref, message.in_doubt_since = found.carrier_ref, None
        _set_status(session, message, MessageStatus.DELIVERED if found.delivered else MessageStatus.DELIVERING,
                    bodies, now)
        message.handed_at = handed  # the attempt the carrier took began then
        return message.status


class CarrierCannotTell(Exception):
    """The carrier's status API could not say now whether it took a send: the send stays
    UNKNOWN and is asked about again on the next pass. When the API itself is out of reach
    (`unreachable`: a timeout, a refused connection, the carrier saying it is unavailable)
    the pass stops, as asking about the others would only wait on it again; any other
    failure (an error about this one reference, an answer the adapter cannot read) skips
    this send only, so one such send never holds up the others."""

    @property
    def unreachable(self) -> bool:
        return isinstance(self.__cause__, (OSError, CarrierUnavailable))


def _ask(lookup, ref: str):
    """The carrier's answer to one lookup, asked with no database transaction open (a hanging
    status API must hold no lock or connection's transaction); any failure is CarrierCannotTell."""
    try:
        return lookup()
    except Exception as error:
        raise CarrierCannotTell(ref) from error


def reconcile_call(session: Session, *, call_id: int, carrier: Carrier, bodies: StatusBodies,
                   now: datetime) -> str | None:
    """As reconcile_sms, for a call (by its callid): placed → ANSWERED, its hold settled to the
    started minutes; never placed → FAILED, its hold released."""
    with db.read(session):
        call = session.get(Call, call_id, populate_existing=True)
        if call is None or call.status != CallStatus.UNKNOWN:
            return None
        account_id, mode, callid = call.account_id, call.mode, call.callid
    seconds = _ask(lambda: _carrier_for(mode, carrier).find_call(session=session, reference=callid), callid)
    with db.write(session):
        state, _ = ledger.lock(session, account_id)
        call = session.get(Call, call_id, populate_existing=True)
        if call.status != CallStatus.UNKNOWN:
            return None
        if seconds is None:
            _fail_call_in(session, state, call, bodies, now)
            log.info("call %s was never placed by the carrier: failed, its hold released", call.callid)
            return CallStatus.FAILED
        started = call.in_doubt_since or now
        longest = (_hold_amount(session, call) // call.unit_price) * 60 if call.hold_id else MAX_TEST_CALL_SECONDS
        _end_call(session, state, call, min(seconds, longest), CallStatus.ANSWERED, bodies, now)
        call.started_at = started
        return call.status


@dataclass(frozen=True)
class InDoubt:
    """A message or call the worker gave up on not knowing whether the carrier took it."""

    channel: str  # "sms" or "voice"
    ref: str  # the msgid or callid: the carrier's idempotency key
    account_id: int
    mode: str
    product: str
    created_at: datetime
    in_doubt_since: datetime | None
    amount: int  # milli-yen: the message's charge, the call's hold


def in_doubt(session: Session, *, limit: int = 1000) -> list[InDoubt]:
    """The UNKNOWN messages and calls, oldest first (for the operators and the reconcile pass)."""
    with db.read(session):
        messages = session.execute(select(Message.msgid, Message.account_id, Message.mode, Message.product,
                                          Message.created_at, Message.in_doubt_since, Message.cost)
                                   .where(Message.status == MessageStatus.UNKNOWN)
                                   .order_by(Message.id).limit(limit)).all()
        calls = session.execute(select(Call.callid, Call.account_id, Call.mode, Call.product, Call.created_at,
                                       Call.in_doubt_since, Hold.amount)
                                .outerjoin(Hold, Hold.id == Call.hold_id)
                                .where(Call.status == CallStatus.UNKNOWN).order_by(Call.id).limit(limit)).all()
    rows = [InDoubt("sms", *row[:-1], amount=row[-1]) for row in messages]
    rows += [InDoubt("voice", *row[:-1], amount=row[-1] or 0) for row in calls]
    return sorted(rows, key=lambda row: row.created_at)


def unknown_sends(session: Session, *, limit: int = 500) -> tuple[list[int], list[int]]:
    """The ids of the UNKNOWN messages and calls, oldest first: what the reconcile pass asks about."""
    with db.read(session):
        messages = session.scalars(select(Message.id).where(Message.status == MessageStatus.UNKNOWN)
                                   .order_by(Message.id).limit(limit)).all()
        calls = session.scalars(select(Call.id).where(Call.status == CallStatus.UNKNOWN)
                                .order_by(Call.id).limit(limit)).all()
    return list(messages), list(calls)


def _debit_of(session: Session, message: Message) -> int:
    return session.scalar(select(Transaction.id).where(Transaction.account_id == message.account_id,
                                                       Transaction.idempotency_key == f"sms:{message.msgid}"))


def _set_status(session: Session, message: Message, status: MessageStatus, bodies: StatusBodies,
                now: datetime) -> None:
    message.status, message.updated_at = status, now
    if status == MessageStatus.DELIVERING:
        message.handed_at = now
    if message.callback_url:
        _queue_callback(session, message.credential_id, message.callback_url, bodies.message(message), now,
                        about=(message.account_id, message.msgid, status))


class _EndedElsewhere(Exception):
    """Another worker recorded the end of the call meanwhile: what this one wrote is rolled back."""


def place_call(session: Session, *, call_id: int, carrier: Carrier, bodies: StatusBodies, now: datetime,
               held: outbox.Held | None = None) -> None:
    """Place a queued call, then in one transaction (the account locked first) record how it
    ended and settle its hold to the started minutes. If the worker dies during the call, the
    retry places it again with the same reference (the carrier's idempotency key); until then
    the call is in doubt, unless the carrier definitely never took it (CarrierUnavailable).
    A call that ends while UNKNOWN (the worker gave up on it meanwhile) is settled at once; one
    placed after it was FAILED stays failed and free, logged as an error (as deliver_sms)."""
    with db.write(session):
        call = session.get(Call, call_id, populate_existing=True)
        if call is None or call.status != CallStatus.QUEUED:
            return
        longest = (_hold_amount(session, call) // call.unit_price) * 60 if call.hold_id else MAX_TEST_CALL_SECONDS
        doubt = _begin_doubt(session, Call, call_id, CallStatus.QUEUED, now)
    outgoing = OutgoingCall(account_id=call.account_id, caller=call.caller, recipient=call.recipient,
                            tts_message=call.tts_message, tts_lang=call.tts_lang, recording_url=call.recording_url,
                            reference=call.callid, max_seconds=longest)
    try:
        with db.write(session):
            duration, status = _place(session, _carrier_for(call.mode, carrier), outgoing, now)
            state, _ = ledger.lock(session, call.account_id)
            call = session.get(Call, call_id, populate_existing=True)
            if call.status not in (CallStatus.QUEUED, CallStatus.UNKNOWN):
                raise _EndedElsewhere(call.status)
            _end_call(session, state, call, duration, status, bodies, now)
    except _EndedElsewhere as ended:
        if status == CallStatus.ANSWERED:
            _taken_late("call", outgoing.reference, str(ended), f"{duration} s answered")
    except CarrierUnavailable:
        _end_doubt(session, Call, call_id, doubt, held)
        raise


def _place(session: Session, carrier: Carrier, outgoing: OutgoingCall, now: datetime) -> tuple[int, CallStatus]:
    """The call's answered duration (at most its `max_seconds`) and how it ended. Whatever a
    refusing carrier wrote is undone (a savepoint), as no call took place."""
    try:
        with session.begin_nested():
            duration = carrier.place_call(session=session, call=outgoing, now=now)
    except CarrierRejected:
        return 0, CallStatus.FAILED
    return min(duration, outgoing.max_seconds), CallStatus.ANSWERED


def _end_call(session: Session, state: ledger.State, call: Call, duration: int, status: CallStatus,
              bodies: StatusBodies, now: datetime) -> None:
    """IN PROGRESS then how it ended, each with its callback; the hold settled to the started minutes.
    A hold the expiry sweep released meanwhile (a call ending, or reconciled, more than a day after
    it was queued) stays released, and the call costs what its hold kept: nothing."""
    held = session.get(Hold, call.hold_id, populate_existing=True) if call.hold_id else None
    if held is None:
        charge = 0
    elif held.closed_at is not None:
        charge = held.charged or 0
    else:
        charge = min(rules.call_minutes(duration) * call.unit_price, held.amount)
    call.status, call.started_at, call.in_doubt_since = CallStatus.IN_PROGRESS, now, None
    if call.callback_url:
        _queue_callback(session, call.credential_id, call.callback_url, bodies.call(call), now,
                        about=(call.account_id, call.callid, call.status))
    call.status, call.duration, call.cost, call.ended_at = status, duration, charge, now
    if call.hold_id:
        ledger.settle_in(session, state, hold_id=call.hold_id, charged=charge, now=now)
        spend.add(session, spend.keys(account_id=call.account_id, credential_id=call.credential_id, at=call.created_at),
                  charge - _hold_amount(session, call))  # the limits counted the whole hold
    if call.callback_url:
        _queue_callback(session, call.credential_id, call.callback_url, bodies.call(call), now,
                        about=(call.account_id, call.callid, call.status))


MAX_TEST_CALL_SECONDS = 600


def _hold_amount(session: Session, call: Call) -> int:
    return session.get(Hold, call.hold_id).amount


def _queue_callback(session: Session, credential_id: int | None, url: str, body: str, now: datetime, *,
                    about: tuple[int, str, str]) -> None:
    """A status callback signed with the credential's secrets. A message Chotto sent for the
    account itself (no credential: a balance alert) has no callback URL, and nothing to sign with."""
    if credential_id is None:
        return
    sid = session.get(Credential, credential_id).sid
    account_id, ref, event = about
    outbox.enqueue(session, kind="callback", now=now, payload={
        "url": url, "sid": sid, "body": body, **callback_subject(account_id=account_id, ref=ref, event=event)})


def callback_subject(*, account_id: int, ref: str, event: str) -> dict:
    """What a callback's outbox payload says it is about, so each attempt is recorded with the
    customer's answer (the usage detail view shows them)."""
    return {"account_id": account_id, "ref": ref, "event": str(event)}


def post_callback(payload: dict, *, allow_private: bool, now: datetime) -> None:
    """One POST signed with the credential's callback secrets (read in a short transaction of
    its own, closed before the network is touched), to the address that was checked (private
    addresses only where allowed: by default outside production). Any answer but 2xx, a
    redirect included, raises, so the outbox retries with back-off."""
    with db.job_session() as session, db.read(session):
        secrets = callback_signing_secrets(session=session, sid=payload["sid"], now=now)
    if not secrets:
        raise ValueError("the credential has no callback secret")
    body = payload["body"].encode()
    try:
        status = callbacks.post(payload["url"], body=body, allow_private=allow_private, headers={
            "Content-Type": "application/json", "User-Agent": "Chotto-Callbacks/1",
            "X-Chotto-Signature": callbacks.signature(body, secrets, int(now.timestamp())),
        })
    except Exception as error:
        _record_attempt(payload, None, type(error).__name__, now)
        raise
    _record_attempt(payload, status, None, now)
    if not 200 <= status < 300:
        raise ValueError(f"callback answered {status}")


def _record_attempt(payload: dict, status: int | None, error: str | None, now: datetime) -> None:
    """The answer to one POST, in a unit of its own (callbacks queued before migration 0013
    carry no subject and are not recorded)."""
    if "ref" not in payload:
        return
    with db.job_session() as session, db.write(session):
        session.add(CallbackAttempt(account_id=payload["account_id"], ref=payload["ref"], event=payload["event"],
                                    url=payload["url"], status_code=status, error=error, attempted_at=now))
