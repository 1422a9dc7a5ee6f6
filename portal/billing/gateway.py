"""The payment gateway protocol and its two implementations.

Stripe: a hosted Checkout Session in JPY (card and konbini). The local sandbox: a checkout
page inside the portal, plainly labelled, used only when no Stripe key is configured; it
sends signed events to the same webhook code as Stripe does.

Fulfilment never trusts an event's body or the browser's return: it asks the gateway for
the payment's facts (`fetch`) and applies them.
"""

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Protocol

from sqlmodel import select

from portal import db
from portal.billing.models import (CheckoutStatus, DisputeStatus, GatewayName, IntentStatus, PaymentStatus,
                                   PurchaseStatus, SandboxPayment)

log = logging.getLogger("portal.billing")


@dataclass(frozen=True)
class CheckoutRequest:
    purchase_ref: str
    account_id: int
    amount_yen: int
    tax_yen: int
    tax_rate: int
    total_yen: int
    konbini_allowed: bool
    description: str
    tax_description: str
    customer_email: str
    language: str
    success_url: str
    cancel_url: str


@dataclass(frozen=True)
class Checkout:
    session_id: str
    url: str


@dataclass(frozen=True)
class RefundFact:
    id: str
    amount_yen: int
    created: datetime


@dataclass(frozen=True)
class PaymentFacts:
    """The gateway's present view of one checkout, in our terms."""

    session_id: str
    purchase_ref: str | None
    status: PurchaseStatus
    amount_total: int | None
    currency: str | None
    payment_intent_id: str | None = None
    method: str | None = None
    paid_at: datetime | None = None
    voucher_expires_at: datetime | None = None
    refunds: tuple[RefundFact, ...] = ()
    dispute_id: str | None = None
    dispute_status: DisputeStatus | None = None
    livemode_matches: bool = True  # a test-mode payment never counts for a live-mode portal


class Gateway(Protocol):
    name: GatewayName

    def create_checkout(self, request: CheckoutRequest, *, idempotency_key: str) -> Checkout: ...

    def fetch(self, session_id: str) -> PaymentFacts: ...

    def expire_checkout(self, session_id: str) -> None:
        """Close a checkout nobody may pay any more; one already paid or expired is left as it is."""
        ...

    def purchase_ref_of_payment(self, payment_intent_id: str) -> str | None: ...


def _utc(timestamp: int | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc) if timestamp else None


# -- Stripe ----------------------------------------------------------------------------------

# Stripe's dispute statuses: won/lost close it; warning_closed (an inquiry that never became a
# chargeback) and prevented count as won; everything else (needs_response, under_review,
# warning_*, appeal_*) is open.
_CLOSED_DISPUTE = {"won": DisputeStatus.WON, "lost": DisputeStatus.LOST, "warning_closed": DisputeStatus.WON,
                   "prevented": DisputeStatus.WON}


