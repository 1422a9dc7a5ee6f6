"""API credentials: a public SID and one or more secret tokens (several only while a rotation
overlaps). Only SHA-256 digests of tokens are stored, with a display prefix and the last four
characters. Each credential also has a callback signing secret, stored as it is."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, Column, ForeignKey, Integer, String, Text
from sqlmodel import Field, SQLModel

from portal.db import enum_column, utc_column


class Scope(StrEnum):
    """What a credential may call, in this order wherever scopes are listed."""

    SMS = "sms"
    VOICE = "voice"
    OTP = "otp"
    READ = "read"  # statuses, lists, credit


class CredentialMode(StrEnum):
    LIVE = "live"
    TEST = "test"  # checked and recorded in the test inbox; never sent, never charged


class Credential(SQLModel, table=True):
    __tablename__ = "api_credentials"
    __table_args__ = (
        CheckConstraint("mode IN ('live', 'test')", name="credential_mode"),
        CheckConstraint("monthly_cap IS NULL OR monthly_cap > 0", name="credential_cap_positive"),
    )

    id: int | None = Field(default=None, primary_key=True)
    sid: str = Field(sa_column=Column(String(32), nullable=False, unique=True))
    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), nullable=False, index=True))
    name: str = Field(sa_column=Column(String(100), nullable=False))
    mode: CredentialMode = Field(sa_column=enum_column(CredentialMode, 4))
    scopes: str = Field(sa_column=Column(String(40), nullable=False))  # comma-separated Scope names, in Scope's order
    allowed_networks: str = Field(default="", sa_column=Column(Text, nullable=False))  # CIDRs, one per line
    monthly_cap: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))  # milli-yen
    created_by: int = Field(sa_column=Column(Integer, ForeignKey("users.id"), nullable=False))
    created_at: datetime = Field(sa_column=utc_column())
    revoked_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    last_used_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    last_used_ip: str | None = Field(default=None, sa_column=Column(String(45), nullable=True))

    @property
    def scope_list(self) -> list[Scope]:
        return [Scope(scope) for scope in self.scopes.split(",") if scope]


class CredentialSecret(SQLModel, table=True):
    __tablename__ = "api_credential_secrets"

    id: int | None = Field(default=None, primary_key=True)
    credential_id: int = Field(sa_column=Column(Integer, ForeignKey("api_credentials.id"), nullable=False, index=True))
    digest: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    prefix: str = Field(sa_column=Column(String(12), nullable=False))
    last4: str = Field(sa_column=Column(String(4), nullable=False))
    created_by: int | None = Field(default=None, sa_column=Column(
        Integer, ForeignKey("users.id", name="fk_api_credential_secrets_created_by_users"), nullable=True))
    created_at: datetime = Field(sa_column=utc_column())
    expires_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class CallbackSecret(SQLModel, table=True):
    """The key that signs a credential's status callbacks. Kept as it is (the portal must sign
    with it), never derived from the portal's own key; several only while a rotation overlaps."""

    __tablename__ = "api_callback_secrets"

    id: int | None = Field(default=None, primary_key=True)
    credential_id: int = Field(sa_column=Column(Integer, ForeignKey("api_credentials.id"), nullable=False, index=True))
    secret: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    created_at: datetime = Field(sa_column=utc_column())
    expires_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
