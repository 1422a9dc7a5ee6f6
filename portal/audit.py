"""The audit trail: who did what to an account's security-relevant settings, and when (UTC).
Written in the same transaction as the change it records."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, ForeignKey, Index, Integer, String
from sqlmodel import Field, Session, SQLModel

from portal.db import enum_column, utc_column

DETAIL_LENGTH = 300


class AuditAction(StrEnum):
    CREDENTIAL_CREATED = "credential.created"
    CREDENTIAL_ROTATED = "credential.rotated"
    CREDENTIAL_REVOKED = "credential.revoked"
    CALLBACK_SECRET_SHOWN = "credential.callback_secret_shown"
    CALLBACK_SECRET_ROTATED = "credential.callback_secret_rotated"
    CREDENTIAL_SITES_LIMITED = "credential.sites_limited"
    OWNER_INVITED = "team.owner_invited"
    ROLE_CHANGED = "team.role_changed"
    MEMBER_REMOVED = "team.member_removed"
    ALERT_WEBHOOK_CHANGED = "alerts.webhook_changed"
    ALERT_WEBHOOK_SECRET_ROTATED = "alerts.webhook_secret_rotated"
    ALERT_ADDRESS_ADDED = "alerts.address_added"
    ALERT_ADDRESS_REMOVED = "alerts.address_removed"
    POSTPAY_APPLIED = "postpay.applied"
    POSTPAY_APPROVED = "postpay.approved"
    POSTPAY_DECLINED = "postpay.declined"
    POSTPAY_SUSPENDED = "postpay.suspended"
    POSTPAY_RESUMED = "postpay.resumed"
    POSTPAY_INVOICED = "postpay.invoiced"
    POSTPAY_PAYMENT = "postpay.payment_recorded"


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_account_time", "account_id", "occurred_at"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), nullable=False))
    user_id: int | None = Field(default=None, sa_column=Column(Integer, ForeignKey("users.id"), nullable=True))
    action: AuditAction = Field(sa_column=enum_column(AuditAction, 40))
    detail: str = Field(sa_column=Column(String(DETAIL_LENGTH), nullable=False))
    occurred_at: datetime = Field(sa_column=utc_column())


def record(session: Session, *, account_id: int, user_id: int | None, action: AuditAction, detail: str,
           now: datetime) -> None:
    """`detail` is put together by the services from bounded fields (a name of at most 100
    characters, an address of at most 254) and fits the column. Should one ever not, the event
    is still recorded with its detail visibly cut ("…"): losing the record of a security change
    to a long name would be worse than a shortened description of it."""
    if len(detail) > DETAIL_LENGTH:
        detail = detail[: DETAIL_LENGTH - 1] + "…"
    session.add(AuditEvent(account_id=account_id, user_id=user_id, action=action, detail=detail, occurred_at=now))