class StripeGateway:
    name = GatewayName.STRIPE

    def __init__(self, api_key: str, http_client=None):
        import stripe  # not at the top: importing it takes most of a second, which only a portal using Stripe pays

        self.client = stripe.StripeClient(api_key, http_client=http_client, max_network_retries=2)
        self.livemode = api_key.startswith(("sk_live_", "rk_live_"))

    def create_checkout(self, request: CheckoutRequest, *, idempotency_key: str) -> Checkout:
        line_items = [_line(request.amount_yen, request.description)]
        if request.tax_yen:
            line_items.append(_line(request.tax_yen, request.tax_description))
        metadata = {"purchase": request.purchase_ref, "account": str(request.account_id)}
        params = {
            "mode": "payment",
            "currency": "jpy",
            "line_items": line_items,
            "payment_method_types": ["card", "konbini"] if request.konbini_allowed else ["card"],
            "client_reference_id": request.purchase_ref,
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata, "description": request.description},
            "customer_email": request.customer_email,
            "locale": request.language,
            "success_url": request.success_url,
            "cancel_url": request.cancel_url,
        }
        if request.konbini_allowed:
            params["payment_method_options"] = {"konbini": {"expires_after_days": 3}}
        session = self.client.v1.checkout.sessions.create(params, {"idempotency_key": idempotency_key})
        return Checkout(session.id, session.url)

    def expire_checkout(self, session_id: str) -> None:
        import stripe  # loaded already by __init__ (see there)

        try:
            self.client.v1.checkout.sessions.expire(session_id, options={"idempotency_key": f"chotto-expire-{session_id}"})
        except stripe.InvalidRequestError as error:
            # Stripe expires only an open session: one completed (paid, or a konbini voucher
            # issued) or expired meanwhile is reported by its webhooks as usual
            if self.client.v1.checkout.sessions.retrieve(session_id).status == CheckoutStatus.OPEN:
                raise
            log.info("checkout %s was no longer open when its purchase was replaced: %s", session_id, error.user_message)

    def fetch(self, session_id: str) -> PaymentFacts:
        session = self.client.v1.checkout.sessions.retrieve(
            session_id, {"expand": ["payment_intent", "payment_intent.latest_charge"]}
        )
        intent = session.payment_intent
        metadata = session.metadata.to_dict() if session.metadata else {}
        facts = {
            "session_id": session.id, "purchase_ref": metadata.get("purchase"), "amount_total": session.amount_total,
            "currency": session.currency, "livemode_matches": bool(session.livemode) == self.livemode,
        }
        if intent is None or isinstance(intent, str):
            status = PurchaseStatus.EXPIRED if session.status == CheckoutStatus.EXPIRED else PurchaseStatus.OPEN
            return PaymentFacts(status=status, payment_intent_id=intent, **facts)
        charge = intent.latest_charge if not isinstance(intent.latest_charge, str) else None
        method = _method_of(intent, charge)
        voucher = None
        if intent.next_action is not None and getattr(intent.next_action, "konbini_display_details", None):
            voucher = _utc(intent.next_action.konbini_display_details.expires_at)
        status = _status(session.status, session.payment_status, intent.status)
        paid_at = _utc(charge.created) if status == PurchaseStatus.PAID and charge is not None else None
        refunds, dispute = (), (None, None)
        if status == PurchaseStatus.PAID:
            refunds = self._refunds(intent.id)
            dispute = self._dispute(intent.id)
        return PaymentFacts(
            status=status, payment_intent_id=intent.id, method=method, paid_at=paid_at, voucher_expires_at=voucher,
            refunds=refunds, dispute_id=dispute[0], dispute_status=dispute[1], **facts,
        )

    def _refunds(self, payment_intent_id: str) -> tuple[RefundFact, ...]:
        listed = self.client.v1.refunds.list({"payment_intent": payment_intent_id, "limit": 100})
        return tuple(
            RefundFact(refund.id, refund.amount, _utc(refund.created))
            for refund in listed.auto_paging_iter() if refund.status == "succeeded"
        )

    def _dispute(self, payment_intent_id: str) -> tuple[str | None, DisputeStatus | None]:
        listed = self.client.v1.disputes.list({"payment_intent": payment_intent_id, "limit": 10})
        disputes = list(listed.data)
        if not disputes:
            return None, None
        latest = max(disputes, key=lambda d: d.created)
        return latest.id, _CLOSED_DISPUTE.get(latest.status, DisputeStatus.OPEN)

    def purchase_ref_of_payment(self, payment_intent_id: str) -> str | None:
        import stripe  # loaded already by __init__ (see there)

        try:
            intent = self.client.v1.payment_intents.retrieve(payment_intent_id)
        except stripe.InvalidRequestError as error:
            if error.code == "resource_missing":
                raise LookupError(payment_intent_id) from error
            raise
        metadata = intent.metadata.to_dict() if intent.metadata else {}
        return metadata.get("purchase")


def _status(checkout: str, payment: str, intent: str) -> PurchaseStatus:
    """A purchase's status from a Checkout Session's status and payment status and its payment
    intent's status (Stripe's words; the sandbox keeps the same)."""
    if payment == PaymentStatus.PAID or intent == IntentStatus.SUCCEEDED:
        return PurchaseStatus.PAID
    if intent == IntentStatus.REQUIRES_ACTION and checkout == CheckoutStatus.COMPLETE:
        return PurchaseStatus.AWAITING
    if (intent in (IntentStatus.REQUIRES_PAYMENT_METHOD, IntentStatus.CANCELED)
            and checkout in (CheckoutStatus.COMPLETE, CheckoutStatus.EXPIRED)):
        return PurchaseStatus.FAILED
    if checkout == CheckoutStatus.EXPIRED:
        return PurchaseStatus.EXPIRED
    return PurchaseStatus.OPEN


