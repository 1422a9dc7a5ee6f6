"""The worker's part: deliver one alert Delivery (portal.worker, OutboxKind.ALERT). The rows are
read in a short unit, the mail server, webhook or carrier is talked to outside any transaction,
and every attempt is recorded in a unit of its own. A delivery already recorded as sent is not
sent again (a worker that died after sending but before the outbox row was marked); one that
died before recording is sent again with the same notice id, so the receiver recognises it."""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from sqlalchemy import select
from sqlmodel import Session

from portal import db, mail
from portal.alerts import rules
from portal.alerts.models import OPTIONAL, AlertSettings, Channel, Delivery, DeliveryStatus, Notice
from portal.ledger import queries
from portal.ledger import service as ledger
from portal.ledger.models import Transaction
from portal.ledger.rules import InsufficientCredit
from portal.messaging import callbacks, segments
from portal.messaging import service as messaging
from portal.messaging.api_models import Message, Product
from portal.messaging.errors import DestinationNotAllowed, DestinationNotPriced, InvalidField
from portal.messaging.rules import phone_number

LAST_ERROR_LENGTH = 2000
NOTICE_HEADER = "X-Chotto-Notice-Id"
SMS_SENDER = "Chotto"  # the sender name of alert SMS
NO_CREDIT, NOT_SENDABLE = rules.NO_CREDIT, rules.NOT_SENDABLE  # how an alert SMS's refusal is recorded


@dataclass(frozen=True)
class Outside:
    """What delivering needs from the app (the worker passes it in)."""

    mailer: mail.Mailer
    base_url: str
    secret: str  # signs the unsubscribe links
    allow_private: bool  # webhooks may reach private addresses (not in production)
    links: Callable[[str, dict], str]  # absolute URL of an endpoint: links(endpoint, values)
    sms_text: Callable[[str, dict], str] | None = None  # sms_text(language, context): the SMS body
    max_attempts: int = 12
    deadline: float = 20.0  # seconds for a whole mail or webhook exchange: shorter than the alerts' lease


def deliver(session: Session, *, delivery_id: int, outside: Outside, now: datetime) -> None:
    with db.read(session):
        delivery = session.get(Delivery, delivery_id)
        notice = session.get(Notice, delivery.notice_id)
        secret = _webhook_secret(session, notice.account_id) if delivery.channel == Channel.WEBHOOK else None
    if delivery.status in (DeliveryStatus.SENT, DeliveryStatus.FAILED):
        return
    try:
        if delivery.channel == Channel.EMAIL:
            summary = queries.summary(session, account_id=notice.account_id, now=now)
            outside.mailer.send(session=session, payload=mail_payload(notice, delivery, summary, outside), now=now,
                                deadline=outside.deadline)
        elif delivery.channel == Channel.WEBHOOK:
            _post(notice, delivery, secret, outside, now)
        elif delivery.channel == Channel.SMS:
            _send_sms(session, notice, delivery, outside, now)  # records its attempt in its own unit
            return
        else:
            raise ValueError(f"unknown channel {delivery.channel!r}")
    except Exception as error:
        session.rollback()
        record(session, delivery_id=delivery_id, error=repr(error), now=now, max_attempts=outside.max_attempts)
        raise
    record(session, delivery_id=delivery_id, error=None, now=now, max_attempts=outside.max_attempts)


def record(session: Session, *, delivery_id: int, error: str | None, now: datetime, max_attempts: int = 12) -> None:
    """One attempt: sent, or failing with its error (failed once the outbox gives up)."""
    with db.write(session):
        _record_in(session, delivery_id, error, now, max_attempts)


def _record_in(session: Session, delivery_id: int, error: str | None, now: datetime, max_attempts: int,
               final: bool = False) -> Delivery:
    delivery = session.get(Delivery, delivery_id, populate_existing=True)
    delivery.attempts += 1
    delivery.last_attempt_at = now
    if error is None:
        delivery.status, delivery.delivered_at = DeliveryStatus.SENT, now
    else:
        delivery.last_error = error[:LAST_ERROR_LENGTH]
        given_up = final or delivery.attempts >= max_attempts
        delivery.status = DeliveryStatus.FAILED if given_up else DeliveryStatus.FAILING
    return delivery


def _webhook_secret(session: Session, account_id: int) -> str | None:
    row = session.get(AlertSettings, account_id)
    return row.webhook_secret if row else None


def webhook_body(notice: Notice) -> bytes:
    data = notice.data()
    return json.dumps({"id": notice.uuid, "type": notice.kind, "account_id": notice.account_id,
                       "created_at": notice.created_at.isoformat(), "data": data},
                      ensure_ascii=False, sort_keys=True).encode()


def _post(notice: Notice, delivery: Delivery, secret: str | None, outside: Outside, now: datetime) -> None:
    """Signed like the API's status callbacks (X-Chotto-Signature: t=…,v1=HMAC-SHA256 of "t.body")."""
    if not secret:
        raise ValueError("the webhook has no signing secret")
    body = webhook_body(notice)
    status = callbacks.post(delivery.recipient, body=body, allow_private=outside.allow_private,
                            deadline=min(callbacks.DEADLINE, outside.deadline), headers={
        "Content-Type": "application/json", "User-Agent": "Chotto-Alerts/1", NOTICE_HEADER: notice.uuid,
        "X-Chotto-Signature": callbacks.signature(body, [secret], int(now.timestamp())),
    })
    if not 200 <= status < 300:
        raise ValueError(f"webhook answered {status}")


