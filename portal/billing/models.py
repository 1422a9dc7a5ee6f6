"""Billing tables: profiles, purchases and what the payment gateway told us about them,
qualified invoices with their stored PDFs, and the local sandbox's payments. Payments and
invoices are in whole yen (the ledger works in milli-yen)."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, Column, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from portal.accounts.models import Language
from portal.db import enum_column, utc_column


class PurchaseStatus(StrEnum):
    """A purchase's life at the gateway; it only moves forward (rules.next_status)."""

    OPEN = "open"
    AWAITING = "awaiting"  # a konbini voucher waits to be paid
    PAID = "paid"
    FAILED = "failed"
    EXPIRED = "expired"


class DisputeStatus(StrEnum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"


class GatewayName(StrEnum):
    STRIPE = "stripe"
    SANDBOX = "sandbox"


class InvoiceKind(StrEnum):
    INVOICE = "invoice"  # 適格請求書
    RETURN = "return"  # 返還インボイス


class CheckoutStatus(StrEnum):
    """A Checkout Session's status in Stripe's words, which the sandbox keeps too."""

    OPEN = "open"
    COMPLETE = "complete"
    EXPIRED = "expired"


class PaymentStatus(StrEnum):
    UNPAID = "unpaid"
    PAID = "paid"


class IntentStatus(StrEnum):
    """The statuses of a Stripe payment intent that the portal tells apart."""

    REQUIRES_PAYMENT_METHOD = "requires_payment_method"
    REQUIRES_ACTION = "requires_action"  # a konbini voucher was issued
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"


# The constraints whose clash means "the same thing was stored at this very moment"
# (portal.db.violated_constraint).
EVENT_SEEN = "webhook_events_event_id_key"  # webhook_events.event_id is UNIQUE without a name: PostgreSQL's name
RENDITION_STORED = "uq_invoice_rendition"
OPEN_PURCHASE_EXISTS = "uq_open_purchase_per_quote"
INTENT_RECORDED = "uq_purchase_intent"


class BillingProfile(SQLModel, table=True):
    """Who the invoices are addressed to. The tax residency lives on the account."""

    __tablename__ = "billing_profiles"

    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), primary_key=True))
    legal_name: str = Field(sa_column=Column(String(200), nullable=False))
    postal_code: str = Field(sa_column=Column(String(20), nullable=False))
    address: str = Field(sa_column=Column(String(300), nullable=False))
    billing_email: str = Field(sa_column=Column(String(254), nullable=False))
    registration_number: str | None = Field(default=None, sa_column=Column(String(14), nullable=True))
    updated_at: datetime = Field(sa_column=utc_column())


