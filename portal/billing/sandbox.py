"""The payer's side of the local sandbox gateway: what happens when the person on the sandbox
checkout page pays, is declined, or chooses a konbini voucher and later pays or lets it
lapse. Each step changes the sandbox's record and returns the event Stripe would send; the
caller signs it and hands it to the same webhook code as Stripe's."""

import json
import secrets
from datetime import datetime
from enum import StrEnum

from sqlmodel import Session, select

from portal import db
from portal.billing.gateway import voucher_deadline
from portal.billing.models import CheckoutStatus, IntentStatus, PaymentStatus, SandboxPayment


class Action(StrEnum):
    """What the person on the sandbox checkout page can do."""

    PAY = "pay"
    DECLINE = "decline"
    KONBINI = "konbini"  # choose a convenience-store voucher
    KONBINI_PAID = "konbini_paid"
    KONBINI_EXPIRED = "konbini_expired"


class NotAllowed(Exception):
    """The action does not fit the checkout's present state (for example paying twice)."""


def payment_of(session: Session, *, session_id: str) -> SandboxPayment | None:
    with db.read(session):
        return session.exec(select(SandboxPayment).where(SandboxPayment.session_id == session_id)).first()


def act(*, session: Session, session_id: str, action: str, now: datetime) -> bytes:
    """Apply the payer's `action` and return the JSON body of the resulting event."""
    with db.write(session):
        payment = session.exec(
            select(SandboxPayment).where(SandboxPayment.session_id == session_id).with_for_update()
            .execution_options(populate_existing=True)
        ).first()
        if payment is None or action not in list(Action):
            raise NotAllowed(action)
        return _event(payment, _apply(payment, Action(action), now), now)


def _apply(payment: SandboxPayment, action: Action, now: datetime) -> str:
    """Change the payment as `action` does; returns the type of the event Stripe would send."""
    waiting = payment.status == CheckoutStatus.OPEN
    awaiting_konbini = payment.status == CheckoutStatus.COMPLETE and payment.intent_status == IntentStatus.REQUIRES_ACTION
    if action == Action.PAY and waiting:
        payment.status, payment.payment_status = CheckoutStatus.COMPLETE, PaymentStatus.PAID
        payment.intent_status, payment.method, payment.paid_at = IntentStatus.SUCCEEDED, "card", now
        return "checkout.session.completed"
    if action == Action.DECLINE and waiting:
        payment.status, payment.intent_status, payment.method = CheckoutStatus.EXPIRED, IntentStatus.CANCELED, "card"
        return "checkout.session.expired"
    if action == Action.KONBINI and waiting and payment.konbini_allowed:
        payment.status, payment.intent_status, payment.method = (CheckoutStatus.COMPLETE, IntentStatus.REQUIRES_ACTION,
                                                                 "konbini")
        payment.voucher_expires_at = voucher_deadline(now)
        return "checkout.session.completed"
    if action == Action.KONBINI_PAID and awaiting_konbini:
        payment.payment_status, payment.intent_status, payment.paid_at = PaymentStatus.PAID, IntentStatus.SUCCEEDED, now
        return "checkout.session.async_payment_succeeded"
    if action == Action.KONBINI_EXPIRED and awaiting_konbini:
        payment.intent_status = IntentStatus.CANCELED
        return "checkout.session.async_payment_failed"
    raise NotAllowed(action)


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
