from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, Column, Index, String, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from portal.db import enum_column, utc_column


class Role(StrEnum):
    """What a member may do in an account: everything, the developer's tools, or the money."""

    OWNER = "owner"
    DEVELOPER = "developer"
    BILLING = "billing"


class Language(StrEnum):
    JA = "ja"
    EN = "en"


class AccountKind(StrEnum):
    COMPANY = "company"
    INDIVIDUAL = "individual"


class TaxResidency(StrEnum):
    """Japan-resident customers pay consumption tax; overseas ones do not."""

    JP = "JP"
    OVERSEAS = "overseas"


class LinkPurpose(StrEnum):
    VERIFY_EMAIL = "verify_email"
    RESET_PASSWORD = "reset_password"


class MailPurpose(StrEnum):
    """Mails counted against an address's hourly quota."""

    SIGNUP = "signup"
    RESET_PASSWORD = "reset_password"
    INVITATION = "invitation"


# The constraints whose clash means "someone took it at this very moment" (portal.db.violated_constraint).
EMAIL_TAKEN = "users_email_key"  # users.email is UNIQUE without a name of its own: PostgreSQL's name for it
PHONE_TAKEN = "uq_users_verified_phone"


class Account(SQLModel, table=True):
    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint("kind IN ('company', 'individual')", name="account_kind"),
        CheckConstraint("language IN ('ja', 'en')", name="account_language"),
        CheckConstraint("tax_residency IN ('JP', 'overseas')", name="account_tax_residency"),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(String(200), nullable=False))
    kind: AccountKind = Field(sa_column=enum_column(AccountKind, 20))
    language: Language = Field(sa_column=enum_column(Language, 2))
    tax_residency: TaxResidency = Field(sa_column=enum_column(TaxResidency, 10))
    created_at: datetime = Field(sa_column=utc_column())
    allowed_countries: str = Field(default="JP", sa_column=Column(String(100), nullable=False, server_default="JP"))


