"""Ledger services: one transaction each, the account's credit row locked first.

Every write is keyed by an idempotency key unique per account: a retry with the same key and
the same request returns the first result and changes nothing; the same key with a different
request raises IdempotencyConflict. Due lots are written off lazily inside every write.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlmodel import Session

from portal.ledger import rules
from portal.ledger.models import CreditState, Entry, Hold, HoldPart, Lot, Transaction
from portal.ledger.rules import InsufficientCredit  # noqa: F401  (re-exported for callers)

HOLD_LIFETIME = timedelta(hours=2)


class IdempotencyConflict(Exception):
    """The idempotency key was used before for a different request."""


class UnknownHold(Exception):
    pass


class HoldClosed(Exception):
    pass


class ChargeExceedsHold(ValueError):
    pass


class NothingToRefund(Exception):
    pass


@dataclass(frozen=True)
class Result:
    transaction: Transaction
    replayed: bool


def fingerprint(**request) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()


# -- locking and bookkeeping helpers (they never commit) ----------------------------------


def open_state(session: Session, *, account_id: int, now: datetime) -> CreditState:
    """Create the account's credit row; called in the transaction that creates the account."""
    state = CreditState(account_id=account_id, balance=0, held=0, floor=0, billing_mode="prepaid", updated_at=now)
    session.add(state)
    return state


