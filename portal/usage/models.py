"""The exact daily rollup of usage, kept by database triggers on sms_messages and voice_calls
(migration 0013) in the transaction of every write that changes a figure: a send, a status
change, a refund, the end of a call, a purge. Amounts are milli-yen."""

from datetime import date

from sqlalchemy import BigInteger, Column, Date, Integer, PrimaryKeyConstraint, String
from sqlmodel import Field, SQLModel

NO_CREDENTIAL = 0  # the message was sent by Chotto itself (a balance alert), not through a credential
NO_SITE = 0  # not an OTP code


class UsageDay(SQLModel, table=True):
    """The figures of one Japan-time day for one combination of what the usage page filters by
    (except tags). `credential_id` and `site_id` use 0 for none, so the key has no NULLs (both
    engines' ON CONFLICT need that); `cost` is net of refunds."""

    __tablename__ = "usage_daily"
    __table_args__ = (PrimaryKeyConstraint("account_id", "day", "product", "credential_id", "site_id", "mode",
                                           "status", "country", name="pk_usage_daily"),)

    account_id: int = Field(sa_column=Column(Integer, nullable=False))
    day: date = Field(sa_column=Column(Date, nullable=False))
    product: str = Field(sa_column=Column(String(8), nullable=False))
    credential_id: int = Field(sa_column=Column(Integer, nullable=False))
    site_id: int = Field(sa_column=Column(Integer, nullable=False))
    mode: str = Field(sa_column=Column(String(4), nullable=False))
    status: str = Field(sa_column=Column(String(12), nullable=False))
    country: str = Field(sa_column=Column(String(2), nullable=False))
    events: int = Field(sa_column=Column(BigInteger, nullable=False))
    segments: int = Field(sa_column=Column(BigInteger, nullable=False))
    seconds: int = Field(sa_column=Column(BigInteger, nullable=False))
    minutes: int = Field(sa_column=Column(BigInteger, nullable=False))  # started minutes, as calls are billed
    cost: int = Field(sa_column=Column(BigInteger, nullable=False))


USAGE_DAILY = UsageDay.__table__
