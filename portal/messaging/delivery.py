"""The worker's half of sending: hand queued messages and calls to the carrier, move their
status forward, settle or refund their credit exactly once, and post signed status
callbacks through the outbox (retried with back-off until the customer's server answers 2xx)."""

import json
import logging
from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session

from portal import db, outbox
from portal.credentials.models import Credential
from portal.credentials.service import callback_signing_secrets

from portal.ledger import service as ledger
from portal.messaging import callbacks, rules, spend
from portal.messaging.api_models import Call, Message
from portal.messaging.carrier import Carrier, CarrierRejected, OutgoingCall, OutgoingSMS, TestInboxCarrier

log = logging.getLogger("portal.messaging")


def _carrier_for(mode: str, carrier: Carrier) -> Carrier:
    """Test credentials never reach a real network, whatever carrier is configured."""
    return TestInboxCarrier() if mode == "test" else carrier


def deliver_sms(session: Session, *, message_id: int, carrier: Carrier, base_url: str, now: datetime) -> None:
    """`base_url` (PORTAL_BASE_URL) goes into the status callbacks' message URLs."""
    message = session.get(Message, message_id, populate_existing=True)
    if message is None or message.status != "QUEUED":
        session.commit()
        return
    sms = OutgoingSMS(account_id=message.account_id, recipient=message.recipient, sender=message.sender,
                      body=message.body, reference=message.msgid)
    try:
        message.carrier_ref = _carrier_for(message.mode, carrier).send_sms(session=session, sms=sms, now=now)
    except CarrierRejected as rejected:
        session.rollback()
        fail_sms(session, message_id=message_id, reason=str(rejected), base_url=base_url, now=now)
        return
    _set_status(session, message, "DELIVERING", base_url, now)
    session.commit()
    _set_status(session, message, "DELIVERED", base_url, now)  # the test inbox delivers at once
    session.commit()


def fail_sms(session: Session, *, message_id: int, reason: str, base_url: str, now: datetime) -> None:
    """A definite failure: FAIL and the debit given back, in one transaction (the account
    locked first); decided by `refunded_at`, so a crash in between is repaired by a retry, and
    the journal's key makes a second refund impossible."""
    account_id = session.scalar(select(Message.account_id).where(Message.id == message_id))
    state, _ = ledger.lock(session, account_id)
    message = session.get(Message, message_id, populate_existing=True)
    if message.refunded_at is not None or (message.status == "FAIL" and not message.cost):
        session.commit()
        return
    if message.status != "FAIL":
        _set_status(session, message, "FAIL", base_url, now)
    if message.cost:
        ledger.reverse_in(session, state, transaction_id=_debit_of(session, message), key=f"refund:sms:{message.msgid}",
                          reason=f"refund of failed SMS {message.msgid}", now=now)
        spend.add(session, spend.keys(account_id=message.account_id, credential_id=message.credential_id,
                                      at=message.created_at), -message.cost)
        message.refunded_at = now
    session.commit()
    log.info("SMS %s failed at the carrier: %s", message.msgid, reason[:200])


def _debit_of(session: Session, message: Message) -> int:
    from portal.ledger.models import Transaction

    return session.scalar(select(Transaction.id).where(Transaction.account_id == message.account_id,
                                                       Transaction.idempotency_key == f"sms:{message.msgid}"))


def _set_status(session: Session, message: Message, status: str, base_url: str, now: datetime) -> None:
    from portal.messaging.service import message_json

    message.status, message.updated_at = status, now
    if message.callback_url:
        _queue_callback(session, message.credential_id, message.callback_url,
                        message_json(message, base_url), now)


def place_call(session: Session, *, call_id: int, carrier: Carrier, now: datetime) -> None:
    """Place a queued call, then in one transaction (the account locked first) record how it
    ended and settle its hold to the started minutes. If the worker dies during the call, the
    retry places it again with the same reference (the carrier's idempotency key)."""
    from portal.messaging.service import call_json

    call = session.get(Call, call_id, populate_existing=True)
    if call is None or call.status != "QUEUED":
        session.commit()
        return
    session.commit()
    longest = (_hold_amount(session, call) // call.unit_price) * 60 if call.hold_id else MAX_TEST_CALL_SECONDS
    outgoing = OutgoingCall(account_id=call.account_id, caller=call.caller, recipient=call.recipient,
                            tts_message=call.tts_message, tts_lang=call.tts_lang, recording_url=call.recording_url,
                            reference=call.callid, max_seconds=longest)
    try:
        duration, status = min(_carrier_for(call.mode, carrier).place_call(session=session, call=outgoing, now=now), longest), "ANSWERED"
    except CarrierRejected:
        session.rollback()
        duration, status = 0, "FAILED"
    state, _ = ledger.lock(session, call.account_id)
    call = session.get(Call, call_id, populate_existing=True)
    if call.status != "QUEUED":  # another worker finished it meanwhile
        session.rollback()
        return
    charge = min(rules.call_minutes(duration) * call.unit_price, _hold_amount(session, call)) if call.hold_id else 0
    call.status, call.started_at = "IN PROGRESS", now
    if call.callback_url:
        _queue_callback(session, call.credential_id, call.callback_url, call_json(call), now)
    call.status, call.duration, call.cost, call.ended_at = status, duration, charge, now
    if call.hold_id:
        ledger.settle_in(session, state, hold_id=call.hold_id, charged=charge, now=now)
        spend.add(session, spend.keys(account_id=call.account_id, credential_id=call.credential_id, at=call.created_at),
                  charge - _hold_amount(session, call))  # the limits counted the whole hold
    if call.callback_url:
        _queue_callback(session, call.credential_id, call.callback_url, call_json(call), now)
    session.commit()


MAX_TEST_CALL_SECONDS = 600


def _hold_amount(session: Session, call: Call) -> int:
    from portal.ledger.models import Hold

    return session.get(Hold, call.hold_id).amount


def _queue_callback(session: Session, credential_id: int, url: str, body: dict, now: datetime) -> None:
    sid = session.get(Credential, credential_id).sid
    outbox.enqueue(session, kind="callback", payload={"url": url, "sid": sid, "body": json.dumps(body)}, now=now)


def post_callback(payload: dict, *, allow_private: bool, now: datetime) -> None:
    """One POST signed with the credential's callback secrets (read in a short transaction of
    its own, closed before the network is touched), to the address that was checked (private
    addresses only where allowed: by default outside production). Any answer but 2xx, a
    redirect included, raises, so the outbox retries with back-off."""
    with db.job_session() as session:
        secrets = callback_signing_secrets(session=session, sid=payload["sid"], now=now)
    if not secrets:
        raise ValueError("the credential has no callback secret")
    body = payload["body"].encode()
    status = callbacks.post(payload["url"], body=body, allow_private=allow_private, headers={
        "Content-Type": "application/json", "User-Agent": "Chotto-Callbacks/1",
        "X-Chotto-Signature": callbacks.signature(body, secrets, int(now.timestamp())),
    })
    if not 200 <= status < 300:
        raise ValueError(f"callback answered {status}")
