"""The audit trail: who did what to an account's security-relevant settings, and when (UTC).
Written in the same transaction as the change it records."""

from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, Integer, String
from sqlmodel import Field, Session, SQLModel

from portal.db import utc_column


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_account_time", "account_id", "occurred_at"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), nullable=False))
    user_id: int | None = Field(default=None, sa_column=Column(Integer, ForeignKey("users.id"), nullable=True))
    action: str = Field(sa_column=Column(String(40), nullable=False))
    detail: str = Field(sa_column=Column(String(300), nullable=False))
    occurred_at: datetime = Field(sa_column=utc_column())


def record(session: Session, *, account_id: int, user_id: int | None, action: str, detail: str, now: datetime) -> None:
    session.add(AuditEvent(account_id=account_id, user_id=user_id, action=action, detail=detail[:300], occurred_at=now))