class Purchase(SQLModel, table=True):
    """One top-up: the quote the customer confirmed, then the payment's life at the gateway."""

    __tablename__ = "purchases"
    __table_args__ = (
        CheckConstraint("amount_yen > 0 AND amount_yen <= 1000000", name="purchase_amount_range"),
        CheckConstraint("tax_rate IN (0, 10)", name="purchase_tax_rate"),
        CheckConstraint("total_yen = amount_yen + tax_yen", name="purchase_total"),
        CheckConstraint("status IN ('open', 'awaiting', 'paid', 'failed', 'expired')", name="purchase_status"),
        CheckConstraint("refunded_yen >= 0 AND refunded_yen <= total_yen", name="purchase_refund_range"),
        CheckConstraint("dispute_status IS NULL OR dispute_status IN ('open', 'won', 'lost')", name="purchase_dispute"),
        CheckConstraint("status = 'paid' OR lot_id IS NULL", name="purchase_lot_only_when_paid"),
        # a stale confirmation page, a second tab or a double submit finds the open purchase
        # of the same quote instead of starting another (service.start_purchase)
        Index(OPEN_PURCHASE_EXISTS, "account_id", "amount_yen", "total_yen", unique=True,
              sqlite_where=text("status = 'open'"), postgresql_where=text("status = 'open'")),
    )

    id: int | None = Field(default=None, primary_key=True)
    public_id: str = Field(sa_column=Column(String(40), nullable=False, unique=True))
    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), nullable=False, index=True))
    created_by: int = Field(sa_column=Column(Integer, ForeignKey("users.id"), nullable=False))
    amount_yen: int
    tax_rate: int
    tax_yen: int
    total_yen: int
    recipient_name: str = Field(sa_column=Column(String(200), nullable=False))
    recipient_address: str = Field(sa_column=Column(String(330), nullable=False))
    recipient_registration_number: str | None = Field(default=None, sa_column=Column(String(14), nullable=True))
    language: Language = Field(sa_column=enum_column(Language, 2))
    gateway: GatewayName = Field(sa_column=enum_column(GatewayName, 20))
    status: PurchaseStatus = Field(sa_column=enum_column(PurchaseStatus, 10))
    checkout_session_id: str | None = Field(default=None, sa_column=Column(String(255), nullable=True, unique=True))
    checkout_url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    payment_intent_id: str | None = Field(default=None, sa_column=Column(String(255), nullable=True, unique=True))
    method: str | None = Field(default=None, sa_column=Column(String(20), nullable=True))
    voucher_expires_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    paid_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    lot_id: int | None = Field(default=None, sa_column=Column(Integer, ForeignKey("credit_lots.id"), nullable=True,
                                                               unique=True))
    refunded_yen: int = 0
    taken_back: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))  # milli-yen, for refunds
    dispute_id: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    dispute_status: DisputeStatus | None = Field(default=None, sa_column=enum_column(DisputeStatus, 10, nullable=True))
    dispute_hold_id: int | None = Field(default=None, sa_column=Column(Integer, ForeignKey("credit_holds.id"),
                                                                        nullable=True))
    created_at: datetime = Field(sa_column=utc_column())
    updated_at: datetime = Field(sa_column=utc_column())


class PurchaseIntent(SQLModel, table=True):
    """A confirmation form's one-time token and the purchase it led to: the same form submitted
    again (a double click, the browser's back button, a stale tab) finds this purchase and never
    opens a second checkout (service.start_purchase)."""

    __tablename__ = "purchase_intents"
    __table_args__ = (UniqueConstraint("account_id", "token", name=INTENT_RECORDED),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), nullable=False))
    token: str = Field(sa_column=Column(String(64), nullable=False))
    purchase_id: int = Field(sa_column=Column(Integer, ForeignKey("purchases.id"), nullable=False))
    created_at: datetime = Field(sa_column=utc_column())


class PaymentRefund(SQLModel, table=True):
    """A refund the gateway reports for a purchase, recorded once by its gateway id."""

    __tablename__ = "payment_refunds"
    __table_args__ = (CheckConstraint("amount_yen > 0", name="refund_amount_positive"),)

    id: int | None = Field(default=None, primary_key=True)
    purchase_id: int = Field(sa_column=Column(Integer, ForeignKey("purchases.id"), nullable=False, index=True))
    gateway_refund_id: str = Field(sa_column=Column(String(255), nullable=False, unique=True))
    amount_yen: int
    refunded_at: datetime = Field(sa_column=utc_column())


class WebhookEvent(SQLModel, table=True):
    """Every gateway event id, stored once: a redelivery is recognised and changes nothing."""

    __tablename__ = "webhook_events"

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(sa_column=Column(String(255), nullable=False, unique=True))
    type: str = Field(sa_column=Column(String(100), nullable=False))
    purchase_id: int | None = Field(default=None, sa_column=Column(Integer, ForeignKey("purchases.id"), nullable=True))
    received_at: datetime = Field(sa_column=utc_column())


class DocumentCounter(SQLModel, table=True):
    """The last number used in a series of documents: locked and bumped in the transaction
    that issues a document, so numbers have no gaps."""

    __tablename__ = "document_counters"

    series: str = Field(sa_column=Column(String(10), primary_key=True))
    last_number: int = 0


