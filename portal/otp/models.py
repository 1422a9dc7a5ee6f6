"""OTP sites, the codes they send and the requests their fraud guards blocked. Codes are
stored only as keyed hashes (HMAC-SHA256 with the application's secret)."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, Column, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from portal.db import UTCDateTime, enum_column, utc_column
from portal.messaging.api_models import one_of


SITE_DOMAIN_TAKEN = "uq_otp_site_domain"


class TemplateLanguage(StrEnum):
    JA = "ja"
    EN = "en"


class Fallback(StrEnum):
    """When a site calls the number and reads the code out."""

    OFF = "off"
    AFTER_DELAY = "after_delay"  # no verification within fallback_seconds (or the SMS failed: at once)
    ON_FAILURE = "on_failure"  # only when the SMS failed


class CodeStatus(StrEnum):
    """An expired code keeps ACTIVE: expiry is read from expires_at against the clock."""

    ACTIVE = "active"
    VERIFIED = "verified"
    REPLACED = "replaced"  # a newer request for the same number took its place
    LOCKED = "locked"  # its attempts were used up by wrong codes


class Channel(StrEnum):
    SMS = "sms"
    VOICE = "voice"


class BlockReason(StrEnum):
    """Why a fraud guard (or the ownership rule) refused a request."""

    COUNTRY = "country_not_allowed"
    UNPROVEN = "unproven_site"
    NUMBER_LIMIT = "number_limit"
    IP_LIMIT = "ip_limit"
    PREFIX_LIMIT = "prefix_limit"
    PAUSED = "site_paused"
    LOCKED = "number_locked"


class OtpSite(SQLModel, table=True):
    """A customer's website and its settings (DESIGN.md "OTP sites"): one per domain per account."""

    __tablename__ = "otp_sites"
    __table_args__ = (
        UniqueConstraint("account_id", "domain", name=SITE_DOMAIN_TAKEN),
        CheckConstraint("code_length BETWEEN 4 AND 8", name="otp_code_length"),
        CheckConstraint("lifetime_minutes BETWEEN 1 AND 30", name="otp_lifetime"),
        CheckConstraint("max_attempts BETWEEN 1 AND 10", name="otp_attempts"),
        CheckConstraint("resend_cooldown_seconds BETWEEN 0 AND 600", name="otp_cooldown"),
        CheckConstraint("fallback_seconds BETWEEN 10 AND 600", name="otp_fallback_seconds"),
        CheckConstraint("per_number_limit BETWEEN 1 AND 5", name="otp_number_limit"),
        CheckConstraint("per_ip_limit BETWEEN 1 AND 1000", name="otp_ip_limit"),
        CheckConstraint(one_of("template_language", TemplateLanguage), name="otp_template_language"),
        CheckConstraint(one_of("fallback", Fallback), name="otp_fallback"),
        CheckConstraint(one_of("fallback_language", TemplateLanguage), name="otp_fallback_language"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), nullable=False, index=True))
    domain: str = Field(sa_column=Column(String(253), nullable=False))
    display_name: str = Field(sa_column=Column(String(40), nullable=False))
    ownership_token: str = Field(sa_column=Column(String(64), nullable=False))
    proven_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    checked_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    template_language: TemplateLanguage = Field(sa_column=enum_column(TemplateLanguage, 2))
    template: str = Field(sa_column=Column(Text, nullable=False))
    code_length: int = 6
    lifetime_minutes: int = 5
    max_attempts: int = 5
    resend_cooldown_seconds: int = 30
    fallback: Fallback = Field(default=Fallback.OFF, sa_column=enum_column(Fallback, 12))
    fallback_seconds: int = 60
    fallback_language: TemplateLanguage = Field(default=TemplateLanguage.JA, sa_column=enum_column(TemplateLanguage, 2))
    allowed_countries: str = Field(default="JP", sa_column=Column(String(200), nullable=False))  # comma-separated
    per_number_limit: int = 5  # sends per number per 10 minutes
    per_ip_limit: int = 10  # sends per end-user IP per hour
    callback_url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    paused_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    resumed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    created_at: datetime = Field(sa_column=utc_column())

    @property
    def countries(self) -> tuple[str, ...]:
        return tuple(country for country in self.allowed_countries.split(",") if country)


