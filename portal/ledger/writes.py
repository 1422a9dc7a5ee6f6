"""The ledger's database writes. A booking is the lots' new remainders, the account's cached
totals, the journal line and its entries, plus what a caller's rider adds.

Statement by statement on SQLite. On PostgreSQL the same writes are one statement of
data-modifying CTEs (one round trip instead of four on the hottest path of the product),
composed with SQLAlchemy Core from the table definitions, built once per kind of rider and
then compiled once by SQLAlchemy's statement cache. Same tables, same constraints, same result.
Nothing here commits."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import BigInteger, bindparam, cast, func, insert, select, true, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql import ColumnElement, Select
from sqlalchemy.sql.selectable import CTE
from sqlmodel import Session

from portal.ledger.models import ENTRIES, JOURNAL, LOTS, STATES
from portal.ledger.rules import LotLike

ONE_STATEMENT = frozenset({"postgresql"})  # the databases that book in one statement


@dataclass(frozen=True)
class Change:
    """What one lot gives (negative) or gets back (positive) in a booking."""

    lot: LotLike
    amount: int


@dataclass(frozen=True)
class RiderRows:
    """A rider's part of the one statement: its CTEs, and the (labelled) columns read back
    with the journal line."""

    ctes: list[CTE]
    columns: list[ColumnElement] = field(default_factory=list)


@dataclass(frozen=True)
class Rider:
    """Rows a caller writes with a ledger line: in the line's own statement on PostgreSQL
    (one round trip less on a hot path), by `fallback(session)` on other databases.

    `build(line)` takes the journal line's CTE and returns the rider's CTEs and columns; it is
    called once per `name`, so it must be the same module-level function for every rider of
    that name, and every value must come in through `params` (bind parameters, never literal
    values). `fallback` returns the same values as the columns; either way they land in
    `results`."""

    name: str
    build: Callable[[CTE], RiderRows]
    params: dict
    fallback: Callable[[Session], Sequence]
    results: list = field(default_factory=list)


def book(session: Session, line: dict, changes: list[Change], rider: Rider | None = None) -> int:
    """Write the journal `line` (its columns by name, but the id) and the lots' `changes`;
    returns the line's id."""
    if session.get_bind().dialect.name in ONE_STATEMENT:
        return _in_one_statement(session, line, changes, rider)
    transaction_id = _statement_by_statement(session, line, changes)
    if rider is not None:
        rider.results[:] = rider.fallback(session) or ()
    return transaction_id


def _set_totals(line: dict):
    """The account's cached totals as of the line; `line` holds values or bind parameters."""
    return (update(STATES).where(STATES.c.account_id == line["account_id"])
            .values(balance=line["balance_after"], held=line["held_after"], updated_at=line["occurred_at"]))


# -- statement by statement ----------------------------------------------------------------------

_ADD_TO_LOT = update(LOTS).where(LOTS.c.id == bindparam("lot")).values(remaining=LOTS.c.remaining + bindparam("change"))


def _statement_by_statement(session: Session, line: dict, changes: list[Change]) -> int:
    if changes:
        session.execute(_ADD_TO_LOT, [{"lot": change.lot.id, "change": change.amount} for change in changes])
    session.execute(_set_totals(line))
    transaction_id = session.execute(insert(JOURNAL).returning(JOURNAL.c.id), line).scalar_one()
    if changes:
        session.execute(insert(ENTRIES), [{"transaction_id": transaction_id, "lot_id": change.lot.id,
                                           "amount": change.amount} for change in changes])
    return transaction_id


# -- one statement (PostgreSQL) ------------------------------------------------------------------

# The line's parameters are not named after its columns: a parameter named like a column
# would be SET by the UPDATEs in the statement too.
_LINE = {column.name: bindparam(f"line_{column.name}", type_=column.type) for column in JOURNAL.c if not column.primary_key}


@dataclass(frozen=True)
class _Composed:
    statement: Select
    build: Callable[[CTE], RiderRows] | None
    columns: list[ColumnElement]


_COMPOSED: dict[str | None, _Composed] = {}


def _compose(build: Callable[[CTE], RiderRows] | None) -> _Composed:
    changes = select(func.unnest(cast(bindparam("lot_ids"), ARRAY(BigInteger))).label("lot_id"),
                     func.unnest(cast(bindparam("lot_changes"), ARRAY(BigInteger))).label("change")).cte("changes")
    lots = (update(LOTS).values(remaining=LOTS.c.remaining + changes.c.change).where(LOTS.c.id == changes.c.lot_id)
            .returning(LOTS.c.id).cte("lots"))
    state = _set_totals(_LINE).returning(STATES.c.account_id).cte("state")
    line = insert(JOURNAL).values(_LINE).returning(JOURNAL.c.id).cte("line")
    entries = insert(ENTRIES).from_select(
        [ENTRIES.c.transaction_id, ENTRIES.c.lot_id, ENTRIES.c.amount],
        select(line.c.id, changes.c.lot_id, changes.c.change).select_from(line.join(changes, true())),
    ).returning(ENTRIES.c.id).cte("entries")
    riding = build(line) if build is not None else RiderRows([])
    statement = select(line.c.id.label("transaction_id"), *riding.columns).add_cte(lots, state, entries, *riding.ctes)
    return _Composed(statement, build, riding.columns)


def _composed(rider: Rider | None) -> _Composed:
    """The statement for this kind of rider (or none), built on first use. The same statement
    object every time: SQLAlchemy's cache compiles it once per engine and finds it again by a
    memoised key."""
    name, build = (rider.name, rider.build) if rider is not None else (None, None)
    composed = _COMPOSED.get(name)
    if composed is None:
        composed = _COMPOSED[name] = _compose(build)
    if composed.build is not build:
        raise RuntimeError(f"two different riders are named {name!r}")
    return composed


def _in_one_statement(session: Session, line: dict, changes: list[Change], rider: Rider | None) -> int:
    composed = _composed(rider)
    params = {_LINE[name].key: value for name, value in line.items()}
    params |= {"lot_ids": [change.lot.id for change in changes], "lot_changes": [change.amount for change in changes]}
    row = session.execute(composed.statement, params | (rider.params if rider is not None else {})).one()
    if rider is not None:
        rider.results[:] = [getattr(row, column.name) for column in composed.columns]
    return row.transaction_id
