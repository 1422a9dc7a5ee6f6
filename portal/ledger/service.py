"""The ledger's public services: one unit of work each (`db.write`), the account's credit row
locked first.

Every write is keyed by an idempotency key unique per account: a retry with the same key and
the same request returns the first result and changes nothing; the same key with a different
request raises IdempotencyConflict. Due lots are written off lazily inside every write.

The layers below are `steps` (the in-transaction steps, which other packages also run under
their own lock) and `writes` (the database writes). What callers use of them is re-exported
here, so a caller keeps one import: `from portal.ledger import service as ledger`.
"""

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from portal import db
from portal.ledger import rules
from portal.ledger.models import IDEMPOTENCY_CONSTRAINT, LOTS, Hold, Transaction
from portal.ledger.rules import InsufficientCredit, LotKind, ReasonTooLong
from portal.ledger.steps import (
    HOLD_LIFETIME,
    IdempotencyConflict,
    LiveLot,
    Result,
    State,
    close,
    close_hold_in,
    debit_in,
    fingerprint,
    freeze_lot_in,
    grant_in,
    grant_trial_in,
    hold_in,
    keep_hold_in,
    lock,
    lots_of,
    mark_refunded_in,
    open_state,
    refund_lot_in,
    replay,
    reverse_in,
    settle_in,
    take_back_in,
    write_off_due,
)
from portal.ledger.writes import Rider, RiderRows

__all__ = [
    "HOLD_LIFETIME", "ChargeExceedsHold", "HoldClosed", "IdempotencyConflict", "InsufficientCredit", "LiveLot",
    "NothingToRefund", "ReasonTooLong", "ReservedKey", "Result", "Rider", "RiderRows", "State", "UnknownHold",
    "accounts_with_due_work", "close_hold_in", "debit", "debit_in", "expire", "freeze_lot_in", "grant", "grant_in",
    "grant_purchase", "grant_trial_in", "hold", "hold_in", "keep_hold_in", "lock", "lots_of", "mark_refunded_in", "open_state",
    "refund_lot", "refund_lot_in", "release", "reverse_in", "settle", "settle_in", "take_back_in",
]


class ReservedKey(ValueError):
    """Keys starting with "~" belong to the ledger itself (trial, expiry, hold closing)."""


class UnknownHold(Exception):
    pass


class HoldClosed(Exception):
    pass


class ChargeExceedsHold(ValueError):
    pass


class NothingToRefund(Exception):
    pass


def _start(session: Session, account_id: int, key: str, request_hash: str) -> tuple[State, list[LiveLot], Result | None]:
    """Lock, read, and tell whether `key` was already booked for this same request."""
    if key.startswith("~"):
        raise ReservedKey(key)
    state, lots = lock(session, account_id, key)
    return state, lots, replay(state, request_hash, key)


def _book_once(session: Session, account_id: int, key: str, request_hash: str, book):
    """Book under `key` in one unit of work: `book(state, lots)`, or the first result when the
    key was booked before. If a concurrent request booked the same key first (the journal's
    unique key refuses ours), the unit rolls back and a fresh one answers with that first
    result; inside a caller's own unit, the clash is the caller's to handle."""
    try:
        return _lock_and_book(session, account_id, key, request_hash, book)
    except IntegrityError as error:
        if db.violated_constraint(error) != IDEMPOTENCY_CONSTRAINT or session.in_transaction():
            raise
    with db.write(session):
        return replay(lock(session, account_id, key)[0], request_hash, key)


def _lock_and_book(session: Session, account_id: int, key: str, request_hash: str, book):
    """InsufficientCredit is raised after the unit commits: the write-offs booked before the
    refusal are true whatever becomes of this request."""
    with db.write(session):
        state, lots, replayed = _start(session, account_id, key, request_hash)
        if replayed is not None:
            return replayed
        try:
            return book(state, lots)
        except InsufficientCredit as error:
            refused = error
    raise refused


def grant(
    *, session: Session, account_id: int, kind: LotKind, amount: int, expires_at: datetime, source_ref: str,
    idempotency_key: str, reason: str, now: datetime, issued_at: datetime | None = None,
) -> Result:
    request_hash = fingerprint(op="grant", kind=kind, amount=amount, expires_at=expires_at, source=source_ref)
    return _book_once(session, account_id, idempotency_key, request_hash, lambda state, lots: grant_in(
        session, state, lots, kind=kind, amount=amount, expires_at=expires_at, source_ref=source_ref,
        key=idempotency_key, reason=reason, now=now, issued_at=issued_at,
    ))


