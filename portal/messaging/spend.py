"""Spend counters for the spending limits: what an account spent on a Japan calendar day and a
credential in a calendar month, kept as running totals updated in the transaction that spends
(so a limit check costs no scan of the history, however busy the account)."""

from datetime import datetime

from sqlalchemy import BigInteger, Column, String, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.selectable import CTE
from sqlmodel import Field, Session, SQLModel

from portal.clock import JST


class SpendCounter(SQLModel, table=True):
    __tablename__ = "spend_counters"

    scope: str = Field(sa_column=Column(String(40), primary_key=True))  # "account:1", "credential:7"
    period: str = Field(sa_column=Column(String(10), primary_key=True))  # "2026-11-27", "2026-11"
    spent: int = Field(sa_column=Column(BigInteger, nullable=False))  # milli-yen


COUNTERS = SpendCounter.__table__


def keys(*, account_id: int, credential_id: int | None, at: datetime) -> list[tuple[str, str]]:
    """The account's day and the credential's month that spending at `at` counts toward (the
    account's day only when Chotto spent for the account itself: no credential)."""
    day, month = periods(at)
    if credential_id is None:
        return [(f"account:{account_id}", day)]
    return [(f"account:{account_id}", day), (f"credential:{credential_id}", month)]


def periods(at: datetime) -> tuple[str, str]:
    """The Japan calendar day and month that spending at `at` counts toward."""
    local = at.astimezone(JST)
    return local.strftime("%Y-%m-%d"), local.strftime("%Y-%m")


def _upsert(insert, scope, period, amount):
    """Add `amount` to the counter (scope, period), starting it at `amount`; returns the new
    total. `insert` is the dialect's own (both PostgreSQL and SQLite upsert)."""
    statement = insert(COUNTERS).values(scope=scope, period=period, spent=amount)
    return statement.on_conflict_do_update(
        index_elements=[COUNTERS.c.scope, COUNTERS.c.period], set_={"spent": COUNTERS.c.spent + statement.excluded.spent},
    ).returning(COUNTERS.c.spent)


def ctes(count: int) -> tuple[list[CTE], list[ColumnElement]]:
    """PostgreSQL CTEs adding `r_spend_amount` to `count` counters (parameters
    `r_spend_scope_N`, `r_spend_period_N`), and the columns `spend_N` that read their new totals."""
    amount = bindparam("r_spend_amount")
    clauses = [_upsert(postgresql.insert, bindparam(f"r_spend_scope_{n}"), bindparam(f"r_spend_period_{n}"), amount)
               .cte(f"spend_{n}") for n in range(count)]
    return clauses, [select(clause.c.spent).scalar_subquery().label(clause.name) for clause in clauses]


def params(counters: list[tuple[str, str]], amount: int) -> dict:
    found = {"r_spend_amount": amount}
    for n, (scope, period) in enumerate(counters):
        found[f"r_spend_scope_{n}"], found[f"r_spend_period_{n}"] = scope, period
    return found


def _adding(insert):
    # Parameters not named after the columns: those would be taken for the INSERT's own values.
    return _upsert(insert, bindparam("counter_scope"), bindparam("counter_period"), bindparam("counter_amount"))


_ADD = {"postgresql": _adding(postgresql.insert), "sqlite": _adding(sqlite.insert)}


def add(session: Session, counters: list[tuple[str, str]], amount: int) -> list[int]:
    """Add `amount` (negative to give back) to each counter; returns the new totals."""
    statement = _ADD[session.get_bind().dialect.name]
    return [session.execute(statement, {"counter_scope": scope, "counter_period": period, "counter_amount": amount})
            .scalar_one() for scope, period in counters]
