"""`portal ledger check`: the ledger's invariants, for every account."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, true
from sqlmodel import Session

from portal.ledger.models import CreditState, Entry, Hold, Lot, Transaction


@dataclass(frozen=True)
class Problem:
    account_id: int | None
    message: str

    def __str__(self) -> str:
        return f"account {self.account_id}: {self.message}" if self.account_id else self.message


def _sums(session: Session, column, *where, group=None):
    group = group if group is not None else column.table.c.account_id
    rows = session.execute(select(group, func.coalesce(func.sum(column), 0)).where(*where).group_by(group))
    return {key: int(total) for key, total in rows}


def check(session: Session, *, now: datetime, account_id: int | None = None) -> tuple[list[Problem], list[str]]:
    """(problems, notes) for every account, or one: problems break an invariant; notes are
    lots waiting for the expiry sweep."""
    if session.get_bind().dialect.name == "postgresql":  # every figure from one snapshot
        session.commit()
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    only = (lambda column: column == account_id) if account_id is not None else (lambda column: true())
    states = {s.account_id: s for s in session.scalars(select(CreditState).where(only(CreditState.account_id)))}
    lot_sums = _sums(session, Lot.remaining, only(Lot.account_id))
    journal_sums = _sums(session, Transaction.amount, only(Transaction.account_id))
    open_holds = _sums(session, Hold.amount, Hold.closed_at.is_(None), only(Hold.account_id))
    problems = []
    for account_id in sorted(set(states) | set(lot_sums) | set(journal_sums)):
        state = states.get(account_id)
        if state is None:
            problems.append(Problem(account_id, "has lots or journal lines but no credit state"))
            continue
        figures = {
            "cached balance": state.balance,
            "sum of lots' remaining": lot_sums.get(account_id, 0),
            "sum of journal": journal_sums.get(account_id, 0),
        }
        if len(set(figures.values())) != 1:
            problems.append(Problem(account_id, "; ".join(f"{name} {value}" for name, value in figures.items())))
        if state.held != open_holds.get(account_id, 0):
            problems.append(Problem(account_id, f"cached held {state.held}; open holds {open_holds.get(account_id, 0)}"))
        if state.balance < state.floor:
            problems.append(Problem(account_id, f"balance {state.balance} below floor {state.floor}"))
    problems += _lot_problems(session, only)
    notes = [
        f"account {lot.account_id}: lot #{lot.id} expired at {lot.expires_at.isoformat()} with {lot.remaining} "
        "left, not yet written off (run `portal expire`)"
        for lot in session.scalars(select(Lot).where(Lot.remaining > 0, Lot.expires_at <= now, only(Lot.account_id)))
    ]
    session.commit()
    return problems, notes


def _lot_problems(session: Session, only) -> list[Problem]:
    problems = []
    entry_sums = {
        lot_id: int(total)
        for lot_id, total in session.execute(
            select(Entry.lot_id, func.sum(Entry.amount)).join(Lot, Lot.id == Entry.lot_id)
            .where(only(Lot.account_id)).group_by(Entry.lot_id)
        )
    }
    for lot in session.scalars(select(Lot).where(only(Lot.account_id))):
        if not 0 <= lot.remaining <= lot.amount:
            problems.append(Problem(lot.account_id, f"lot #{lot.id} remaining {lot.remaining} outside 0..{lot.amount}"))
        if entry_sums.get(lot.id, 0) != lot.remaining:
            problems.append(
                Problem(lot.account_id, f"lot #{lot.id} remaining {lot.remaining}; its entries sum to {entry_sums.get(lot.id, 0)}")
            )
    return problems