class Invoice(SQLModel, table=True):
    """A qualified invoice (適格請求書) or a return invoice (返還インボイス): every field the
    law asks for, frozen at issue. Never updated; a re-issue is a new row that points back."""

    __tablename__ = "invoices"
    __table_args__ = (
        CheckConstraint("kind IN ('invoice', 'return')", name="invoice_kind"),
        CheckConstraint("tax_rate IN (0, 10)", name="invoice_tax_rate"),
        CheckConstraint("total_yen = amount_yen + tax_yen", name="invoice_total"),
        Index("uq_invoice_per_purchase", "purchase_id", unique=True,
              sqlite_where=text("kind = 'invoice' AND reissue_of IS NULL"),
              postgresql_where=text("kind = 'invoice' AND reissue_of IS NULL")),
        Index("uq_return_invoice_per_refund", "refund_id", unique=True,
              sqlite_where=text("kind = 'return' AND reissue_of IS NULL"),
              postgresql_where=text("kind = 'return' AND reissue_of IS NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(sa_column=Column(String(20), nullable=False, unique=True))
    kind: InvoiceKind = Field(sa_column=enum_column(InvoiceKind, 10))
    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), nullable=False, index=True))
    purchase_id: int = Field(sa_column=Column(Integer, ForeignKey("purchases.id"), nullable=False))
    refund_id: int | None = Field(default=None, sa_column=Column(Integer, ForeignKey("payment_refunds.id"), nullable=True))
    reissue_of: int | None = Field(default=None, sa_column=Column(Integer, ForeignKey("invoices.id"), nullable=True))
    reissue_reason: str | None = Field(default=None, sa_column=Column(String(300), nullable=True))
    issued_at: datetime = Field(sa_column=utc_column())
    transaction_date: datetime = Field(sa_column=utc_column())
    original_date: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    issuer_name: str = Field(sa_column=Column(String(200), nullable=False))
    issuer_registration_number: str = Field(sa_column=Column(String(14), nullable=False))
    recipient_name: str = Field(sa_column=Column(String(200), nullable=False))
    recipient_address: str = Field(sa_column=Column(String(330), nullable=False))
    recipient_registration_number: str | None = Field(default=None, sa_column=Column(String(14), nullable=True))
    credit_yen: int
    amount_yen: int
    tax_rate: int
    tax_yen: int
    total_yen: int


class InvoiceRendition(SQLModel, table=True):
    """An invoice's PDF in one language, rendered once and served unchanged ever after."""

    __tablename__ = "invoice_renditions"
    __table_args__ = (UniqueConstraint("invoice_id", "language", name=RENDITION_STORED),)

    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(sa_column=Column(Integer, ForeignKey("invoices.id"), nullable=False))
    language: Language = Field(sa_column=enum_column(Language, 2))
    pdf: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    sha256: str = Field(sa_column=Column(String(64), nullable=False))
    rendered_at: datetime = Field(sa_column=utc_column())


class SandboxPayment(SQLModel, table=True):
    """The local sandbox gateway's own record of a checkout (no real money): what Stripe would
    hold for a Checkout Session and its payment intent."""

    __tablename__ = "sandbox_payments"

    id: int | None = Field(default=None, primary_key=True)
    session_id: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    payment_intent_id: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    purchase_ref: str = Field(sa_column=Column(String(40), nullable=False, unique=True))
    amount_total: int
    description: str = Field(sa_column=Column(String(200), nullable=False))
    konbini_allowed: bool = True
    status: CheckoutStatus = Field(sa_column=enum_column(CheckoutStatus, 10))
    payment_status: PaymentStatus = Field(sa_column=enum_column(PaymentStatus, 10))
    intent_status: IntentStatus = Field(sa_column=enum_column(IntentStatus, 30))
    method: str | None = Field(default=None, sa_column=Column(String(20), nullable=True))
    paid_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    voucher_expires_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    created_at: datetime = Field(sa_column=utc_column())
