"""The ledger's database writes. A booking is the lots' new remainders, the account's cached
totals, the journal line and its entries, plus what a caller's rider adds.

Statement by statement on SQLite. On PostgreSQL the same writes are one statement of
data-modifying CTEs (one round trip instead of four on the hottest path of the product),
composed with SQLAlchemy Core from the table definitions, built once per kind of rider and
then compiled once by SQLAlchemy's statement cache. Same tables, same constraints, same result.
Nothing here commits."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import BigInteger, and_, bindparam, case, cast, func, insert, or_, select, true, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql import ColumnElement, Select
from sqlalchemy.sql.selectable import CTE
from sqlmodel import Session

from portal.ledger.models import ENTRIES, JOURNAL, LOTS, STATES, THRESHOLDS
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


@dataclass(frozen=True)
class Booked:
    """A booked line's id and the balance thresholds it moved: `crossed` (disarmed: the balance
    went from at-or-above to below) and `recovered` (re-armed after having been crossed)."""

    transaction_id: int
    crossed: list[int] = field(default_factory=list)
    recovered: list[int] = field(default_factory=list)


def book(session: Session, line: dict, changes: list[Change], rider: Rider | None = None) -> Booked:
    """Write the journal `line` (its columns by name, but the id) and the lots' `changes`;
    returns the line's id and the thresholds it crossed."""
    if session.get_bind().dialect.name in ONE_STATEMENT:
        return _in_one_statement(session, line, changes, rider)
    transaction_id = _statement_by_statement(session, line, changes)
    crossed, recovered = _move_thresholds(session, line) if line["amount"] else ([], [])
    if rider is not None:
        rider.results[:] = rider.fallback(session) or ()
    return Booked(transaction_id, crossed, recovered)


def _thresholds_moved(line: dict):
    """Disarm the armed thresholds above the new balance, re-arm the disarmed ones at or below
    it (`line` holds values or bind parameters). SET reads the row's old values."""
    after, now = line["balance_after"], line["occurred_at"]
    return (
        update(THRESHOLDS)
        .where(THRESHOLDS.c.account_id == line["account_id"],
               or_(and_(THRESHOLDS.c.armed, THRESHOLDS.c.amount > after),
                   and_(~THRESHOLDS.c.armed, THRESHOLDS.c.amount <= after)))
        .values(armed=~THRESHOLDS.c.armed,
                crossed_at=case((THRESHOLDS.c.armed, now), else_=THRESHOLDS.c.crossed_at),
                rearmed_at=case((THRESHOLDS.c.armed, THRESHOLDS.c.rearmed_at), else_=now))
        .returning(THRESHOLDS.c.id, THRESHOLDS.c.armed, THRESHOLDS.c.crossed_at)
    )


def _split_moved(rows) -> tuple[list[int], list[int]]:
    crossed = sorted(row.id for row in rows if not row.armed)
    recovered = sorted(row.id for row in rows if row.armed and row.crossed_at is not None)
    return crossed, recovered


def _move_thresholds(session: Session, line: dict) -> tuple[list[int], list[int]]:
    return _split_moved(session.execute(_thresholds_moved(line)).all())


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
    moved = _thresholds_moved(_LINE).cte("thresholds")
    crossed = select(func.array_agg(moved.c.id)).where(~moved.c.armed).scalar_subquery().label("crossed_thresholds")
    recovered = (select(func.array_agg(moved.c.id)).where(moved.c.armed, moved.c.crossed_at.is_not(None))
                 .scalar_subquery().label("recovered_thresholds"))
    riding = build(line) if build is not None else RiderRows([])
    statement = (select(line.c.id.label("transaction_id"), crossed, recovered, *riding.columns)
                 .add_cte(lots, state, entries, moved, *riding.ctes))
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


def _in_one_statement(session: Session, line: dict, changes: list[Change], rider: Rider | None) -> Booked:
    composed = _composed(rider)
    params = {_LINE[name].key: value for name, value in line.items()}
    params |= {"lot_ids": [change.lot.id for change in changes], "lot_changes": [change.amount for change in changes]}
    session.flush()  # what the ORM's execute would do first; then Core, without the ORM's cost
    row = session.connection().execute(composed.statement, params | (rider.params if rider is not None else {})).one()
    if rider is not None:
        rider.results[:] = [getattr(row, column.name) for column in composed.columns]
    return Booked(row.transaction_id, sorted(row.crossed_thresholds or []), sorted(row.recovered_thresholds or []))