class User(SQLModel, table=True):
    __tablename__ = "users"
    __table_args__ = (
        Index(
            PHONE_TAKEN,
            "phone_e164",
            unique=True,
            sqlite_where=text("phone_verified_at IS NOT NULL"),
            postgresql_where=text("phone_verified_at IS NOT NULL"),
        ),
        CheckConstraint("language IN ('ja', 'en')", name="user_language"),
    )

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(sa_column=Column(String(254), nullable=False, unique=True))
    name: str = Field(sa_column=Column(String(100), nullable=False))
    password_hash: str = Field(sa_column=Column(String(200), nullable=False))
    language: Language = Field(sa_column=enum_column(Language, 2))
    created_at: datetime = Field(sa_column=utc_column())
    email_verified_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    phone_e164: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    phone_verified_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    password_changed_at: datetime = Field(sa_column=utc_column())
    disabled_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class Membership(SQLModel, table=True):
    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("account_id", "user_id", name="uq_membership"),
        CheckConstraint("role IN ('owner', 'developer', 'billing')", name="membership_role"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id", index=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    role: Role = Field(sa_column=enum_column(Role, 20))
    created_at: datetime = Field(sa_column=utc_column())


class Invitation(SQLModel, table=True):
    __tablename__ = "invitations"
    __table_args__ = (
        CheckConstraint("role IN ('owner', 'developer', 'billing')", name="invitation_role"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id", index=True)
    email: str = Field(sa_column=Column(String(254), nullable=False))
    role: Role = Field(sa_column=enum_column(Role, 20))
    token_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    invited_by_user_id: int = Field(foreign_key="users.id")
    created_at: datetime = Field(sa_column=utc_column())
    expires_at: datetime = Field(sa_column=utc_column())
    accepted_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class UserSession(SQLModel, table=True):
    """A signed-in browser. The cookie holds a random token; this row holds its hash."""

    __tablename__ = "user_sessions"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    user_id: int = Field(foreign_key="users.id", index=True)
    account_id: int | None = Field(default=None, foreign_key="accounts.id")
    created_at: datetime = Field(sa_column=utc_column())
    last_seen_at: datetime = Field(sa_column=utc_column())
    authenticated_at: datetime = Field(sa_column=utc_column())
    ended_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    ip: str = Field(sa_column=Column(String(45), nullable=False))
    user_agent: str = Field(sa_column=Column(String(200), nullable=False))


class OneTimeToken(SQLModel, table=True):
    """E-mail verification and password-reset links: random, hashed, expiring, single use."""

    __tablename__ = "one_time_tokens"
    __table_args__ = (
        CheckConstraint("purpose IN ('verify_email', 'reset_password')", name="token_purpose"),
    )

    id: int | None = Field(default=None, primary_key=True)
    purpose: LinkPurpose = Field(sa_column=enum_column(LinkPurpose, 20))
    user_id: int = Field(foreign_key="users.id", index=True)
    token_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    created_at: datetime = Field(sa_column=utc_column())
    expires_at: datetime = Field(sa_column=utc_column())
    used_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class LoginThrottle(SQLModel, table=True):
    """Failed log-ins per e-mail address, known or not, so the answer never tells them apart."""

    __tablename__ = "login_throttles"

    id: int | None = Field(default=None, primary_key=True)
    email_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    failures: int = Field(default=0)
    last_failure_at: datetime = Field(sa_column=utc_column())
    blocked_until: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class PhoneChallenge(SQLModel, table=True):
    """One code sent for a mobile-number verification, hashed; a new code is a new row and
    closes this one. Failures count per user across rows (rows written before each code had a
    row of its own carry `sends` > 1)."""

    __tablename__ = "phone_challenges"
    __table_args__ = (CheckConstraint("failures >= 0", name="challenge_failures"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    phone_e164: str = Field(sa_column=Column(String(16), nullable=False))
    code_hash: str = Field(sa_column=Column(String(64), nullable=False))
    created_at: datetime = Field(sa_column=utc_column())
    sent_at: datetime = Field(sa_column=utc_column())
    expires_at: datetime = Field(sa_column=utc_column())
    sends: int = Field(default=1)
    failures: int = Field(default=0)
    verified_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    closed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class SignUpAttempt(SQLModel, table=True):
    """One sign-up form sent: the password and details wait here until the link mailed for
    this very attempt proves the mailbox. Only an address's newest attempt can be verified,
    so the person reading the mail ends up with the password she chose, never someone else's."""

    __tablename__ = "signup_attempts"
    __table_args__ = (
        CheckConstraint("account_kind IN ('company', 'individual')", name="attempt_account_kind"),
        CheckConstraint("language IN ('ja', 'en')", name="attempt_language"),
        CheckConstraint("tax_residency IN ('JP', 'overseas')", name="attempt_tax_residency"),
    )

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(sa_column=Column(String(254), nullable=False, index=True))
    password_hash: str = Field(sa_column=Column(String(200), nullable=False))
    name: str = Field(sa_column=Column(String(100), nullable=False))
    account_name: str = Field(sa_column=Column(String(200), nullable=False))
    account_kind: AccountKind = Field(sa_column=enum_column(AccountKind, 20))
    language: Language = Field(sa_column=enum_column(Language, 2))
    tax_residency: TaxResidency = Field(sa_column=enum_column(TaxResidency, 10))
    token_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    created_at: datetime = Field(sa_column=utc_column())
    expires_at: datetime = Field(sa_column=utc_column())
    used_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class MailQuota(SQLModel, table=True):
    """Mails of one purpose asked for one address (stored as a hash) in one clock hour."""

    __tablename__ = "mail_quotas"
    __table_args__ = (
        UniqueConstraint("address_hash", "purpose", "hour", name="uq_mail_quota"),
        CheckConstraint("purpose IN ('signup', 'reset_password', 'invitation')", name="mail_quota_purpose"),
    )

    id: int | None = Field(default=None, primary_key=True)
    address_hash: str = Field(sa_column=Column(String(64), nullable=False))
    purpose: MailPurpose = Field(sa_column=enum_column(MailPurpose, 20))
    hour: datetime = Field(sa_column=utc_column())
    requests: int = Field(default=0)
