"""Billing services: the billing profile, starting a purchase, and fulfilment — applying what
the gateway says about a payment to the purchase, the ledger and the invoices, in one
transaction that locks the account's credit row first (so deliveries of the same or related
events, in any order and at the same time, are applied one after the other)."""

import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from portal import db, mail
from portal.accounts.models import Account, TaxResidency
from portal.billing import invoices, rules
from portal.billing.gateway import CheckoutRequest, Gateway, PaymentFacts
from portal.billing.models import (EVENT_SEEN, INTENT_RECORDED, OPEN_PURCHASE_EXISTS, BillingProfile, DisputeStatus,
                                   PaymentRefund, Purchase, PurchaseIntent, PurchaseStatus, WebhookEvent)
from portal.formats import postal_address
from portal.ledger import rules as ledger_rules
from portal.ledger import service as ledger
from portal.ledger.models import Lot

log = logging.getLogger("portal.billing")


class NoBillingProfile(Exception):
    """A purchase needs the billing profile first (invoices are addressed from it)."""


class GatewayUnavailable(Exception):
    """The payment service did not answer; the purchase is marked failed and nothing was charged."""


@dataclass(frozen=True)
class Issuer:
    name: str
    registration_number: str


# -- billing profile ----------------------------------------------------------------------------


def profile_of(session: Session, *, account_id: int) -> BillingProfile | None:
    with db.read(session):
        return session.get(BillingProfile, account_id)


def save_profile(
    *, session: Session, account_id: int, legal_name: str, postal_code: str, address: str, billing_email: str,
    residency: str, registration_number: str | None, now: datetime,
) -> BillingProfile:
    if residency not in list(TaxResidency):
        raise ValueError("residency must be JP or overseas")
    if registration_number and not rules.valid_registration_number(registration_number):
        raise ValueError("invalid registration number")
    with db.write(session):
        profile = session.get(BillingProfile, account_id) or BillingProfile(account_id=account_id)
        profile.legal_name, profile.postal_code, profile.address = legal_name, postal_code, address
        profile.billing_email, profile.registration_number = billing_email, registration_number or None
        profile.updated_at = now
        session.add(profile)
        account = session.get(Account, account_id)
        account.tax_residency = TaxResidency(residency)
    return profile


def residency_of(session: Session, *, account_id: int) -> TaxResidency:
    return session.get(Account, account_id).tax_residency


# -- buying ---------------------------------------------------------------------------------------


def quote_for(session: Session, *, account_id: int, amount_yen: int, minimum: int) -> rules.Quote:
    """The quote for `amount_yen` of credit at the account's tax residency (or AmountError)."""
    with db.read(session):
        residency = residency_of(session, account_id=account_id)
    return rules.quote(amount_yen=amount_yen, residency=residency, minimum=minimum)


class IntentUsed(Exception):
    """The confirmation form was submitted before and led to `purchase`, which cannot be
    continued: it is paid, awaits a konbini payment, failed, was replaced, or is stale. No
    second checkout is opened for the same form; a new confirmation is a new intent."""

    def __init__(self, purchase: Purchase):
        super().__init__(purchase.public_id)
        self.purchase = purchase


INTENT = re.compile(r"[A-Za-z0-9_-]{1,64}")  # new_intent() makes 32 of these


def new_intent() -> str:
    """A purchase intent's one-time token (start_purchase's `intent`), made when the customer
    picks an amount and carried in the confirmation screen's address and form."""
    return secrets.token_urlsafe(24)


def valid_intent(intent: str | None) -> bool:
    return bool(intent) and INTENT.fullmatch(intent) is not None


def purchase_of_intent(session: Session, *, account_id: int, intent: str) -> Purchase | None:
    """The purchase an intent led to, if it was confirmed already."""
    with db.read(session):
        return _purchase_of_intent(session, account_id=account_id, intent=intent)