def lock(session: Session, account_id: int) -> CreditState:
    """The account's credit row, locked for the rest of the transaction (SQLite: the
    transaction already began with BEGIN IMMEDIATE)."""
    session.flush()
    session.expire_all()  # whatever this session read before the lock may be stale
    query = select(CreditState).where(CreditState.account_id == account_id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return session.scalars(query).one()


def lots_of(session: Session, account_id: int) -> list[Lot]:
    query = select(Lot).where(Lot.account_id == account_id, Lot.remaining > 0).order_by(Lot.expires_at, Lot.id)
    return list(session.scalars(query))


def _previous(session: Session, account_id: int, key: str, request_hash: str) -> Transaction | None:
    query = select(Transaction).where(Transaction.account_id == account_id, Transaction.idempotency_key == key)
    found = session.scalars(query).first()
    if found is not None and found.request_hash != request_hash:
        raise IdempotencyConflict(key)
    return found


def _book(
    session: Session, state: CreditState, *, kind: str, entries: list[tuple[Lot, int]], key: str,
    request_hash: str, reason: str, now: datetime, hold_id: int | None = None, held_change: int = 0,
) -> Transaction:
    amount = sum(change for _, change in entries)
    for lot, change in entries:
        lot.remaining += change
    state.balance += amount
    state.held += held_change
    state.updated_at = now
    transaction = Transaction(
        account_id=state.account_id, kind=kind, amount=amount, balance_after=state.balance,
        held_after=state.held, idempotency_key=key, request_hash=request_hash, reason=reason[:300],
        hold_id=hold_id, occurred_at=now,
    )
    session.add(transaction)
    session.flush()
    session.add_all(Entry(transaction_id=transaction.id, lot_id=lot.id, amount=change) for lot, change in entries if change)
    return transaction


def write_off_due(session: Session, state: CreditState, now: datetime) -> list[Transaction]:
    """Book an expiry for every lot whose time has come, once per lot."""
    due = [lot for lot in lots_of(session, state.account_id) if rules.is_due(lot, now)]
    booked = []
    for lot in due:
        key = f"expire:lot:{lot.id}:{_expiries_of(session, lot.id) + 1}"
        booked.append(
            _book(session, state, kind="expire", entries=[(lot, -lot.remaining)], key=key,
                  request_hash=fingerprint(lot=lot.id), reason=f"expired lot #{lot.id}", now=now)
        )
        lot.expired_at = lot.expired_at or lot.expires_at
    return booked


def _expiries_of(session: Session, lot_id: int) -> int:
    query = (
        select(func.count()).select_from(Entry).join(Transaction, Transaction.id == Entry.transaction_id)
        .where(Entry.lot_id == lot_id, Transaction.kind == "expire")
    )
    return session.scalar(query)


def grant_in(
    session: Session, state: CreditState, *, kind: str, amount: int, expires_at: datetime, source_ref: str,
    key: str, reason: str, now: datetime, issued_at: datetime | None = None,
) -> Result:
    issued_at = issued_at or now
    request_hash = fingerprint(op="grant", kind=kind, amount=amount, expires_at=expires_at, source=source_ref)
    previous = _previous(session, state.account_id, key, request_hash)
    if previous is not None:
        return Result(previous, replayed=True)
    if amount <= 0:
        raise ValueError("a grant must be positive")
    rules.check_lifetime(issued_at, expires_at)
    write_off_due(session, state, now)
    lot = Lot(account_id=state.account_id, kind=kind, amount=amount, remaining=0, issued_at=issued_at,
              expires_at=expires_at, source_ref=source_ref)
    session.add(lot)
    session.flush()
    transaction = _book(session, state, kind="grant", entries=[(lot, amount)], key=key,
                        request_hash=request_hash, reason=reason, now=now)
    if not rules.is_live(lot, now):  # granted already past its expiry (a late webhook): write it off
        write_off_due(session, state, now)
    if kind == "purchase":
        state.has_purchased = True
    return Result(transaction, replayed=False)


# -- public services: one transaction each ------------------------------------------------


def grant(
    *, session: Session, account_id: int, kind: str, amount: int, expires_at: datetime, source_ref: str,
    idempotency_key: str, reason: str, now: datetime, issued_at: datetime | None = None,
) -> Result:
    state = lock(session, account_id)
    result = grant_in(session, state, kind=kind, amount=amount, expires_at=expires_at, source_ref=source_ref,
                      key=idempotency_key, reason=reason, now=now, issued_at=issued_at)
    session.commit()
    return result


def grant_purchase(*, session: Session, account_id: int, amount: int, paid_at: datetime, payment_ref: str, now: datetime) -> Result:
    """Credit for a confirmed payment: its own lot, valid 90 days from the payment time."""
    return grant(
        session=session, account_id=account_id, kind="purchase", amount=amount,
        expires_at=rules.purchase_expiry(paid_at), source_ref=f"payment:{payment_ref}",
        idempotency_key=f"purchase:{payment_ref}", reason=f"purchase {payment_ref}", now=now, issued_at=paid_at,
    )


def debit(*, session: Session, account_id: int, amount: int, idempotency_key: str, reason: str, now: datetime) -> Result:
    """Spend `amount` from the live lots in burn order, or InsufficientCredit and no change."""
    state = lock(session, account_id)
    request_hash = fingerprint(op="debit", amount=amount)
    previous = _previous(session, account_id, idempotency_key, request_hash)
    if previous is not None:
        session.commit()
        return Result(previous, replayed=True)
    write_off_due(session, state, now)
    try:
        takes = rules.split(lots_of(session, account_id), amount, now)
    except InsufficientCredit:
        session.commit()  # keep the write-offs: they are true whatever happens to this debit
        raise
    transaction = _book(session, state, kind="debit", entries=[(t.lot, -t.amount) for t in takes],
                        key=idempotency_key, request_hash=request_hash, reason=reason, now=now)
    session.commit()
    return Result(transaction, replayed=False)


def hold(
    *, session: Session, account_id: int, amount: int, idempotency_key: str, reason: str, now: datetime,
    lifetime: timedelta = HOLD_LIFETIME,
) -> Hold:
    """Set `amount` aside from the live lots; the available balance drops by it at once."""
    state = lock(session, account_id)
    request_hash = fingerprint(op="hold", amount=amount)
    previous = _previous(session, account_id, idempotency_key, request_hash)
    if previous is not None:
        found = session.get(Hold, previous.hold_id)
        session.commit()
        return found
    write_off_due(session, state, now)
    try:
        takes = rules.split(lots_of(session, account_id), amount, now)
    except InsufficientCredit:
        session.commit()
        raise
    held = Hold(account_id=account_id, amount=amount, reason=reason[:300], created_at=now, expires_at=now + lifetime)
    session.add(held)
    session.flush()
    session.add_all(HoldPart(hold_id=held.id, lot_id=t.lot.id, amount=t.amount) for t in takes)
    _book(session, state, kind="hold", entries=[(t.lot, -t.amount) for t in takes], key=idempotency_key,
          request_hash=request_hash, reason=reason, now=now, hold_id=held.id, held_change=amount)
    session.commit()
    return held


def settle(*, session: Session, hold_id: int, charged: int, now: datetime) -> Hold:
    """Keep `charged` of the hold and give the rest back to the lots it came from. A
    returned part whose lot has expired meanwhile is written off at once."""
    found = session.get(Hold, hold_id)
    if found is None:
        raise UnknownHold(hold_id)
    state = lock(session, found.account_id)
    held = session.get(Hold, hold_id)
    if held.closed_at is not None:
        if held.charged == charged:
            session.commit()
            return held
        raise HoldClosed(hold_id)
    if not 0 <= charged <= held.amount:
        raise ChargeExceedsHold(f"charge {charged} outside 0..{held.amount}")
    _close(session, state, held, charged, now)
    write_off_due(session, state, now)
    session.commit()
    return held


def release(*, session: Session, hold_id: int, now: datetime) -> Hold:
    return settle(session=session, hold_id=hold_id, charged=0, now=now)


def _close(session: Session, state: CreditState, held: Hold, charged: int, now: datetime) -> None:
    parts = session.scalars(select(HoldPart).where(HoldPart.hold_id == held.id)).all()
    lots = {lot.id: lot for lot in session.scalars(select(Lot).where(Lot.id.in_([p.lot_id for p in parts])))}
    ordered = sorted(((lots[p.lot_id], p.amount) for p in parts), key=lambda pair: rules.burn_key(pair[0]))
    returns = rules.assign_charge(ordered, charged)
    held.charged, held.closed_at = charged, now
    _book(session, state, kind="release", entries=returns, key=f"hold:{held.id}:close",
          request_hash=fingerprint(hold=held.id, charged=charged),
          reason=f"{held.reason}: charged {charged}, released {held.amount - charged}", now=now,
          hold_id=held.id, held_change=-held.amount)


def expire(*, session: Session, account_id: int, now: datetime) -> int:
    """Write off the account's due lots and release its stale holds; returns how many lines."""
    state = lock(session, account_id)
    stale = session.scalars(
        select(Hold).where(Hold.account_id == account_id, Hold.closed_at.is_(None), Hold.expires_at <= now)
    ).all()
    for held in stale:
        _close(session, state, held, 0, now)
    booked = write_off_due(session, state, now)
    session.commit()
    return len(booked) + len(stale)


def accounts_with_due_work(*, session: Session, now: datetime) -> list[int]:
    due_lots = select(Lot.account_id).where(Lot.remaining > 0, Lot.expires_at <= now)
    stale_holds = select(Hold.account_id).where(Hold.closed_at.is_(None), Hold.expires_at <= now)
    found = sorted(set(session.scalars(due_lots)) | set(session.scalars(stale_holds)))
    session.commit()
    return found


def refund_lot(*, session: Session, lot_id: int, idempotency_key: str, reason: str, now: datetime) -> Result:
    """Take back a lot's unused remainder (for a refunded payment); the spent part stays spent."""
    found = session.get(Lot, lot_id)
    if found is None:
        raise NothingToRefund(lot_id)
    state = lock(session, found.account_id)
    request_hash = fingerprint(op="refund", lot=lot_id)
    previous = _previous(session, state.account_id, idempotency_key, request_hash)
    if previous is not None:
        session.commit()
        return Result(previous, replayed=True)
    write_off_due(session, state, now)
    lot = session.get(Lot, lot_id)
    entries = [(lot, -lot.remaining)] if lot.remaining else []
    transaction = _book(session, state, kind="refund", entries=entries, key=idempotency_key,
                        request_hash=request_hash, reason=reason, now=now)
    lot.refunded_at = now
    session.commit()
    return Result(transaction, replayed=False)


def grant_trial_in(session: Session, *, account_id: int, phone_e164: str, amount: int, now: datetime) -> Result | None:
    """Trial credit, once per account and once per mobile number; None when already given.
    Runs inside the caller's transaction (the one that verifies the number)."""
    state = lock(session, account_id)
    given = select(Transaction.id).where(Transaction.account_id == account_id, Transaction.idempotency_key == "trial")
    if session.scalars(given).first() is not None:
        return None
    if session.scalars(select(Lot.id).where(Lot.source_ref == f"trial:{phone_e164}")).first() is not None:
        return None
    return grant_in(
        session, state, kind="trial", amount=amount, expires_at=now + rules.TRIAL_LIFETIME,
        source_ref=f"trial:{phone_e164}", key="trial", reason="trial credit", now=now,
    )
