"""Messages and calls sent through the customer API, their prices, and the API's idempotency
records. Amounts are milli-yen."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, Column, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from portal.db import utc_column



class Product(StrEnum):
    """What a price is for: an SMS segment, an OTP message, a started minute of a call."""

    SMS = "sms"
    OTP = "otp"
    VOICE = "voice"


class UsageProduct(StrEnum):
    """What a message or call was, as the usage history counts it: an SMS or an OTP code's SMS
    (sms_messages), a call or a call reading an OTP code out (voice_calls)."""

    SMS = "sms"
    OTP = "otp"
    VOICE = "voice"
    OTP_CALL = "otp_call"


MESSAGE_PRODUCTS = (UsageProduct.SMS, UsageProduct.OTP)
CALL_PRODUCTS = (UsageProduct.VOICE, UsageProduct.OTP_CALL)


class MessageStatus(StrEnum):
    """Xoxzo's statuses of a message, as the API answers them."""

    QUEUED = "QUEUED"
    DELIVERING = "DELIVERING"
    DELIVERED = "DELIVERED"
    FAIL = "FAIL"
    UNKNOWN = "UNKNOWN"  # Chotto's: the worker gave up not knowing whether the carrier took it (reconciled later)


class CallStatus(StrEnum):
    QUEUED = "QUEUED"
    IN_PROGRESS = "IN PROGRESS"
    ANSWERED = "ANSWERED"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"  # as for messages: its hold is kept until the carrier says whether it was placed


def one_of(column: str, values: type[StrEnum]) -> str:
    """A CHECK that `column` holds one of `values`: `status IN ('QUEUED', 'FAIL')`."""
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


class Price(SQLModel, table=True):
    """The price of one unit (SMS segment, OTP message, started voice minute) to a country."""

    __tablename__ = "prices"
    __table_args__ = (
        UniqueConstraint("product", "country", name="uq_price"),
        CheckConstraint(one_of("product", Product), name="price_product"),
        CheckConstraint("unit_price > 0", name="price_positive"),
    )

    id: int | None = Field(default=None, primary_key=True)
    product: str = Field(sa_column=Column(String(10), nullable=False))
    country: str = Field(sa_column=Column(String(2), nullable=False))
    unit_price: int = Field(sa_column=Column(BigInteger, nullable=False))


class Message(SQLModel, table=True):
    __tablename__ = "sms_messages"
    __table_args__ = (
        CheckConstraint(one_of("status", MessageStatus), name="sms_status"),
        CheckConstraint("mode IN ('live', 'test')", name="sms_mode"),
        CheckConstraint("segments BETWEEN 1 AND 10", name="sms_segments"),
        CheckConstraint("cost >= 0", name="sms_cost"),
        CheckConstraint("product IN ('sms', 'otp')", name="sms_product"),
        Index("ix_sms_messages_account_time", "account_id", "created_at", "id"),
        # the few refunded messages, by when the refund was booked (usage.statement's late refunds)
        Index("ix_sms_messages_refunded", "account_id", "refunded_at", sqlite_where=text("refunded_at IS NOT NULL"),
              postgresql_where=text("refunded_at IS NOT NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    msgid: str = Field(sa_column=Column(String(32), nullable=False, unique=True))
    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), nullable=False))
    # NULL: sent by Chotto itself for the account (a balance alert), not through a credential
    credential_id: int | None = Field(default=None, sa_column=Column(Integer, ForeignKey("api_credentials.id"),
                                                                     nullable=True, index=True))
    mode: str = Field(sa_column=Column(String(4), nullable=False))
    product: str = Field(default=UsageProduct.SMS, sa_column=Column(String(8), nullable=False, server_default="sms"))
    otp_site_id: int | None = Field(default=None, sa_column=Column(Integer, ForeignKey("otp_sites.id"), nullable=True))
    sender: str = Field(sa_column=Column(String(16), nullable=False))
    recipient: str = Field(sa_column=Column(String(16), nullable=False))
    country: str = Field(sa_column=Column(String(2), nullable=False))
    body: str = Field(sa_column=Column(Text, nullable=False))
    encoding: str = Field(sa_column=Column(String(5), nullable=False))
    segments: int
    cost: int = Field(sa_column=Column(BigInteger, nullable=False))
    status: str = Field(sa_column=Column(String(10), nullable=False))
    tags: str = Field(default="", sa_column=Column(Text, nullable=False))
    callback_url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    carrier_ref: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    refunded_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    handed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))  # to the carrier
    # when a hand-over whose outcome we may never learn began (a timeout can come after the
    # carrier took it); cleared when it succeeded or was definitely refused before sending
    in_doubt_since: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    created_at: datetime = Field(sa_column=utc_column())
    updated_at: datetime = Field(sa_column=utc_column())