def start_purchase(
    *, session: Session, gateway: Gateway, account_id: int, user_id: int, amount_yen: int, minimum: int,
    language: str, line_items: Callable[[int, int, str], tuple[str, str]], base_url: str, now: datetime,
    intent: str | None = None,
) -> Purchase:
    """Record the confirmed quote, open a checkout at the gateway, and return the purchase
    with the checkout's address. Two short units of work around the gateway call, so no lock
    is held while the network is slow; the gateway call is keyed by the purchase, so a retry
    can never open a second checkout for it. `line_items(amount_yen, tax_rate, language)` words
    the credit and tax lines the gateway shows (the faces render them in the customer's language).

    `intent` is the confirmation form's one-time token (new_intent): the same form submitted
    again (a double submit, the browser's back button after paying) finds the purchase it led to
    and returns it while it can still be paid, or raises IntentUsed; it never opens a second
    checkout. Confirming a quote again with a new form returns the account's open purchase of
    that quote, with its checkout or, while another request is still opening it, without one;
    nothing new is recorded or asked of the gateway. The account row is locked while both are
    looked for, and unique indexes allow one open purchase per quote and one purchase per token.

    An open purchase that can no longer be continued (stale, or addressed differently now) is
    replaced: its Checkout Session is expired at the gateway before the new one is opened, so
    the old tab cannot be paid; a payment that reached it first is still credited by its
    webhook (fulfilment matches a payment to the purchase of its own session, whatever came
    after)."""
    try:
        with db.write(session):
            recorded = _record_quote(
                session, account_id=account_id, user_id=user_id, amount_yen=amount_yen, minimum=minimum,
                language=language, gateway=gateway.name, intent=intent, now=now)
    except IntegrityError as error:
        if db.violated_constraint(error) not in (OPEN_PURCHASE_EXISTS, INTENT_RECORDED):
            raise
        with db.read(session):  # recorded by another request at this very moment
            purchase = (_purchase_of_intent(session, account_id=account_id, intent=intent) if intent else None) \
                or _open_purchase(session, account_id=account_id, amount_yen=amount_yen)
        if purchase is None:
            raise
        if purchase.status != PurchaseStatus.OPEN:
            raise IntentUsed(purchase) from error
        recorded = _Recorded(purchase, None, None, new=False)
    purchase = recorded.purchase
    if recorded.replaced_checkout:
        _expire_checkout(gateway, recorded.replaced_checkout)
    if not recorded.new:
        log.info("purchase %s confirmed again: the open one is returned", purchase.public_id)
        return purchase
    quote, profile = recorded.quote, recorded.profile
    description, tax_description = line_items(quote.amount_yen, quote.tax_rate, language)
    page = f"{base_url}/credit/purchases/{purchase.public_id}"
    request = CheckoutRequest(
        purchase_ref=purchase.public_id, account_id=account_id, amount_yen=quote.amount_yen, tax_yen=quote.tax_yen,
        tax_rate=quote.tax_rate, total_yen=quote.total_yen, konbini_allowed=quote.konbini_allowed,
        description=description, tax_description=tax_description, customer_email=profile.billing_email,
        language=language, success_url=page + "?returned=1", cancel_url=page + "?canceled=1",
    )
    try:
        checkout = gateway.create_checkout(request, idempotency_key=f"chotto-checkout-{purchase.public_id}")
    except Exception as error:
        log.warning("checkout for purchase %s failed: %s", purchase.public_id, type(error).__name__)
        session.rollback()  # whatever the failed call left in the session
        with db.write(session):  # the failure is recorded before it is reported
            purchase = session.get(Purchase, purchase.id, populate_existing=True)
            purchase.status = rules.next_status(purchase.status, PurchaseStatus.FAILED)
            purchase.updated_at = now
        raise GatewayUnavailable(purchase.public_id) from error
    with db.write(session):
        purchase = session.get(Purchase, purchase.id, populate_existing=True)
        purchase.checkout_session_id, purchase.checkout_url = checkout.session_id, checkout.url
        replaced_meanwhile = purchase.status != PurchaseStatus.OPEN
    if replaced_meanwhile:  # replaced while its checkout was being opened: nobody may pay that one
        _expire_checkout(gateway, checkout.session_id)
    return purchase


def _expire_checkout(gateway: Gateway, session_id: str) -> None:
    """Expire a replaced purchase's checkout at the gateway, so a tab still showing it cannot be
    paid. Best effort: if the gateway does not answer, or the checkout was paid or expired
    meanwhile, the purchase keeps its own session, and a payment made on it is still credited
    once by its webhook (status only moves forward, and the lot is keyed by the payment)."""
    try:
        gateway.expire_checkout(session_id)
    except Exception as error:
        if db.is_database_error(error):
            raise
        log.warning("the replaced checkout %s could not be expired: %s", session_id, type(error).__name__)


@dataclass(frozen=True)
class _Recorded:
    purchase: Purchase
    profile: BillingProfile | None
    quote: rules.Quote | None
    new: bool
    replaced_checkout: str | None = None  # the session of the open purchase this one replaced