def _send_sms(session: Session, notice: Notice, delivery: Delivery, outside: Outside, now: datetime) -> None:
    """Through the API's send path (messaging.service.send_in): the message is recorded in
    sms_messages with no credential (Chotto sends it for the account), debited like any SMS
    under "sms:<msgid>", and queued for the carrier; the messaging worker hands it over and
    refunds it if the carrier fails it. One unit, the account locked, creates the message and
    records the attempt: a delivery that already has its message is never sent again, whatever
    the worker retries. A send the account cannot pay for (or may not send to) is recorded as
    failed, for good: nothing is debited, no debt."""
    if outside.sms_text is None:
        raise RuntimeError("no SMS text template configured for alerts")
    data = notice.data()
    text = outside.sms_text(delivery.language, {"kind": notice.kind, "balance": data.get("balance", 0),
                                                "thresholds": data.get("thresholds", []),
                                                "amount": data.get("amount", 0), "percent": data.get("percent"),
                                                "line_limit": data.get("limit", 0)})
    with db.write(session):
        state, lots = ledger.lock(session, notice.account_id)
        row = session.get(Delivery, delivery.id, populate_existing=True)
        if row.message_id is not None or row.status in (DeliveryStatus.SENT, DeliveryStatus.FAILED):
            return
        if _gave_back_legacy_debit(session, state, notice, row, now):
            state, lots = ledger.lock(session, notice.account_id)  # the lots as the refund left them
        principal = messaging.chotto_principal(session, account_id=notice.account_id)
        try:
            with session.begin_nested():  # a refusal leaves nothing behind but the attempt's record
                number = phone_number("recipient", row.recipient)
                sent = messaging.send_in(session, principal, state, lots, number=number, sender=SMS_SENDER, body=text,
                                         split=segments.split(text), product=Product.SMS, now=now)
        except InsufficientCredit as short:
            _record_in(session, row.id, f"{NO_CREDIT}: the SMS costs {short.needed} milli-yen, "
                                        f"{short.available} available", now, outside.max_attempts, final=True)
            return
        except (DestinationNotAllowed, DestinationNotPriced, InvalidField) as refused:
            _record_in(session, row.id, f"{NOT_SENDABLE}: {refused}", now, outside.max_attempts, final=True)
            return
        row.message_id = session.scalar(select(Message.id).where(Message.msgid == sent.msgid))
        _record_in(session, row.id, None, now, outside.max_attempts)


def _gave_back_legacy_debit(session: Session, state: ledger.State, notice: Notice, delivery: Delivery,
                            now: datetime) -> bool:
    """Before alert SMS went through the send path (migration 0012), a delivery was debited
    under "alert-sms:<notice>:<delivery>" and then handed to the carrier; one still failing
    then kept its debit. Give it back once, so the send path's own debit is the only charge."""
    key = f"alert-sms:{notice.uuid}:{delivery.id}"
    debit = session.scalar(select(Transaction.id).where(Transaction.account_id == notice.account_id,
                                                       Transaction.idempotency_key == key))
    if debit is None or session.scalar(select(Transaction.id).where(
            Transaction.account_id == notice.account_id, Transaction.idempotency_key == f"refund:{key}")) is not None:
        return False
    ledger.reverse_in(session, state, transaction_id=debit, key=f"refund:{key}",
                      reason=f"refund of alert SMS {notice.uuid}, sent again through the send path", now=now)
    return True


def mail_payload(notice: Notice, delivery: Delivery, summary: queries.Summary, outside: Outside) -> dict:
    data = notice.data()
    unsubscribe_url = None
    if notice.kind in OPTIONAL:
        token = rules.unsubscribe_token(outside.secret, notice.account_id, delivery.recipient, OPTIONAL[notice.kind])
        unsubscribe_url = outside.links("alerts_unsubscribe.unsubscribe", {"token": token})
    next_expiry = summary.next_expiry
    context = {
        "kind": notice.kind, "data": data, "notice_id": notice.uuid,
        "balance": summary.available, "thresholds": data.get("thresholds", []),
        "next_expiry": next_expiry.expires_at if next_expiry else None,
        "next_expiry_amount": queries.expiring_on(summary.live_lots, next_expiry) if next_expiry else 0,
        "forecast": summary.forecast,
        "lot_amount": data.get("amount"),
        "lot_expires_at": datetime.fromisoformat(data["expires_at"]) if "expires_at" in data else None,
        "percent": data.get("percent"), "line_limit": data.get("limit"), "line_used": data.get("used"),
        "buy_url": outside.links("billing.buy", {}), "unsubscribe_url": unsubscribe_url,
    }
    headers = {NOTICE_HEADER: notice.uuid}
    if unsubscribe_url is not None:  # RFC 8058 one-click: the provider POSTs "List-Unsubscribe=One-Click" to it
        headers |= {"List-Unsubscribe": f"<{unsubscribe_url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    return {"to": delivery.recipient, **mail.render("alert", delivery.language, context), "headers": headers}
