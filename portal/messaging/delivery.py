"""The worker's half of sending: hand queued messages and calls to the carrier, move their
status forward, settle or refund their credit exactly once, and post signed status
callbacks through the outbox (retried with back-off until the customer's server answers 2xx)."""

import json
import logging
import urllib.request
from datetime import datetime

from flask import current_app
from sqlmodel import Session

from portal import outbox
from portal.credentials.models import Credential
from portal.credentials.service import callback_secret

from portal.ledger import service as ledger
from portal.messaging import rules
from portal.messaging.api_models import Call, Message
from portal.messaging.carrier import CarrierRejected, OutgoingCall, OutgoingSMS, current_carrier
from portal.webhooks import sign

log = logging.getLogger("portal.messaging")
CALLBACK_TIMEOUT = 5


def deliver_sms(session: Session, *, message_id: int, now: datetime) -> None:
    message = session.get(Message, message_id, populate_existing=True)
    if message is None or message.status != "QUEUED":
        session.commit()
        return
    sms = OutgoingSMS(account_id=message.account_id, recipient=message.recipient, sender=message.sender,
                      body=message.body, reference=message.msgid)
    try:
        message.carrier_ref = current_carrier().send_sms(session=session, sms=sms, now=now)
    except CarrierRejected as rejected:
        session.rollback()
        fail_sms(session, message_id=message_id, reason=str(rejected), now=now)
        return
    _set_status(session, message, "DELIVERING", now)
    session.commit()
    _set_status(session, message, "DELIVERED", now)  # the test inbox delivers at once
    session.commit()


def fail_sms(session: Session, *, message_id: int, reason: str, now: datetime) -> None:
    """A definite failure: FAIL, and the debit given back once (the journal key guarantees it)."""
    message = session.get(Message, message_id, populate_existing=True)
    if message.status == "FAIL":
        session.commit()
        return
    _set_status(session, message, "FAIL", now)
    session.commit()
    if message.cost and message.refunded_at is None:
        debit = _debit_of(session, message)
        ledger.reverse(session=session, account_id=message.account_id, transaction_id=debit,
                       key=f"refund:sms:{message.msgid}", reason=f"refund of failed SMS {message.msgid}", now=now)
        message = session.get(Message, message_id, populate_existing=True)
        message.refunded_at = now
        session.commit()
    log.info("SMS %s failed at the carrier: %s", message.msgid, reason[:200])


def _debit_of(session: Session, message: Message) -> int:
    from sqlalchemy import select

    from portal.ledger.models import Transaction

    return session.scalar(select(Transaction.id).where(Transaction.account_id == message.account_id,
                                                       Transaction.idempotency_key == f"sms:{message.msgid}"))


def _set_status(session: Session, message: Message, status: str, now: datetime) -> None:
    from portal.messaging.service import message_json

    message.status, message.updated_at = status, now
    if message.callback_url:
        _queue_callback(session, message.credential_id, message.callback_url,
                        message_json(message, current_app.config["BASE_URL"]), now)


def place_call(session: Session, *, call_id: int, now: datetime) -> None:
    from portal.messaging.service import call_json

    call = session.get(Call, call_id, populate_existing=True)
    if call is None or call.status != "QUEUED":
        session.commit()
        return
    call.status, call.started_at = "IN PROGRESS", now
    if call.callback_url:
        _queue_callback(session, call.credential_id, call.callback_url, call_json(call), now)
    session.commit()
    outgoing = OutgoingCall(account_id=call.account_id, caller=call.caller, recipient=call.recipient,
                            tts_message=call.tts_message, tts_lang=call.tts_lang, recording_url=call.recording_url,
                            reference=call.callid)
    try:
        duration = current_carrier().place_call(session=session, call=outgoing, now=now)
        status = "ANSWERED"
    except CarrierRejected:
        session.rollback()
        call = session.get(Call, call_id, populate_existing=True)
        duration, status = 0, "FAILED"
    minutes = rules.call_minutes(duration)
    charge = min(minutes * call.unit_price, _hold_amount(session, call)) if call.hold_id else 0
    call.status, call.duration, call.cost, call.ended_at = status, duration, charge, now
    if call.callback_url:
        _queue_callback(session, call.credential_id, call.callback_url, call_json(call), now)
    session.commit()
    if call.hold_id:
        ledger.settle(session=session, hold_id=call.hold_id, charged=charge, now=now)


def _hold_amount(session: Session, call: Call) -> int:
    from portal.ledger.models import Hold

    return session.get(Hold, call.hold_id).amount


def _queue_callback(session: Session, credential_id: int, url: str, body: dict, now: datetime) -> None:
    sid = session.get(Credential, credential_id).sid
    outbox.enqueue(session, kind="callback", payload={"url": url, "sid": sid, "body": json.dumps(body)}, now=now)


def post_callback(payload: dict, now: datetime) -> None:
    """One signed POST; any answer but 2xx raises, so the outbox retries with back-off."""
    allow_private = current_app.config["ENV"] != "production" or current_app.config.get("CALLBACK_ALLOW_PRIVATE")
    if not rules.callback_target_allowed(payload["url"], allow_private=bool(allow_private)):
        raise ValueError("callback address is not a public internet address")
    body = payload["body"].encode()
    secret = callback_secret(current_app.config["SECRET_KEY"], payload["sid"])
    request = urllib.request.Request(payload["url"], data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "Chotto-Callbacks/1",
        "X-Chotto-Signature": sign(body, secret, int(now.timestamp())),
    })
    with urllib.request.urlopen(request, timeout=CALLBACK_TIMEOUT) as response:  # noqa: S310 (checked above)
        if not 200 <= response.status < 300:
            raise ValueError(f"callback answered {response.status}")