def grant_purchase(*, session: Session, account_id: int, amount: int, paid_at: datetime, payment_ref: str, now: datetime) -> Result:
    """Credit for a confirmed payment: its own lot, valid 90 days from the payment time."""
    return grant(
        session=session, account_id=account_id, kind=LotKind.PURCHASE, amount=amount,
        expires_at=rules.purchase_expiry(paid_at), source_ref=f"payment:{payment_ref}",
        idempotency_key=f"purchase:{payment_ref}", reason=f"purchase {payment_ref}", now=now, issued_at=paid_at,
    )


def debit(*, session: Session, account_id: int, amount: int, idempotency_key: str, reason: str, now: datetime) -> Result:
    """Spend `amount` from the live lots in burn order, or InsufficientCredit and nothing
    booked but the write-offs."""
    request_hash = fingerprint(op="debit", amount=amount, reason=reason)
    return _book_once(session, account_id, idempotency_key, request_hash, lambda state, lots: debit_in(
        session, state, lots, amount=amount, key=idempotency_key, reason=reason, now=now))


def hold(
    *, session: Session, account_id: int, amount: int, idempotency_key: str, reason: str, now: datetime,
    lifetime: timedelta = HOLD_LIFETIME,
) -> Hold:
    """Set `amount` aside from the live lots; the available balance drops by it at once."""
    request_hash = fingerprint(op="hold", amount=amount, reason=reason)
    outcome = _book_once(session, account_id, idempotency_key, request_hash, lambda state, lots: hold_in(
        session, state, lots, amount=amount, key=idempotency_key, reason=reason, now=now, lifetime=lifetime))
    if isinstance(outcome, Hold):
        return outcome
    with db.read(session):  # a replay: the hold the first request set
        return session.scalars(select(Hold).join(Transaction, Transaction.hold_id == Hold.id)
                               .where(Transaction.id == outcome.transaction_id)).one()


def settle(*, session: Session, hold_id: int, charged: int, now: datetime) -> Hold:
    """Keep `charged` of the hold and give the rest back to the lots it came from. A
    returned part whose lot has expired meanwhile is written off at once."""
    with db.write(session):
        account_id = session.scalar(select(Hold.account_id).where(Hold.id == hold_id))
        if account_id is None:
            raise UnknownHold(hold_id)
        state, _ = lock(session, account_id)
        held = session.get(Hold, hold_id, populate_existing=True)
        if held.closed_at is not None:
            if held.charged == charged:
                return held
            raise HoldClosed(hold_id)
        if not 0 <= charged <= held.amount:
            raise ChargeExceedsHold(f"charge {charged} outside 0..{held.amount}")
        close(session, state, held, charged, now)
        write_off_due(session, state, lots_of(session, account_id), now)
        return held


def release(*, session: Session, hold_id: int, now: datetime) -> Hold:
    return settle(session=session, hold_id=hold_id, charged=0, now=now)


def expire(*, session: Session, account_id: int, now: datetime) -> int:
    """Write off the account's due lots and release its stale holds; returns how many lines."""
    with db.write(session):
        state, _ = lock(session, account_id)
        stale = session.scalars(
            select(Hold).where(Hold.account_id == account_id, Hold.closed_at.is_(None), Hold.expires_at <= now)
            .execution_options(populate_existing=True)
        ).all()
        for held in stale:
            close(session, state, held, 0, now)
        return write_off_due(session, state, lots_of(session, account_id), now) + len(stale)


def accounts_with_due_work(*, session: Session, now: datetime) -> list[int]:
    due_lots = select(LOTS.c.account_id).where(  # a suspended credit line is closed, never due
        LOTS.c.remaining > 0, LOTS.c.kind != LotKind.LINE, (LOTS.c.expires_at <= now) | LOTS.c.refunded_at.is_not(None)
    )
    stale_holds = select(Hold.account_id).where(Hold.closed_at.is_(None), Hold.expires_at <= now)
    with db.read(session):
        return sorted(set(session.scalars(due_lots)) | set(session.scalars(stale_holds)))


def refund_lot(*, session: Session, lot_id: int, idempotency_key: str, reason: str, now: datetime) -> Result:
    """Take back a lot's unused remainder (for a refunded payment); the spent part stays spent."""
    with db.read(session):  # a lot never changes account: read outside the locked unit
        account_id = session.scalar(select(LOTS.c.account_id).where(LOTS.c.id == lot_id))
    if account_id is None:
        raise NothingToRefund(lot_id)
    request_hash = fingerprint(op="refund", lot=lot_id)
    return _book_once(session, account_id, idempotency_key, request_hash, lambda state, lots: refund_lot_in(
        session, state, lots, lot_id=lot_id, key=idempotency_key, reason=reason, now=now))