def _line(amount_yen: int, name: str) -> dict:
    return {"quantity": 1, "price_data": {"currency": "jpy", "unit_amount": amount_yen, "product_data": {"name": name}}}


def _method_of(intent, charge) -> str | None:
    if charge is not None and charge.payment_method_details is not None:
        return charge.payment_method_details.type
    types = list(intent.payment_method_types or [])
    return types[0] if len(types) == 1 else None


# -- the local sandbox -------------------------------------------------------------------------

KONBINI_DAYS = 3


class SandboxGateway:
    """Checkout without real money, for development and a first look at the product. Its
    records live in `sandbox_payments`; `portal.billing.sandbox` acts the payer's part."""

    name = GatewayName.SANDBOX

    def __init__(self, session_factory, base_url: str, clock):
        self._session = session_factory
        self._base_url = base_url
        self._clock = clock

    def create_checkout(self, request: CheckoutRequest, *, idempotency_key: str) -> Checkout:
        session = self._session()
        with db.write(session):
            found = session.exec(select(SandboxPayment).where(SandboxPayment.purchase_ref == request.purchase_ref)).first()
            if found is None:
                token = secrets.token_hex(12)
                found = SandboxPayment(
                    session_id=f"cs_sandbox_{token}", payment_intent_id=f"pi_sandbox_{token}",
                    purchase_ref=request.purchase_ref, amount_total=request.total_yen, description=request.description,
                    konbini_allowed=request.konbini_allowed, status=CheckoutStatus.OPEN,
                    payment_status=PaymentStatus.UNPAID, intent_status=IntentStatus.REQUIRES_PAYMENT_METHOD,
                    created_at=self._clock(),
                )
                session.add(found)
        return Checkout(found.session_id, f"{self._base_url}/sandbox/checkout/{found.session_id}")

    def expire_checkout(self, session_id: str) -> None:
        session = self._session()
        with db.write(session):
            found = session.exec(select(SandboxPayment).where(SandboxPayment.session_id == session_id)
                                 .with_for_update().execution_options(populate_existing=True)).first()
            if found is not None and found.status == CheckoutStatus.OPEN:
                found.status = CheckoutStatus.EXPIRED

    def fetch(self, session_id: str) -> PaymentFacts:
        session = self._session()
        with db.read(session):
            found = session.exec(select(SandboxPayment).where(SandboxPayment.session_id == session_id)).first()
        if found is None:
            raise LookupError(session_id)
        return facts_of_sandbox(found)

    def purchase_ref_of_payment(self, payment_intent_id: str) -> str | None:
        session = self._session()
        with db.read(session):
            found = session.exec(select(SandboxPayment).where(SandboxPayment.payment_intent_id == payment_intent_id)).first()
        return found.purchase_ref if found else None


def facts_of_sandbox(payment: SandboxPayment) -> PaymentFacts:
    if payment.payment_status == PaymentStatus.PAID:
        status = PurchaseStatus.PAID
    elif payment.intent_status == IntentStatus.REQUIRES_ACTION:
        status = PurchaseStatus.AWAITING
    elif payment.intent_status == IntentStatus.CANCELED:
        status = PurchaseStatus.FAILED
    elif payment.status == CheckoutStatus.EXPIRED:
        status = PurchaseStatus.EXPIRED
    else:
        status = PurchaseStatus.OPEN
    return PaymentFacts(
        session_id=payment.session_id, purchase_ref=payment.purchase_ref, status=status,
        amount_total=payment.amount_total, currency="jpy", payment_intent_id=payment.payment_intent_id,
        method=payment.method, paid_at=payment.paid_at, voucher_expires_at=payment.voucher_expires_at,
    )


def voucher_deadline(now: datetime) -> datetime:
    return now + timedelta(days=KONBINI_DAYS)
