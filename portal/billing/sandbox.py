"""The payer's side of the local sandbox gateway: what happens when the person on the sandbox
checkout page pays, is declined, or chooses a konbini voucher and later pays or lets it
lapse. Each step changes the sandbox's record and returns the event Stripe would send; the
caller signs it and hands it to the same webhook code as Stripe's."""

import json
import secrets
from datetime import datetime

from sqlmodel import Session, select

from portal.billing.gateway import voucher_deadline
from portal.billing.models import SandboxPayment

ACTIONS = ("pay", "decline", "konbini", "konbini_paid", "konbini_expired")


class NotAllowed(Exception):
    """The action does not fit the checkout's present state (for example paying twice)."""


def payment_of(session: Session, *, session_id: str) -> SandboxPayment | None:
    found = session.exec(select(SandboxPayment).where(SandboxPayment.session_id == session_id)).first()
    session.commit()
    return found


def act(*, session: Session, session_id: str, action: str, now: datetime) -> bytes:
    """Apply the payer's `action` and return the JSON body of the resulting event."""
    payment = session.exec(
        select(SandboxPayment).where(SandboxPayment.session_id == session_id).with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if payment is None or action not in ACTIONS:
        session.rollback()
        raise NotAllowed(action)
    waiting = payment.status == "open"
    awaiting_konbini = payment.status == "complete" and payment.intent_status == "requires_action"
    if action == "pay" and waiting:
        payment.status, payment.payment_status, payment.intent_status = "complete", "paid", "succeeded"
        payment.method, payment.paid_at = "card", now
        event_type = "checkout.session.completed"
    elif action == "decline" and waiting:
        payment.status, payment.intent_status, payment.method = "expired", "canceled", "card"
        event_type = "checkout.session.expired"
    elif action == "konbini" and waiting and payment.konbini_allowed:
        payment.status, payment.intent_status, payment.method = "complete", "requires_action", "konbini"
        payment.voucher_expires_at = voucher_deadline(now)
        event_type = "checkout.session.completed"
    elif action == "konbini_paid" and awaiting_konbini:
        payment.payment_status, payment.intent_status, payment.paid_at = "paid", "succeeded", now
        event_type = "checkout.session.async_payment_succeeded"
    elif action == "konbini_expired" and awaiting_konbini:
        payment.intent_status = "canceled"
        event_type = "checkout.session.async_payment_failed"
    else:
        session.rollback()
        raise NotAllowed(action)
    event = _event(payment, event_type, now)
    session.commit()
    return event


def _event(payment: SandboxPayment, event_type: str, now: datetime) -> bytes:
    obj = {
        "id": payment.session_id, "object": "checkout.session", "client_reference_id": payment.purchase_ref,
        "metadata": {"purchase": payment.purchase_ref}, "payment_intent": payment.payment_intent_id,
        "status": payment.status, "payment_status": payment.payment_status, "amount_total": payment.amount_total,
        "currency": "jpy",
    }
    event = {"id": f"evt_sandbox_{secrets.token_hex(12)}", "object": "event", "type": event_type,
             "created": int(now.timestamp()), "livemode": False, "data": {"object": obj}}
    return json.dumps(event).encode()