def _record_quote(session: Session, *, account_id: int, user_id: int, amount_yen: int, minimum: int, language: str,
                  gateway: str, intent: str | None, now: datetime) -> _Recorded:
    """The purchase of the confirmed quote and whether it is new: the one the same form led to
    before (or IntentUsed when that one cannot be continued); else the open one of the same
    quote when it can be continued; otherwise that one is closed (expired on our side: a
    payment of its checkout still counts, status only moves forward) and a new one recorded."""
    _lock_account(session, account_id)
    profile = session.get(BillingProfile, account_id)
    if profile is None:
        raise NoBillingProfile(account_id)
    quote = rules.quote(amount_yen=amount_yen, residency=residency_of(session, account_id=account_id), minimum=minimum)
    recipient = (profile.legal_name, postal_address(profile.postal_code, profile.address), profile.registration_number)

    def continuable(purchase: Purchase) -> bool:
        same_terms = purchase.gateway == gateway and (purchase.amount_yen, purchase.total_yen) == (
            quote.amount_yen, quote.total_yen) and recipient == (
            purchase.recipient_name, purchase.recipient_address, purchase.recipient_registration_number)
        return purchase.status == PurchaseStatus.OPEN and rules.resumable(
            created_at=purchase.created_at, has_checkout=purchase.checkout_url is not None, same_terms=same_terms,
            now=now)

    if intent:
        earlier = _purchase_of_intent(session, account_id=account_id, intent=intent)
        if earlier is not None:
            if not continuable(earlier):
                raise IntentUsed(earlier)
            return _Recorded(earlier, profile, quote, new=False)
    current = _open_purchase(session, account_id=account_id, amount_yen=quote.amount_yen, total_yen=quote.total_yen)
    replaced = None
    if current is not None:
        if continuable(current):
            _remember_intent(session, account_id, intent, current, now)
            return _Recorded(current, profile, quote, new=False)
        current.status, current.updated_at = PurchaseStatus.EXPIRED, now
        replaced = current.checkout_session_id
        session.flush()  # before the new row: one open purchase per quote
    purchase = Purchase(
        public_id=secrets.token_urlsafe(12), account_id=account_id, created_by=user_id, amount_yen=quote.amount_yen,
        tax_rate=quote.tax_rate, tax_yen=quote.tax_yen, total_yen=quote.total_yen, recipient_name=recipient[0],
        recipient_address=recipient[1], recipient_registration_number=recipient[2], language=language,
        gateway=gateway, status=PurchaseStatus.OPEN, created_at=now, updated_at=now,
    )
    session.add(purchase)
    session.flush()
    _remember_intent(session, account_id, intent, purchase, now)
    return _Recorded(purchase, profile, quote, new=True, replaced_checkout=replaced)


def _remember_intent(session: Session, account_id: int, intent: str | None, purchase: Purchase,
                     now: datetime) -> None:
    if intent:
        session.add(PurchaseIntent(account_id=account_id, token=intent, purchase_id=purchase.id, created_at=now))
        session.flush()


def _purchase_of_intent(session: Session, *, account_id: int, intent: str) -> Purchase | None:
    return session.scalars(
        select(Purchase).join(PurchaseIntent, PurchaseIntent.purchase_id == Purchase.id)
        .where(PurchaseIntent.account_id == account_id, PurchaseIntent.token == intent)
        .execution_options(populate_existing=True)).first()


def _lock_account(session: Session, account_id: int) -> None:
    """Serialise one account's purchase starts (PostgreSQL row lock; SQLite: BEGIN IMMEDIATE)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(Account.id).where(Account.id == account_id).with_for_update())


def _open_purchase(session: Session, *, account_id: int, amount_yen: int, total_yen: int | None = None) -> Purchase | None:
    query = select(Purchase).where(Purchase.account_id == account_id, Purchase.amount_yen == amount_yen,
                                   Purchase.status == PurchaseStatus.OPEN)
    if total_yen is not None:
        query = query.where(Purchase.total_yen == total_yen)
    return session.scalars(query.order_by(Purchase.id.desc()).execution_options(populate_existing=True)).first()


def purchase_of(session: Session, *, account_id: int, public_id: str) -> Purchase | None:
    with db.read(session):
        return session.scalars(
            select(Purchase).where(Purchase.public_id == public_id, Purchase.account_id == account_id)).first()


def purchases_of(session: Session, *, account_id: int, page: int = 1, per_page: int = 20) -> tuple[list[Purchase], int]:
    query = select(Purchase).where(Purchase.account_id == account_id)
    with db.read(session):
        total = session.scalar(select(func.count()).select_from(query.subquery()))
        rows = session.scalars(
            query.order_by(Purchase.id.desc()).offset((max(page, 1) - 1) * per_page).limit(per_page)).all()
    return list(rows), total


# -- fulfilment -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    id: str
    type: str


class Result(StrEnum):
    """What applying an event or a payment's facts came to."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"  # the event was applied before
    IGNORED = "ignored"  # it concerns no purchase of ours
    MISMATCH = "mismatch"  # the gateway's facts do not match the purchase: nothing granted