class Call(SQLModel, table=True):
    __tablename__ = "voice_calls"
    __table_args__ = (
        CheckConstraint(one_of("status", CallStatus), name="call_status"),
        CheckConstraint("mode IN ('live', 'test')", name="call_mode"),
        CheckConstraint("cost >= 0", name="call_cost"),
        CheckConstraint("product IN ('voice', 'otp_call')", name="call_product"),
        Index("ix_voice_calls_account_time", "account_id", "created_at", "id"),
        Index("ix_voice_calls_ended", "account_id", "ended_at"),  # usage.statement: the calls that ended in a month
    )

    id: int | None = Field(default=None, primary_key=True)
    callid: str = Field(sa_column=Column(String(32), nullable=False, unique=True))
    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), nullable=False))
    credential_id: int = Field(sa_column=Column(Integer, ForeignKey("api_credentials.id"), nullable=False, index=True))
    mode: str = Field(sa_column=Column(String(4), nullable=False))
    product: str = Field(default=UsageProduct.VOICE,
                         sa_column=Column(String(8), nullable=False, server_default="voice"))
    otp_site_id: int | None = Field(default=None, sa_column=Column(Integer, ForeignKey("otp_sites.id"), nullable=True))
    caller: str = Field(sa_column=Column(String(16), nullable=False))
    recipient: str = Field(sa_column=Column(String(16), nullable=False))
    country: str = Field(sa_column=Column(String(2), nullable=False))
    tts_message: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    tts_lang: str | None = Field(default=None, sa_column=Column(String(10), nullable=True))
    recording_url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    unit_price: int = Field(sa_column=Column(BigInteger, nullable=False))
    hold_id: int | None = Field(default=None, sa_column=Column(Integer, ForeignKey("credit_holds.id"), nullable=True))
    status: str = Field(sa_column=Column(String(12), nullable=False))
    duration: int | None = None  # seconds
    cost: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    tags: str = Field(default="", sa_column=Column(Text, nullable=False))
    callback_url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(sa_column=utc_column())
    started_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    ended_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    in_doubt_since: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))  # as for messages


class CallbackAttempt(SQLModel, table=True):
    """One POST of a callback (a status callback or an OTP site's event) and how the customer's
    server answered it: its HTTP status, or the error when it did not answer."""

    __tablename__ = "callback_attempts"
    __table_args__ = (
        Index("ix_callback_attempts_ref", "ref"),
        Index("ix_callback_attempts_time", "attempted_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), nullable=False))
    ref: str = Field(sa_column=Column(String(32), nullable=False))  # the msgid, callid or otp_id it is about
    event: str = Field(sa_column=Column(String(20), nullable=False))  # the status or event it posted
    url: str = Field(sa_column=Column(Text, nullable=False))
    status_code: int | None = None
    error: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    attempted_at: datetime = Field(sa_column=utc_column())


class ApiIdempotency(SQLModel, table=True):
    """The first answer to a request sent with an Idempotency-Key, replayed byte for byte."""

    __tablename__ = "api_idempotency"
    __table_args__ = (UniqueConstraint("account_id", "key", name="uq_api_idempotency"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), nullable=False))
    key: str = Field(sa_column=Column(String(255), nullable=False))
    request_hash: str = Field(sa_column=Column(String(64), nullable=False))
    status: int
    body: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=utc_column())
