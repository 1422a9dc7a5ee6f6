"""The one handler of a verified payment event (portal.webhooks verifies the signature and calls
`handle`). Idempotent: a repeated or reordered event changes nothing more (see
service.apply_facts). Receipt PDFs are not rendered here: the worker renders every missing one."""

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import NoReturn

from sqlmodel import Session

from portal import db
from portal.billing import service
from portal.billing.gateway import Gateway

log = logging.getLogger("portal.webhooks")

CHECKOUT_EVENTS = {
    "checkout.session.completed", "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed", "checkout.session.expired",
}
PAYMENT_EVENTS = {"charge.refunded", "charge.refund.updated", "charge.dispute.created", "charge.dispute.updated",
                  "charge.dispute.closed", "payment_intent.succeeded", "payment_intent.payment_failed"}


@dataclass(frozen=True)
class VerifiedEvent:
    id: str
    type: str
    object: dict


@dataclass(frozen=True)
class Handled:
    result: service.Result
    seen_before: bool = False


class GatewayUnreachable(Exception):
    """The gateway could not be asked: nothing was changed, and the sender should deliver again later."""


def handle(*, session: Session, gateway: Gateway, event: VerifiedEvent, issuer: service.Issuer,
           now: datetime) -> Handled:
    if service.seen(session, event_id=event.id):
        return Handled(service.Result.DUPLICATE, seen_before=True)
    try:
        purchase_ref = _purchase_ref(session, gateway, event)
    except LookupError:
        purchase_ref = None
    except Exception as error:
        _unreachable(event, error)
    checkout = service.checkout_of(session, purchase_ref=purchase_ref) if purchase_ref else None
    if checkout is None:
        outcome = service.record_unrelated(session=session, event=service.Event(event.id, event.type), now=now)
        log.info("webhook %s (%s) concerns no purchase of ours: %s", event.id, event.type, outcome.result)
        return Handled(outcome.result)
    try:
        facts = gateway.fetch(checkout)
    except Exception as error:
        _unreachable(event, error)
    outcome = service.apply_facts(session=session, purchase_ref=purchase_ref, facts=facts,
                                  event=service.Event(event.id, event.type), issuer=issuer, now=now)
    log.info("webhook %s (%s) for purchase %s: %s", event.id, event.type, purchase_ref, outcome.result)
    return Handled(outcome.result)


def _unreachable(event: VerifiedEvent, error: Exception) -> NoReturn:
    """Raises GatewayUnreachable, but a database error is no gateway's fault: it goes on as it is
    (to the app's handler: 503 with Retry-After while the database is unavailable, otherwise 500)."""
    if db.is_database_error(error):
        raise error
    log.warning("webhook %s (%s): the gateway could not be asked: %s", event.id, event.type, type(error).__name__)
    raise GatewayUnreachable(event.id) from error


def _purchase_ref(session: Session, gateway: Gateway, event: VerifiedEvent) -> str | None:
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
