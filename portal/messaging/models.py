from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, Column, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from portal.db import utc_column
from portal.messaging.api_models import one_of


class InboxChannel(StrEnum):
    SMS = "sms"
    VOICE = "voice"


class TestInboxMessage(SQLModel, table=True):
    """What the test-inbox carrier "delivered": readable by the account it was sent for."""

    __tablename__ = "test_inbox_messages"
    __test__ = False
    __table_args__ = (CheckConstraint(one_of("channel", InboxChannel), name="inbox_channel"),
                      UniqueConstraint("channel", "reference", name="uq_inbox_reference"))

    id: int | None = Field(default=None, primary_key=True)
    account_id: int | None = Field(default=None, foreign_key="accounts.id", index=True)
    channel: str = Field(sa_column=Column(String(10), nullable=False))
    recipient: str = Field(sa_column=Column(String(20), nullable=False))
    sender: str = Field(sa_column=Column(String(20), nullable=False))
    body: str = Field(sa_column=Column(Text, nullable=False))
    # the msgid or callid it was sent as: the carrier's idempotency key (NULL: the portal's own codes)
    reference: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    created_at: datetime = Field(sa_column=utc_column())