@dataclass(frozen=True)
class Outcome:
    result: Result
    purchase_id: int | None = None
    new_invoices: tuple[int, ...] = ()


def record_unrelated(*, session: Session, event: Event, now: datetime) -> Outcome:
    """An event that concerns no purchase of ours: remembered, so it is answered once."""
    try:
        with db.write(session):
            session.add(WebhookEvent(event_id=event.id, type=event.type, received_at=now))
    except IntegrityError as error:
        if db.violated_constraint(error) != EVENT_SEEN:
            raise
        return Outcome(Result.DUPLICATE)  # delivered twice at the same moment
    return Outcome(Result.IGNORED)


def seen(session: Session, *, event_id: str) -> bool:
    with db.read(session):
        return session.scalar(select(WebhookEvent.id).where(WebhookEvent.event_id == event_id)) is not None


def purchase_ref_by_payment(session: Session, *, payment_intent_id: str) -> str | None:
    with db.read(session):
        return session.scalar(select(Purchase.public_id).where(Purchase.payment_intent_id == payment_intent_id))


def checkout_of(session: Session, *, purchase_ref: str) -> str | None:
    with db.read(session):
        return session.scalar(select(Purchase.checkout_session_id).where(Purchase.public_id == purchase_ref))


def apply_facts(
    *, session: Session, purchase_ref: str, facts: PaymentFacts, event: Event | None, issuer: Issuer, now: datetime,
) -> Outcome:
    """Bring the purchase, its credit and its invoices in line with the gateway's facts.
    Every step is monotonic (a payment stays paid, refunds are a growing set, a dispute only
    moves from open to closed), so any order of events ends in the same state, and a repeated
    event or fact changes nothing. One unit of work; an event about no purchase of ours is
    recorded by a unit of its own after it."""
    try:
        with db.write(session):
            account_id = session.scalar(select(Purchase.account_id).where(Purchase.public_id == purchase_ref))
            if account_id is not None:
                return _apply_locked(session, account_id, purchase_ref, facts, event, issuer, now)
    except IntegrityError:
        if event is not None and seen(session, event_id=event.id):
            return Outcome(Result.DUPLICATE)  # the same event, delivered twice at the same moment
        raise
    return record_unrelated(session=session, event=event, now=now) if event else Outcome(Result.IGNORED)


def _apply_locked(session: Session, account_id: int, purchase_ref: str, facts: PaymentFacts, event: Event | None,
                  issuer: Issuer, now: datetime) -> Outcome:
    state, lots = ledger.lock(session, account_id)
    if event is not None:
        if session.scalar(select(WebhookEvent.id).where(WebhookEvent.event_id == event.id)) is not None:
            return Outcome(Result.DUPLICATE)
    purchase = session.scalars(
        select(Purchase).where(Purchase.public_id == purchase_ref).execution_options(populate_existing=True)
    ).one()
    if event is not None:
        session.add(WebhookEvent(event_id=event.id, type=event.type, purchase_id=purchase.id, received_at=now))
    if (facts.session_id != purchase.checkout_session_id or not facts.livemode_matches
            or not _amount_matches(purchase, facts)):
        log.error("payment facts for purchase %s do not match it (session %s, %s %s); nothing granted",
                  purchase.public_id, facts.session_id, facts.amount_total, facts.currency)
        return Outcome(Result.MISMATCH, purchase.id)
    issued = _apply(session, state, lots, purchase, facts, issuer, now)
    purchase.updated_at = now
    return Outcome(Result.APPLIED, purchase.id, tuple(issued))


def _amount_matches(purchase: Purchase, facts: PaymentFacts) -> bool:
    if facts.status != PurchaseStatus.PAID:
        return True
    return facts.amount_total == purchase.total_yen and (facts.currency or "").lower() == "jpy"


