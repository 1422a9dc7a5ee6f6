"""Payment webhooks: verify the signature on the raw body, then hand the event to billing.

The signature scheme is Stripe's: a `Stripe-Signature` header `t=<unix time>,v1=<hex>` where
v1 is HMAC-SHA256 of "<t>.<raw body>" under the endpoint secret. Timestamps older (or newer)
than 300 seconds are refused, every configured secret is tried (two during a rotation), and
comparisons are constant-time. The local sandbox signs its events the same way.
"""

import hashlib
import hmac
import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime

from flask import Blueprint, current_app, jsonify, request

from portal import clock, db
from portal.billing import service
from portal.billing.documents import pdf_of

log = logging.getLogger("portal.webhooks")
TOLERANCE_SECONDS = 300
HEX64, DIGITS = re.compile(r"[0-9a-f]{64}"), re.compile(r"[0-9]{1,12}")
bp = Blueprint("webhooks", __name__)

CHECKOUT_EVENTS = {
    "checkout.session.completed", "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed", "checkout.session.expired",
}
PAYMENT_EVENTS = {"charge.refunded", "charge.refund.updated", "charge.dispute.created", "charge.dispute.updated",
                  "charge.dispute.closed", "payment_intent.succeeded", "payment_intent.payment_failed"}


class InvalidSignature(Exception):
    pass


@dataclass(frozen=True)
class Verified:
    id: str
    type: str
    object: dict


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(payload: bytes, header: str | None, secrets: list[str], now: datetime) -> Verified:
    if not header or not secrets:
        raise InvalidSignature("missing signature header" if not header else "no webhook secret configured")
    parts = [item.split("=", 1) for item in header.split(",") if "=" in item]
    timestamps = [value.strip() for key, value in parts if key.strip() == "t"]
    signatures = [value.strip() for key, value in parts if key.strip() == "v1" and HEX64.fullmatch(value.strip())]
    if len(timestamps) != 1 or not DIGITS.fullmatch(timestamps[0]) or not signatures:
        raise InvalidSignature("malformed signature header")
    timestamp = int(timestamps[0])
    if abs(now.timestamp() - timestamp) > TOLERANCE_SECONDS:
        raise InvalidSignature("timestamp outside the tolerance")
    expected = [sign(payload, secret, timestamp).split("v1=", 1)[1] for secret in secrets]
    if not any(hmac.compare_digest(mine, theirs) for mine in expected for theirs in signatures):
        raise InvalidSignature("no signature matches")
    try:
        event = json.loads(payload)
        return Verified(str(event["id"]), str(event["type"]), dict(event["data"]["object"]))
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidSignature("signed body is not an event") from error


def secrets_of(app) -> list[str]:
    return list(app.extensions["portal.webhook_secrets"])


def receive(payload: bytes, header: str | None) -> tuple[dict, int]:
    """Verify and apply one delivery; returns the JSON answer and its status."""
    now = clock.now()
    try:
        event = verify(payload, header, secrets_of(current_app), now)
    except InvalidSignature as error:
        log.warning("webhook refused: %s", error)
        return {"error": "invalid signature"}, 400
    session = db.session()
    if service.seen(session, event_id=event.id):
        return {"received": True, "duplicate": True}, 200
    gateway = current_app.extensions["portal.gateway"]
    try:
        purchase_ref = _purchase_ref(session, gateway, event)
    except LookupError:
        purchase_ref = None
    except Exception as error:
        return _gateway_unavailable(event, error)
    checkout = service.checkout_of(session, purchase_ref=purchase_ref) if purchase_ref else None
    if checkout is None:
        outcome = service.record_unrelated(session=session, event=service.Event(event.id, event.type), now=now)
        log.info("webhook %s (%s) concerns no purchase of ours: %s", event.id, event.type, outcome.result)
        return {"received": True, "result": outcome.result}, 200
    try:
        facts = gateway.fetch(checkout)
    except Exception as error:
        return _gateway_unavailable(event, error)
    outcome = service.apply_facts(session=session, purchase_ref=purchase_ref, facts=facts,
                                  event=service.Event(event.id, event.type), issuer=issuer_of(current_app), now=now)
    log.info("webhook %s (%s) for purchase %s: %s", event.id, event.type, purchase_ref, outcome.result)
    for invoice_id in outcome.new_invoices:  # the worker renders any that fail here
        try:
            pdf_of(session, invoice_id=invoice_id, language="ja", now=now)
        except Exception:
            session.rollback()
            log.exception("rendering the PDF of invoice %s failed; the worker will retry", invoice_id)
    return {"received": True, "result": outcome.result}, 200


def _gateway_unavailable(event: Verified, error: Exception) -> tuple[dict, int]:
    """The gateway could not be asked: nothing was changed and Stripe delivers again later. A
    database error is no gateway's fault: it goes on to the app's handler (503 with Retry-After
    while the database is unavailable, otherwise 500)."""
    if db.is_database_error(error):
        raise error
    log.warning("webhook %s (%s): the gateway could not be asked: %s", event.id, event.type, type(error).__name__)
    return {"error": "payment gateway unavailable; retry later"}, 503


def _purchase_ref(session, gateway, event: Verified) -> str | None:
    obj = event.object
    if event.type in CHECKOUT_EVENTS:
        metadata = obj.get("metadata") or {}
        return metadata.get("purchase") or obj.get("client_reference_id")
    if event.type in PAYMENT_EVENTS:
        intent = obj.get("payment_intent") if obj.get("object") != "payment_intent" else obj.get("id")
        if not intent:
            return None
        return service.purchase_ref_by_payment(session, payment_intent_id=intent) or gateway.purchase_ref_of_payment(intent)
    return None


def issuer_of(app) -> service.Issuer:
    return service.Issuer(app.config["ISSUER_NAME"], app.config["ISSUER_REGISTRATION_NUMBER"])


@bp.post("/webhooks/stripe")
def stripe_webhook():
    body, status = receive(request.get_data(cache=False), request.headers.get("Stripe-Signature"))
    return jsonify(body), status
