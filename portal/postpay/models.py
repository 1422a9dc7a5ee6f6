"""The postpay tables: one contract per account, the applications made in the portal, the
monthly invoices with their lines, and the bank transfers recorded against them. Invoices and
payments are in whole yen; usage, as in the ledger, in milli-yen."""

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import (BigInteger, CheckConstraint, Column, Date, ForeignKey, Integer, LargeBinary, String, Text,
                        UniqueConstraint)
from sqlmodel import Field, SQLModel

from portal.accounts.models import Language
from portal.db import enum_column, utc_column


class ContractStatus(StrEnum):
    APPLIED = "applied"
    APPROVED = "approved"
    DECLINED = "declined"
    SUSPENDED = "suspended"


class SuspendedBy(StrEnum):
    OVERDUE = "overdue"  # lifted by itself once every overdue invoice is paid
    OPERATOR = "operator"  # lifted only by `portal postpay resume`


class Product(StrEnum):
    """What an invoice line bills."""

    SMS = "sms"
    OTP = "otp"
    VOICE = "voice"


INVOICE_PER_MONTH = "uq_postpay_invoice_month"


class Contract(SQLModel, table=True):
    """An account's invoice-billing contract and its credit line (the ledger lot `lot_id`)."""

    __tablename__ = "postpay_contracts"
    __table_args__ = (
        CheckConstraint("status IN ('applied', 'approved', 'declined', 'suspended')", name="postpay_status"),
        CheckConstraint("limit_yen IS NULL OR limit_yen > 0", name="postpay_limit_positive"),
        CheckConstraint("due_days IS NULL OR (due_days >= 1 AND due_days <= 120)", name="postpay_due_days"),
        CheckConstraint("(status IN ('approved', 'suspended')) = (lot_id IS NOT NULL)", name="postpay_line_when_approved"),
        CheckConstraint("(status = 'suspended') = (suspended_by IS NOT NULL)", name="postpay_suspended_by"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), nullable=False, unique=True))
    status: ContractStatus = Field(sa_column=enum_column(ContractStatus, 10))
    limit_yen: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    due_days: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))  # None: end of next month
    terms: str | None = Field(default=None, sa_column=Column(String(300), nullable=True))
    reason: str | None = Field(default=None, sa_column=Column(String(300), nullable=True))  # the last decision's
    suspended_by: SuspendedBy | None = Field(default=None, sa_column=enum_column(SuspendedBy, 10, nullable=True))
    lot_id: int | None = Field(default=None, sa_column=Column(Integer, ForeignKey("credit_lots.id"), nullable=True,
                                                               unique=True))
    warned_percent: int = Field(default=0, sa_column=Column(Integer, nullable=False))  # 0, 80 or 100: told so far
    created_at: datetime = Field(sa_column=utc_column())
    updated_at: datetime = Field(sa_column=utc_column())


class Application(SQLModel, table=True):
    """What a company asked for in the portal (kept as sent, one row per application)."""

    __tablename__ = "postpay_applications"
    __table_args__ = (CheckConstraint("expected_monthly_yen > 0", name="postpay_expected_positive"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), nullable=False, index=True))
    user_id: int = Field(sa_column=Column(Integer, ForeignKey("users.id"), nullable=False))
    legal_name: str = Field(sa_column=Column(String(200), nullable=False))
    address: str = Field(sa_column=Column(String(300), nullable=False))
    registration_number: str | None = Field(default=None, sa_column=Column(String(14), nullable=True))
    contact_name: str = Field(sa_column=Column(String(100), nullable=False))
    contact_email: str = Field(sa_column=Column(String(254), nullable=False))
    expected_monthly_yen: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = Field(sa_column=utc_column())


