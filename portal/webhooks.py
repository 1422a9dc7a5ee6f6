"""Payment webhooks: verify the signature on the raw body, then hand the event to billing's one
handler (portal.billing.events.handle).

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
from datetime import datetime

from flask import Blueprint, jsonify, request

from portal import clock, db, services
from portal.billing import events

log = logging.getLogger("portal.webhooks")
TOLERANCE_SECONDS = 300
HEX64, DIGITS = re.compile(r"[0-9a-f]{64}"), re.compile(r"[0-9]{1,12}")
bp = Blueprint("webhooks", __name__)


class InvalidSignature(Exception):
    pass


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(payload: bytes, header: str | None, secrets: list[str], now: datetime) -> events.VerifiedEvent:
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
        return events.VerifiedEvent(str(event["id"]), str(event["type"]), dict(event["data"]["object"]))
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidSignature("signed body is not an event") from error


def receive(payload: bytes, header: str | None) -> tuple[dict, int]:
    """Verify one delivery and hand it to billing; returns the JSON answer and its status."""
    now = clock.now()
    try:
        event = verify(payload, header, services.webhook_secrets(), now)
    except InvalidSignature as error:
        log.warning("webhook refused: %s", error)
        return {"error": "invalid signature"}, 400
    try:
        handled = events.handle(session=db.session(), gateway=services.gateway(), event=event,
                                issuer=services.issuer(), now=now)
    except events.GatewayUnreachable:
        return {"error": "payment gateway unavailable; retry later"}, 503
    if handled.seen_before:
        return {"received": True, "duplicate": True}, 200
    return {"received": True, "result": handled.result}, 200


@bp.post("/webhooks/stripe")
def stripe_webhook():
    body, status = receive(request.get_data(cache=False), request.headers.get("Stripe-Signature"))
    return jsonify(body), status