class OtpCode(SQLModel, table=True):
    """One code sent for a site to a number. At most one ACTIVE code per site, mode and number;
    `failures` (wrong codes typed) is carried over to the code that replaces it."""

    __tablename__ = "otp_codes"
    __table_args__ = (
        Index("uq_otp_active_code", "site_id", "mode", "phone_number", unique=True,
              sqlite_where=text("status = 'active'"), postgresql_where=text("status = 'active'")),
        Index("ix_otp_codes_site_time", "site_id", "created_at"),
        # the request's guards: the number's newest code, the sends to a prefix or from an IP in
        # the limits' windows, and the decided codes when the tallies cannot settle the rate
        Index("ix_otp_codes_number", "site_id", "mode", "phone_number", "id"),
        Index("ix_otp_codes_prefix_time", "site_id", "mode", "prefix", "created_at"),
        Index("ix_otp_codes_ip_time", "site_id", "mode", "ip", "created_at"),
        Index("ix_otp_codes_status_expiry", "site_id", "mode", "status", "expires_at"),
        Index("ix_otp_codes_fallback_call", "fallback_callid"),  # a call's code, for the usage detail
        CheckConstraint(one_of("status", CodeStatus), name="otp_code_status"),
        CheckConstraint(one_of("channel", Channel), name="otp_code_channel"),
        CheckConstraint("mode IN ('live', 'test')", name="otp_code_mode"),
        CheckConstraint("failures >= 0 AND failures <= max_attempts", name="otp_code_failures"),
    )

    id: int | None = Field(default=None, primary_key=True)
    msgid: str = Field(sa_column=Column(String(32), nullable=False, unique=True))  # also the API's otp_id
    site_id: int = Field(sa_column=Column(Integer, ForeignKey("otp_sites.id"), nullable=False))
    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), nullable=False, index=True))
    credential_id: int = Field(sa_column=Column(Integer, ForeignKey("api_credentials.id"), nullable=False))
    mode: str = Field(sa_column=Column(String(4), nullable=False))
    phone_number: str = Field(sa_column=Column(String(16), nullable=False))
    prefix: str = Field(sa_column=Column(String(16), nullable=False))  # the number without its last four digits
    channel: Channel = Field(sa_column=enum_column(Channel, 5))
    code_hash: str = Field(sa_column=Column(String(64), nullable=False))
    status: CodeStatus = Field(sa_column=enum_column(CodeStatus, 10))
    failures: int = 0
    max_attempts: int
    ip: str | None = Field(default=None, sa_column=Column(String(45), nullable=True))
    created_at: datetime = Field(sa_column=utc_column())
    expires_at: datetime = Field(sa_column=utc_column())
    verified_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    fallback_text: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # while a call may come
    fallback_callid: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    delivery_event: str | None = Field(default=None, sa_column=Column(String(10), nullable=True))  # reported once
    masked_body: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # the SMS once handed over


class OtpTally(SQLModel, table=True):
    """A site's live codes by the hour they were sent (UTC): how many were sent and how many of
    them are verified. Kept by triggers on otp_codes (migration 0015) in the transaction that
    writes the code, so the completion guard reads a day of figures in a few rows instead of
    counting a day of codes."""

    __tablename__ = "otp_tallies"
    __table_args__ = (Index("ix_otp_tallies_hour", "hour"),)  # the retention pass's oldest hours first

    site_id: int = Field(sa_column=Column(Integer, ForeignKey("otp_sites.id"), primary_key=True))
    hour: datetime = Field(sa_column=Column(UTCDateTime(), primary_key=True))
    sent: int = 0
    verified: int = 0


class OtpCredentialSite(SQLModel, table=True):
    """A credential limited to some sites: it may request and verify codes for these only (a
    credential without any row may use every site of its account)."""

    __tablename__ = "otp_credential_sites"

    credential_id: int = Field(sa_column=Column(Integer, ForeignKey("api_credentials.id"), primary_key=True))
    site_id: int = Field(sa_column=Column(Integer, ForeignKey("otp_sites.id"), primary_key=True))


class OtpBlocked(SQLModel, table=True):
    """A request a fraud guard refused, with its reason; an owner may lift it."""

    __tablename__ = "otp_blocked"
    __table_args__ = (
        Index("ix_otp_blocked_site_time", "site_id", "created_at"),
        CheckConstraint(one_of("reason", BlockReason), name="otp_blocked_reason"),
        CheckConstraint("mode IN ('live', 'test')", name="otp_blocked_mode"),
    )

    id: int | None = Field(default=None, primary_key=True)
    site_id: int = Field(sa_column=Column(Integer, ForeignKey("otp_sites.id"), nullable=False))
    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), nullable=False, index=True))
    mode: str = Field(sa_column=Column(String(4), nullable=False))
    phone_number: str = Field(sa_column=Column(String(16), nullable=False))
    ip: str | None = Field(default=None, sa_column=Column(String(45), nullable=True))
    reason: BlockReason = Field(sa_column=enum_column(BlockReason, 20))
    created_at: datetime = Field(sa_column=utc_column())
    lifted_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    lifted_by: int | None = Field(default=None, sa_column=Column(Integer, ForeignKey("users.id"), nullable=True))