class PostpayInvoice(SQLModel, table=True):
    """A month's qualified invoice (適格請求書) for the usage of the credit line: every figure
    frozen at issue. It covers the line's usage booked before `covers_until` and not covered by
    an earlier invoice. `restored` is the usage (milli-yen) its payments gave back to the line."""

    __tablename__ = "postpay_invoices"
    __table_args__ = (
        UniqueConstraint("account_id", "month", name=INVOICE_PER_MONTH),
        CheckConstraint("tax_rate IN (0, 10)", name="postpay_invoice_tax_rate"),
        CheckConstraint("total_yen = subtotal_yen + tax_yen", name="postpay_invoice_total"),
        CheckConstraint("paid_yen >= 0 AND paid_yen <= total_yen", name="postpay_invoice_paid_range"),
        CheckConstraint("usage > 0 AND restored >= 0 AND restored <= usage", name="postpay_invoice_restored_range"),
    )

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(sa_column=Column(String(20), nullable=False, unique=True))
    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), nullable=False, index=True))
    month: str = Field(sa_column=Column(String(7), nullable=False))  # "2026-11", Japan time
    covers_until: datetime = Field(sa_column=utc_column())
    usage: int = Field(sa_column=Column(BigInteger, nullable=False))  # milli-yen of line usage covered
    subtotal_yen: int = Field(sa_column=Column(BigInteger, nullable=False))
    tax_rate: int
    tax_yen: int = Field(sa_column=Column(BigInteger, nullable=False))
    total_yen: int = Field(sa_column=Column(BigInteger, nullable=False))
    paid_yen: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    restored: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    issued_on: date = Field(sa_column=Column(Date, nullable=False))
    due_on: date = Field(sa_column=Column(Date, nullable=False))
    issuer_name: str = Field(sa_column=Column(String(200), nullable=False))
    issuer_registration_number: str = Field(sa_column=Column(String(14), nullable=False))
    recipient_name: str = Field(sa_column=Column(String(200), nullable=False))
    recipient_address: str = Field(sa_column=Column(String(330), nullable=False))
    recipient_registration_number: str | None = Field(default=None, sa_column=Column(String(14), nullable=True))
    bank_account: str = Field(sa_column=Column(Text, nullable=False))
    language: Language = Field(sa_column=enum_column(Language, 2))
    pdf: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    issued_at: datetime = Field(sa_column=utc_column())
    paid_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    reminded_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))  # the day after the due date
    reminded_again_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))  # 7 days later


class InvoiceLine(SQLModel, table=True):
    """One product's usage on an invoice: how many, and the amount (tax excluded)."""

    __tablename__ = "postpay_invoice_lines"
    __table_args__ = (UniqueConstraint("invoice_id", "product", name="uq_postpay_line_product"),)

    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(sa_column=Column(Integer, ForeignKey("postpay_invoices.id"), nullable=False, index=True))
    product: Product = Field(sa_column=enum_column(Product, 10))
    quantity: int
    usage: int = Field(sa_column=Column(BigInteger, nullable=False))  # milli-yen
    amount_yen: int = Field(sa_column=Column(BigInteger, nullable=False))


class Payment(SQLModel, table=True):
    """A bank transfer the operator recorded against an invoice."""

    __tablename__ = "postpay_payments"
    __table_args__ = (CheckConstraint("amount_yen > 0", name="postpay_payment_positive"),
                      UniqueConstraint("invoice_id", "reference", name="uq_postpay_payment_reference"))

    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(sa_column=Column(Integer, ForeignKey("postpay_invoices.id"), nullable=False, index=True))
    amount_yen: int = Field(sa_column=Column(BigInteger, nullable=False))
    paid_on: date = Field(sa_column=Column(Date, nullable=False))
    reference: str = Field(sa_column=Column(String(200), nullable=False))
    restored: int = Field(sa_column=Column(BigInteger, nullable=False))  # milli-yen given back to the line
    recorded_at: datetime = Field(sa_column=utc_column())


CONTRACTS, APPLICATIONS = Contract.__table__, Application.__table__
INVOICES, LINES, PAYMENTS = PostpayInvoice.__table__, InvoiceLine.__table__, Payment.__table__
