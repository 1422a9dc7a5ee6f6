"""`portal ledger check`: the ledger's invariants, for every account."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, true
from sqlmodel import Session

from portal import db
from portal.ledger.models import CreditState, Entry, Hold, Lot, Transaction
from portal.ledger.rules import LotKind


@dataclass(frozen=True)
class Problem:
    account_id: int | None
    message: str

    def __str__(self) -> str:
        return f"account {self.account_id}: {self.message}" if self.account_id else self.message


def _sums(session: Session, column, *where, group=None):
    group = group if group is not None else column.table.c.account_id
    rows = session.execute(select(group.label("key"), func.coalesce(func.sum(column), 0).label("total"))
                           .where(*where).group_by(group))
    return {row.key: int(row.total) for row in rows}


def check(session: Session, *, now: datetime, account_id: int | None = None) -> tuple[list[Problem], list[str]]:
    """(problems, notes) for every account, or one: problems break an invariant; notes are
    lots waiting for the expiry sweep. Every figure comes from one snapshot."""
    with db.read(session, snapshot=True):
        return _problems(session, account_id), _notes(session, account_id, now)


def _only(account_id: int | None):
    return (lambda column: column == account_id) if account_id is not None else (lambda column: true())


def _problems(session: Session, account_id: int | None) -> list[Problem]:
    only = _only(account_id)
    states = {s.account_id: s for s in session.scalars(select(CreditState).where(only(CreditState.account_id)))}
    lot_sums = _sums(session, Lot.remaining, only(Lot.account_id))
    journal_sums = _sums(session, Transaction.amount, only(Transaction.account_id))
    open_holds = _sums(session, Hold.amount, Hold.closed_at.is_(None), only(Hold.account_id))
    problems = []
    for account in sorted(set(states) | set(lot_sums) | set(journal_sums)):
        state = states.get(account)
        if state is None:
            problems.append(Problem(account, "has lots or journal lines but no credit state"))
            continue
        figures = {
            "cached balance": state.balance,
            "sum of lots' remaining": lot_sums.get(account, 0),
            "sum of journal": journal_sums.get(account, 0),
        }
        if len(set(figures.values())) != 1:
            problems.append(Problem(account, "; ".join(f"{name} {value}" for name, value in figures.items())))
        if state.held != open_holds.get(account, 0):
            problems.append(Problem(account, f"cached held {state.held}; open holds {open_holds.get(account, 0)}"))
        if state.balance < state.floor:
            problems.append(Problem(account, f"balance {state.balance} below floor {state.floor}"))
    return problems + _lot_problems(session, only)


def _notes(session: Session, account_id: int | None, now: datetime) -> list[str]:
    due = select(Lot).where(Lot.remaining > 0, Lot.expires_at <= now, Lot.kind != LotKind.LINE,
                            _only(account_id)(Lot.account_id))
    return [
        f"account {lot.account_id}: lot #{lot.id} expired at {lot.expires_at.isoformat()} with {lot.remaining} "
        "left, not yet written off (run `portal expire`)"
        for lot in session.scalars(due)
    ]


def _lot_problems(session: Session, only) -> list[Problem]:
    problems = []
    entry_sums = {
        row.lot_id: int(row.total)
        for row in session.execute(
            select(Entry.lot_id, func.sum(Entry.amount).label("total")).join(Lot, Lot.id == Entry.lot_id)
            .where(only(Lot.account_id)).group_by(Entry.lot_id)
        )
    }
    for lot in session.scalars(select(Lot).where(only(Lot.account_id))):
        if lot.remaining < 0 or (lot.remaining > lot.amount and lot.kind != LotKind.LINE):
            problems.append(Problem(lot.account_id, f"lot #{lot.id} remaining {lot.remaining} outside 0..{lot.amount}"))
        if entry_sums.get(lot.id, 0) != lot.remaining:
            problems.append(
                Problem(lot.account_id, f"lot #{lot.id} remaining {lot.remaining}; its entries sum to {entry_sums.get(lot.id, 0)}")
            )
    return problems
