"""The alerts' tables. The thresholds are the ledger's (portal.ledger.models.BalanceThreshold)."""

import json
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from portal.db import utc_column
from portal.ledger.models import BalanceThreshold  # noqa: F401  (re-exported: the alerts' thresholds)


class NoticeKind(StrEnum):
    LOW_BALANCE = "low_balance"
    RECOVERED = "recovered"
    EXPIRY_7D = "expiry_7d"
    EXPIRY_1D = "expiry_1d"
    RUN_OUT = "run_out"
    LINE_USAGE = "line_usage"  # a postpay credit line reached 80% or 100% of its limit
    TEST = "test"


OPTIONAL = {NoticeKind.EXPIRY_7D: "expiry", NoticeKind.EXPIRY_1D: "expiry", NoticeKind.RUN_OUT: "run_out"}


class Channel(StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"
    SMS = "sms"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILING = "failing"  # tried, will be tried again
    FAILED = "failed"  # given up


class AlertSettings(SQLModel, table=True):
    """An account's alert settings; an account without a row has the defaults (`defaults`)."""

    __tablename__ = "alert_settings"

    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), primary_key=True))
    email: bool = Field(default=True)
    webhook_url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    webhook_secret: str | None = Field(default=None, sa_column=Column(String(80), nullable=True))
    sms: bool = Field(default=False)
    sms_number: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    expiry_warnings: bool = Field(default=True)
    run_out_days: int | None = Field(default=7)
    all_members: bool = Field(default=True)  # every owner and billing member receives
    updated_at: datetime = Field(sa_column=utc_column())


def defaults(account_id: int, now: datetime) -> AlertSettings:
    return AlertSettings(account_id=account_id, updated_at=now)


class AlertMember(SQLModel, table=True):
    """A member chosen to receive the alerts (when the settings' `all_members` is off)."""

    __tablename__ = "alert_members"
    __table_args__ = (UniqueConstraint("account_id", "user_id", name="uq_alert_member"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), nullable=False, index=True))
    user_id: int = Field(sa_column=Column(Integer, ForeignKey("users.id"), nullable=False))


class AlertAddress(SQLModel, table=True):
    """An extra address; it receives nothing until confirmed by the link mailed to it."""

    __tablename__ = "alert_addresses"
    __table_args__ = (UniqueConstraint("account_id", "address", name="uq_alert_address"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), nullable=False, index=True))
    address: str = Field(sa_column=Column(String(254), nullable=False))
    language: str = Field(sa_column=Column(String(2), nullable=False))
    token_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))  # SHA-256 of the link's token
    created_at: datetime = Field(sa_column=utc_column())
    confirmed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class AlertOptOut(SQLModel, table=True):
    """A recipient unsubscribed from an optional notice topic ("expiry", "run_out")."""

    __tablename__ = "alert_opt_outs"
    __table_args__ = (UniqueConstraint("account_id", "recipient", "topic", name="uq_alert_opt_out"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), nullable=False))
    recipient: str = Field(sa_column=Column(String(254), nullable=False))
    topic: str = Field(sa_column=Column(String(20), nullable=False))
    created_at: datetime = Field(sa_column=utc_column())


class Notice(SQLModel, table=True):
    """One notice; `uuid` is its stable id, sent in the webhook body and a mail header."""

    __tablename__ = "alert_notices"

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(sa_column=Column(String(36), nullable=False, unique=True))
    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), nullable=False, index=True))
    kind: str = Field(sa_column=Column(String(20), nullable=False))
    payload: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=utc_column())

    def data(self) -> dict:
        return json.loads(self.payload)


class Delivery(SQLModel, table=True):
    """A notice to one recipient by one channel, and how its attempts went."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (UniqueConstraint("message_id", name="uq_alert_delivery_message"),)

    id: int | None = Field(default=None, primary_key=True)
    notice_id: int = Field(sa_column=Column(Integer, ForeignKey("alert_notices.id"), nullable=False, index=True))
    channel: str = Field(sa_column=Column(String(10), nullable=False))
    recipient: str = Field(sa_column=Column(Text, nullable=False))
    language: str = Field(sa_column=Column(String(2), nullable=False))
    status: str = Field(sa_column=Column(String(10), nullable=False))
    attempts: int = Field(default=0)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    last_attempt_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    delivered_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    # the SMS channel's one message (sms_messages), created with the first attempt
    message_id: int | None = Field(default=None, sa_column=Column(
        Integer, ForeignKey("sms_messages.id", name="fk_alert_delivery_message"), nullable=True))


class AlertMark(SQLModel, table=True):
    """A scheduled warning already given: once per lot per kind, once a day for run-out."""

    __tablename__ = "alert_marks"
    __table_args__ = (UniqueConstraint("account_id", "kind", "subject", name="uq_alert_mark"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), nullable=False))
    kind: str = Field(sa_column=Column(String(20), nullable=False))
    subject: str = Field(sa_column=Column(String(40), nullable=False))
    created_at: datetime = Field(sa_column=utc_column())
