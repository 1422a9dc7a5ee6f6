"""The prepaid credit ledger's tables. Amounts are integers in milli-yen (¥1 = 1000)."""

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Column, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from portal.db import utc_column
from portal.ledger.rules import LotKind, TransactionKind


def _one_of(kinds) -> str:
    """The SQL list of an enum's values, for a CHECK constraint."""
    return ", ".join(f"'{kind}'" for kind in kinds)


IDEMPOTENCY_CONSTRAINT = "uq_transaction_idempotency"  # one key books once per account


# A prepaid lot lives at most six months and never holds more than it was granted. A credit line
# (postpay) does not expire, and may hold more than its limit for a while: a failed message's
# refund that comes back after the invoice was paid is owed to the customer until the next invoice.
SIX_MONTHS = {
    "sqlite": "kind = 'line' OR expires_at <= datetime(issued_at, '+6 months')",
    "postgresql": "kind = 'line' OR expires_at <= issued_at + interval '6 months'",
}
LOT_REMAINING = "remaining >= 0 AND (remaining <= amount OR kind = 'line')"


def money(nullable: bool = False, **kwargs) -> Column:
    return Column(BigInteger, nullable=nullable, **kwargs)


class CreditState(SQLModel, table=True):
    """One row per account: the lock every ledger write takes first, and the cached totals."""

    __tablename__ = "credit_states"
    __table_args__ = (
        CheckConstraint("balance >= floor", name="balance_above_floor"),
        CheckConstraint("held >= 0", name="held_not_negative"),
        CheckConstraint("floor <= 0", name="floor_not_positive"),
        CheckConstraint("billing_mode IN ('prepaid')", name="billing_mode"),
    )

    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), primary_key=True))
    balance: int = Field(sa_column=money())
    held: int = Field(sa_column=money())
    floor: int = Field(sa_column=money())
    billing_mode: str = Field(sa_column=Column(String(10), nullable=False))
    has_purchased: bool = Field(default=False)
    updated_at: datetime = Field(sa_column=utc_column())


class Lot(SQLModel, table=True):
    """One grant of credit, spent until it runs out or expires; never extended."""

    __tablename__ = "credit_lots"
    __table_args__ = (
        CheckConstraint("amount > 0", name="lot_amount_positive"),
        CheckConstraint(LOT_REMAINING, name="lot_remaining_within_amount"),
        CheckConstraint("expires_at > issued_at", name="lot_expires_after_issue"),
        CheckConstraint(f"kind IN ({_one_of(LotKind)})", name="lot_kind"),
        CheckConstraint(SIX_MONTHS["sqlite"], name="lot_at_most_six_months").ddl_if(dialect="sqlite"),
        CheckConstraint(SIX_MONTHS["postgresql"], name="lot_at_most_six_months").ddl_if(dialect="postgresql"),
        Index("ix_credit_lots_account_expiry", "account_id", "expires_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), nullable=False))
    kind: str = Field(sa_column=Column(String(12), nullable=False))
    amount: int = Field(sa_column=money())
    remaining: int = Field(sa_column=money())
    issued_at: datetime = Field(sa_column=utc_column())
    expires_at: datetime = Field(sa_column=utc_column())
    source_ref: str = Field(sa_column=Column(String(120), nullable=False, unique=True))
    expired_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    refunded_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class Transaction(SQLModel, table=True):
    """An append-only journal line: what changed the balance, by how much, and why."""

    __tablename__ = "credit_transactions"
    __table_args__ = (
        UniqueConstraint("account_id", "idempotency_key", name=IDEMPOTENCY_CONSTRAINT),
        CheckConstraint(f"kind IN ({_one_of(TransactionKind)})", name="transaction_kind"),
        Index("ix_credit_transactions_account_time", "account_id", "occurred_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), nullable=False))
    kind: str = Field(sa_column=Column(String(10), nullable=False))
    amount: int = Field(sa_column=money())
    balance_after: int = Field(sa_column=money())
    held_after: int = Field(sa_column=money())
    idempotency_key: str = Field(sa_column=Column(String(200), nullable=False))
    request_hash: str = Field(sa_column=Column(String(64), nullable=False))
    reason: str = Field(sa_column=Column(String(300), nullable=False))
    hold_id: int | None = Field(default=None, sa_column=Column(Integer, ForeignKey("credit_holds.id"), nullable=True))
    occurred_at: datetime = Field(sa_column=utc_column())


class Entry(SQLModel, table=True):
    """Which lot gave (negative) or got back (positive) how much in a transaction."""

    __tablename__ = "credit_entries"
    __table_args__ = (CheckConstraint("amount <> 0", name="entry_not_zero"),)

    id: int | None = Field(default=None, primary_key=True)
    transaction_id: int = Field(sa_column=Column(Integer, ForeignKey("credit_transactions.id"), nullable=False, index=True))
    lot_id: int = Field(sa_column=Column(Integer, ForeignKey("credit_lots.id"), nullable=False, index=True))
    amount: int = Field(sa_column=money())


class Hold(SQLModel, table=True):
    """Credit set aside for a call in progress: taken from lots at start, settled at the end."""

    __tablename__ = "credit_holds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="hold_amount_positive"),
        CheckConstraint("charged IS NULL OR (charged >= 0 AND charged <= amount)", name="hold_charge_within_amount"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), nullable=False, index=True))
    amount: int = Field(sa_column=money())
    charged: int | None = Field(default=None, sa_column=money(nullable=True))
    reason: str = Field(sa_column=Column(String(300), nullable=False))
    created_at: datetime = Field(sa_column=utc_column())
    expires_at: datetime = Field(sa_column=utc_column())
    closed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class HoldPart(SQLModel, table=True):
    """How much of a hold came from which lot, so the unused part goes back where it came from."""

    __tablename__ = "credit_hold_parts"

    id: int | None = Field(default=None, primary_key=True)
    hold_id: int = Field(sa_column=Column(Integer, ForeignKey("credit_holds.id"), nullable=False, index=True))
    lot_id: int = Field(sa_column=Column(Integer, ForeignKey("credit_lots.id"), nullable=False))
    amount: int = Field(sa_column=money())


class BalanceThreshold(SQLModel, table=True):
    """A low-balance threshold (portal.alerts sets them): armed while the available balance is
    at or above `amount`. Every booking disarms the armed ones its line takes the balance below
    and re-arms the disarmed ones it brings back, in the line's own statement, and tells the
    watchers (steps.watch) what it crossed."""

    __tablename__ = "balance_thresholds"
    __table_args__ = (
        UniqueConstraint("account_id", "amount", name="uq_balance_threshold"),
        CheckConstraint("amount > 0", name="threshold_amount_positive"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), nullable=False, index=True))
    amount: int = Field(sa_column=money())
    armed: bool = Field(default=False)
    created_at: datetime = Field(sa_column=utc_column())
    crossed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    rearmed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


STATES, LOTS = CreditState.__table__, Lot.__table__
THRESHOLDS = BalanceThreshold.__table__
JOURNAL, ENTRIES = Transaction.__table__, Entry.__table__
