"""Spend counters for the spending limits: what an account spent on a Japan calendar day and a
credential in a calendar month, kept as running totals updated in the transaction that spends
(so a limit check costs no scan of the history, however busy the account)."""

from datetime import datetime

from sqlalchemy import BigInteger, Column, String, text
from sqlmodel import Field, Session, SQLModel

from portal.clock import JST


class SpendCounter(SQLModel, table=True):
    __tablename__ = "spend_counters"

    scope: str = Field(sa_column=Column(String(40), primary_key=True))  # "account:1", "credential:7"
    period: str = Field(sa_column=Column(String(10), primary_key=True))  # "2026-11-27", "2026-11"
    spent: int = Field(sa_column=Column(BigInteger, nullable=False))  # milli-yen


def keys(*, account_id: int, credential_id: int, at: datetime) -> list[tuple[str, str]]:
    """The account's day and the credential's month that spending at `at` counts toward."""
    local = at.astimezone(JST)
    return [(f"account:{account_id}", local.strftime("%Y-%m-%d")), (f"credential:{credential_id}", local.strftime("%Y-%m"))]


_UPSERT = """INSERT INTO spend_counters (scope, period, spent) VALUES ({scope}, {period}, {amount})
    ON CONFLICT (scope, period) DO UPDATE SET spent = spend_counters.spent + EXCLUDED.spent RETURNING spent"""


def cte(count: int) -> tuple[str, str]:
    """CTE clauses adding `:r_spend_amount` to `count` counters (parameters `:r_spend_scope_N`,
    `:r_spend_period_N`), and the expressions that read their new totals."""
    clauses = [f"spend_{n} AS ({_UPSERT.format(scope=f':r_spend_scope_{n}', period=f':r_spend_period_{n}', amount=':r_spend_amount')})"
               for n in range(count)]
    return ",\n".join(clauses), ", ".join(f"(SELECT spent FROM spend_{n})" for n in range(count))


def params(counters: list[tuple[str, str]], amount: int) -> dict:
    found = {"r_spend_amount": amount}
    for n, (scope, period) in enumerate(counters):
        found[f"r_spend_scope_{n}"], found[f"r_spend_period_{n}"] = scope, period
    return found


def add(session: Session, counters: list[tuple[str, str]], amount: int) -> list[int]:
    """Add `amount` (negative to give back) to each counter; returns the new totals."""
    statement = text(_UPSERT.format(scope=":scope", period=":period", amount=":amount"))
    return [session.execute(statement, {"scope": scope, "period": period, "amount": amount}).scalar_one()
            for scope, period in counters]
