"""A credit line (postpay) as a ledger lot of kind `line`: opened with the limit as its amount,
spent after every prepaid lot by the ordinary debit and hold steps, given back what invoices'
payments cover, resized when the limit changes, closed for sends while suspended. Each step
runs in the caller's unit of work, the account locked by the caller (`steps.lock`, with the
step's key); each books a journal line of kind `line`, so the cached balance, the lots and the
journal keep agreeing. Nothing here commits."""

from datetime import datetime, timedelta

from sqlalchemy import insert, select, update
from sqlmodel import Session

from portal.ledger import rules
from portal.ledger.models import LOTS
from portal.ledger.rules import LotKind, TransactionKind
from portal.ledger.steps import LiveLot, Result, State, _book, fingerprint, replay
from portal.ledger.writes import Change


class LimitBelowUsage(ValueError):
    """A limit lower than what is already used of the line."""

    def __init__(self, used: int):
        super().__init__(f"{used} milli-yen of the line is used; the limit cannot go below it")
        self.used = used


def _line_lot(session: Session, lot_id: int, account_id: int) -> LiveLot:
    row = session.execute(select(LOTS).where(LOTS.c.id == lot_id, LOTS.c.account_id == account_id,
                                             LOTS.c.kind == LotKind.LINE)).one()
    return LiveLot(id=row.id, kind=row.kind, amount=row.amount, remaining=row.remaining, issued_at=row.issued_at,
                   expires_at=row.expires_at, refunded_at=row.refunded_at)


def open_in(session: Session, state: State, *, limit: int, key: str, reason: str, now: datetime) -> int:
    """Open the account's credit line with `limit` (milli-yen): a new lot, never expiring;
    returns its id (the same lot on a replay of `key`)."""
    if limit <= 0:
        raise ValueError("a limit must be positive")
    source_ref = f"line:{state.account_id}:{key}"
    if replay(state, fingerprint(op="open_line", limit=limit), key) is not None:
        return session.scalar(select(LOTS.c.id).where(LOTS.c.source_ref == source_ref))
    lot_id = session.execute(insert(LOTS).returning(LOTS.c.id), {
        "account_id": state.account_id, "kind": LotKind.LINE, "amount": limit, "remaining": 0, "issued_at": now,
        "expires_at": rules.LINE_OPEN, "source_ref": source_ref}).scalar_one()
    lot = LiveLot(lot_id, LotKind.LINE, limit, 0, now, rules.LINE_OPEN)
    _book(session, state, kind=TransactionKind.LINE, changes=[Change(lot, limit)], key=key,
          request_hash=fingerprint(op="open_line", limit=limit), reason=reason, now=now)
    return lot_id


def resize_in(session: Session, state: State, *, lot_id: int, limit: int, key: str, reason: str,
              now: datetime) -> Result | None:
    """Change the line's limit: what is available moves by the difference, what is used stays.
    LimitBelowUsage when the new limit is under what is used; None when the limit is unchanged."""
    request_hash = fingerprint(op="resize_line", lot=lot_id, limit=limit)
    replayed = replay(state, request_hash, key)
    if replayed is not None:
        return replayed
    lot = _line_lot(session, lot_id, state.account_id)
    change = limit - lot.amount
    if change == 0:
        return None
    if lot.remaining + change < 0:
        raise LimitBelowUsage(lot.amount - lot.remaining)
    session.execute(update(LOTS).where(LOTS.c.id == lot_id).values(amount=limit))
    return _book(session, state, kind=TransactionKind.LINE, changes=[Change(lot, change)], key=key,
                 request_hash=request_hash, reason=reason, now=now)


def give_back_in(session: Session, state: State, *, lot_id: int, amount: int, key: str, reason: str,
                 now: datetime) -> Result | None:
    """Give `amount` of paid usage back to the line (an invoice's payment); None for nothing."""
    request_hash = fingerprint(op="give_back", lot=lot_id, amount=amount)
    replayed = replay(state, request_hash, key)
    if replayed is not None or amount == 0:
        return replayed
    lot = _line_lot(session, lot_id, state.account_id)
    return _book(session, state, kind=TransactionKind.LINE, changes=[Change(lot, amount)], key=key,
                 request_hash=request_hash, reason=reason, now=now)


def close_for_sends_in(session: Session, state: State, *, lot_id: int, now: datetime) -> None:
    """Suspend: from `now` the line is not spent (rules.is_live), whatever comes back to it
    (a lot ends after it is issued, so a line suspended at its opening moment ends a tick later)."""
    lot = _line_lot(session, lot_id, state.account_id)
    session.execute(update(LOTS).where(LOTS.c.id == lot_id).values(
        expires_at=max(now, lot.issued_at + timedelta(microseconds=1))))


def reopen_in(session: Session, state: State, *, lot_id: int) -> None:
    session.execute(update(LOTS).where(LOTS.c.id == lot_id, LOTS.c.account_id == state.account_id,
                                       LOTS.c.kind == LotKind.LINE).values(expires_at=rules.LINE_OPEN))