def _apply(session: Session, state, lots, purchase: Purchase, facts: PaymentFacts, issuer: Issuer, now: datetime) -> list[int]:
    issued: list[int] = []
    purchase.status = rules.next_status(purchase.status, facts.status)
    purchase.payment_intent_id = purchase.payment_intent_id or facts.payment_intent_id
    purchase.method = facts.method or purchase.method
    if facts.voucher_expires_at:
        purchase.voucher_expires_at = facts.voucher_expires_at
    if purchase.status == PurchaseStatus.PAID and purchase.lot_id is None:
        purchase.paid_at = facts.paid_at or now
        purchase.lot_id = _grant(session, state, lots, purchase, now)
        invoice = invoices.issue_in(session, purchase=purchase, issuer=issuer, now=now)
        issued.append(invoice.id)
        _tell_billing_contact(session, purchase, invoice, now)
    if purchase.lot_id is None:
        return issued
    for refund in facts.refunds:
        issued.extend(_record_refund(session, purchase, refund, issuer, now))
    refunded = session.scalar(select(func.coalesce(func.sum(PaymentRefund.amount_yen), 0))
                              .where(PaymentRefund.purchase_id == purchase.id))
    purchase.refunded_yen = min(refunded, purchase.total_yen)
    if facts.dispute_id:
        purchase.dispute_id = purchase.dispute_id or facts.dispute_id
        purchase.dispute_status = rules.next_dispute_status(purchase.dispute_status, facts.dispute_status)
    _settle_credit(session, state, purchase, now)
    return issued


def _tell_billing_contact(session: Session, purchase: Purchase, invoice, now: datetime) -> None:
    """The payment confirmation and receipt notice, through the outbox in this transaction."""
    profile = session.get(BillingProfile, purchase.account_id)
    if profile is None:
        return
    mail.queue(session, to=profile.billing_email, template="payment_received", language=purchase.language, now=now,
               purchase=purchase, invoice=invoice, expires_at=ledger_rules.purchase_expiry(purchase.paid_at))


def _grant(session: Session, state, lots, purchase: Purchase, now: datetime) -> int:
    paid_at = purchase.paid_at
    source = f"payment:{purchase.payment_intent_id}"
    ledger.grant_in(
        session, state, lots, kind=ledger_rules.LotKind.PURCHASE, amount=purchase.amount_yen * ledger_rules.MILLI_YEN,
        expires_at=ledger_rules.purchase_expiry(paid_at), source_ref=source, key=f"purchase:{purchase.payment_intent_id}",
        reason=f"purchase {purchase.public_id}", now=now, issued_at=min(paid_at, now),
    )
    return session.scalar(select(Lot.id).where(Lot.source_ref == source))


def _record_refund(session: Session, purchase: Purchase, refund, issuer: Issuer, now: datetime) -> list[int]:
    if session.scalar(select(PaymentRefund.id).where(PaymentRefund.gateway_refund_id == refund.id)) is not None:
        return []
    row = PaymentRefund(purchase_id=purchase.id, gateway_refund_id=refund.id, amount_yen=refund.amount_yen,
                        refunded_at=refund.created or now)
    session.add(row)
    session.flush()
    if refund.amount_yen >= rules.RETURN_INVOICE_THRESHOLD_YEN:
        return [invoices.issue_return_in(session, purchase=purchase, refund=row, issuer=issuer, now=now).id]
    return []


def _settle_credit(session: Session, state, purchase: Purchase, now: datetime) -> None:
    """The lot's credit follows the payment: frozen while a dispute is open, written off when
    it is lost, and reduced by the credit each refund stands for (only what is left unused)."""
    if purchase.dispute_status == DisputeStatus.OPEN:
        if purchase.dispute_hold_id is None:
            held = ledger.freeze_lot_in(session, state, ledger.lots_of(session, purchase.account_id), lot_id=purchase.lot_id,
                                        key=f"dispute:{purchase.dispute_id}:freeze",
                                        reason=f"dispute {purchase.dispute_id} on purchase {purchase.public_id}", now=now)
            purchase.dispute_hold_id = held.id if held is not None else None
        return
    if purchase.dispute_status in (DisputeStatus.WON, DisputeStatus.LOST):
        lost = purchase.dispute_status == DisputeStatus.LOST
        if purchase.dispute_hold_id is not None or lost:
            ledger.close_hold_in(session, state, hold_id=purchase.dispute_hold_id, now=now,
                                 write_off_lot=purchase.lot_id if lost else None)
    target = rules.credit_to_take_back(refunded_yen=purchase.refunded_yen, total_yen=purchase.total_yen,
                                       amount_yen=purchase.amount_yen)
    if target > purchase.taken_back:
        ledger.take_back_in(session, state, ledger.lots_of(session, purchase.account_id), lot_id=purchase.lot_id,
                            amount=target - purchase.taken_back, key=f"refund:{purchase.public_id}:{target}",
                            reason=f"refund of purchase {purchase.public_id}", now=now)
        purchase.taken_back = target
        if target == purchase.amount_yen * ledger_rules.MILLI_YEN:  # refunded in full: credit a call still holds
            ledger.mark_refunded_in(session, state, lot_id=purchase.lot_id, now=now)  # is written off when it returns
