"""Ledger services: one transaction each, the account's credit row locked first.

Every write is keyed by an idempotency key unique per account: a retry with the same key and
the same request returns the first result and changes nothing; the same key with a different
request raises IdempotencyConflict. Due lots are written off lazily inside every write.

The hot path (lock, read the lots, book) uses SQLAlchemy Core on the tables: a debit is a
handful of statements and no unit-of-work bookkeeping.
"""

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from portal.ledger import rules
from portal.ledger.models import CreditState, Entry, Hold, HoldPart, Lot, Transaction
from portal.ledger.rules import InsufficientCredit

__all__ = ["InsufficientCredit"]

HOLD_LIFETIME = timedelta(hours=2)
STATES, LOTS = CreditState.__table__, Lot.__table__
JOURNAL, ENTRIES = Transaction.__table__, Entry.__table__
KEY_CONSTRAINT = "uq_transaction_idempotency"


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
    transaction_id: int
    amount: int
    balance_after: int
    replayed: bool


@dataclass
class State:
    account_id: int
    balance: int
    held: int
    previous: tuple[int, str, int, int] | None  # id, request hash, amount, balance after


@dataclass
class LiveLot:
    """A lot as the ledger computes with it inside one transaction."""

    id: int
    kind: str
    amount: int
    remaining: int
    issued_at: datetime
    expires_at: datetime
    refunded_at: datetime | None = None


def fingerprint(**request) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()


# -- locking, reading and booking (helpers: they never commit) -----------------------------


def open_state(session: Session, *, account_id: int, now: datetime) -> None:
    """Create the account's credit row; called in the transaction that creates the account."""
    session.flush()
    session.execute(insert(STATES).values(account_id=account_id, balance=0, held=0, floor=0,
                                          billing_mode="prepaid", has_purchased=False, updated_at=now))


_PREVIOUS = JOURNAL.c.id, JOURNAL.c.request_hash, JOURNAL.c.amount, JOURNAL.c.balance_after
_LOCK = (
    select(STATES.c.balance, STATES.c.held, *_PREVIOUS)
    .select_from(STATES.outerjoin(JOURNAL, (JOURNAL.c.account_id == STATES.c.account_id)
                                  & (JOURNAL.c.idempotency_key == bindparam("key"))))
    .where(STATES.c.account_id == bindparam("account_id"))
)
_LOT_COLUMNS = (LOTS.c.id, LOTS.c.kind, LOTS.c.amount, LOTS.c.remaining, LOTS.c.issued_at, LOTS.c.expires_at,
                LOTS.c.refunded_at)
_LOTS_WITH_CREDIT = select(*_LOT_COLUMNS).where(LOTS.c.account_id == bindparam("account_id"), LOTS.c.remaining > 0)


_LOCK_FUNCTION = text("SELECT * FROM ledger_lock(:account_id, :key)")


def lock(session: Session, account_id: int, key: str | None = None) -> tuple[State, list[LiveLot]]:
    """Lock the account's credit row until the transaction ends, then read the journal line
    already booked under `key` (if any) and the lots with credit left. PostgreSQL: FOR UPDATE
    and the reads in one call of ledger_lock() (see migration 0002). SQLite: the transaction
    began with BEGIN IMMEDIATE, so two plain reads are already serialised."""
    params = {"account_id": account_id, "key": key or ""}
    if session.get_bind().dialect.name == "postgresql":
        rows = session.execute(_LOCK_FUNCTION, params).all()
        lots = [LiveLot(*row[6:]) for row in rows if row[6] is not None]
    else:
        rows = session.execute(_LOCK, params).all()
        lots = [LiveLot(*row) for row in session.execute(_LOTS_WITH_CREDIT, params)]
    row = rows[0]
    return State(account_id, row[0], row[1], tuple(row[2:6]) if row[2] is not None else None), lots


def lots_of(session: Session, account_id: int) -> list[LiveLot]:
    """The account's lots with credit left (only after the lock: then never stale)."""
    return [LiveLot(*row) for row in session.execute(_LOTS_WITH_CREDIT, {"account_id": account_id})]


class ReservedKey(ValueError):
    """Keys starting with "~" belong to the ledger itself (trial, expiry, hold closing)."""


def _start(session: Session, account_id: int, key: str, request_hash: str) -> tuple[State, list[LiveLot], Result | None]:
    """Lock, read, and tell whether `key` was already booked for this same request."""
    if key.startswith("~"):
        raise ReservedKey(key)
    state, lots = lock(session, account_id, key)
    return state, lots, _replay(state, request_hash, key)


def _replay(state: State, request_hash: str, key: str) -> Result | None:
    if state.previous is None:
        return None
    transaction_id, previous_hash, amount, balance_after = state.previous
    if previous_hash != request_hash:
        raise IdempotencyConflict(key)
    return Result(transaction_id, amount, balance_after, replayed=True)


@dataclass(frozen=True)
class Rider:
    """Rows the caller writes with a ledger line, in the same statement on PostgreSQL (one
    round trip less on a hot path): `cte` is one or more `name AS (INSERT …)` clauses whose
    parameters are prefixed `r_`, and `selects` optional expressions read back with the line
    (their values land in `results`); `fallback` does the same on other databases and returns
    those values."""

    cte: str
    params: dict
    fallback: object  # Callable[[Session], tuple]
    selects: str = ""
    results: list = field(default_factory=list)


def _book(
    session: Session, state: State, *, kind: str, changes: list[tuple[LiveLot, int]], key: str,
    request_hash: str, reason: str, now: datetime, hold_id: int | None = None, held_change: int = 0,
    rider: Rider | None = None,
) -> Result:
    """Apply `changes` to the lots and the cached totals and append the journal line."""
    changes = [(lot, change) for lot, change in changes if change]
    amount = sum(change for _, change in changes)
    for lot, change in changes:
        lot.remaining += change
    state.balance += amount
    state.held += held_change
    line = {"account_id": state.account_id, "kind": kind, "amount": amount, "balance_after": state.balance,
            "held_after": state.held, "idempotency_key": key, "request_hash": request_hash,
            "reason": reason[:300], "hold_id": hold_id, "occurred_at": now}
    if session.get_bind().dialect.name == "postgresql":
        return Result(_write_in_one_statement(session, state, changes, line, now, rider), amount, state.balance,
                      replayed=False)
    transaction_id = _write_statement_by_statement(session, state, changes, line, now)
    if rider is not None:
        rider.results[:] = rider.fallback(session) or ()
    return Result(transaction_id, amount, state.balance, replayed=False)


def _write_statement_by_statement(session: Session, state: State, changes, line: dict, now: datetime) -> int:
    if changes:
        session.execute(
            update(LOTS).where(LOTS.c.id == bindparam("lot")).values(remaining=LOTS.c.remaining + bindparam("change")),
            [{"lot": lot.id, "change": change} for lot, change in changes],
        )
    session.execute(update(STATES).where(STATES.c.account_id == state.account_id)
                    .values(balance=state.balance, held=state.held, updated_at=now))
    transaction_id = session.execute(insert(JOURNAL).returning(JOURNAL.c.id), line).scalar_one()
    if changes:
        session.execute(insert(ENTRIES), [{"transaction_id": transaction_id, "lot_id": lot.id, "amount": change}
                                          for lot, change in changes])
    return transaction_id


# PostgreSQL runs the same four writes as one statement (data-modifying CTEs): one round trip
# instead of four on the hottest path of the product. Same tables, same constraints, same result.
_ONE_STATEMENT = text("""
WITH changes AS (
    SELECT unnest(CAST(:lot_ids AS bigint[])) AS lot_id, unnest(CAST(:lot_changes AS bigint[])) AS change
), lots AS (
    UPDATE credit_lots SET remaining = credit_lots.remaining + changes.change
    FROM changes WHERE credit_lots.id = changes.lot_id
    RETURNING credit_lots.id
), state AS (
    UPDATE credit_states SET balance = :balance_after, held = :held_after, updated_at = :occurred_at
    WHERE account_id = :account_id
    RETURNING account_id
), line AS (
    INSERT INTO credit_transactions
        (account_id, kind, amount, balance_after, held_after, idempotency_key, request_hash, reason, hold_id, occurred_at)
    VALUES (:account_id, :kind, :amount, :balance_after, :held_after, :idempotency_key, :request_hash, :reason,
            :hold_id, :occurred_at)
    RETURNING id
), entries AS (
    INSERT INTO credit_entries (transaction_id, lot_id, amount)
    SELECT line.id, changes.lot_id, changes.change FROM line, changes
    RETURNING id
)
SELECT line.id FROM line
""")


_WITH_RIDERS: dict[tuple[str, str], object] = {}


def _write_in_one_statement(session: Session, state: State, changes, line: dict, now: datetime,
                            rider: Rider | None = None) -> int:
    params = line | {"lot_ids": [lot.id for lot, _ in changes], "lot_changes": [change for _, change in changes]}
    if rider is None:
        return session.execute(_ONE_STATEMENT, params).scalar_one()
    statement = _WITH_RIDERS.get((rider.cte, rider.selects))
    if statement is None:
        selects = f", {rider.selects}" if rider.selects else ""
        sql = _ONE_STATEMENT.text.replace("\nSELECT line.id FROM line", f",\n{rider.cte}\nSELECT line.id{selects} FROM line")
        if sql == _ONE_STATEMENT.text:  # the rider must ride, or the debit would be booked without it
            raise RuntimeError("could not attach the rider to the ledger statement")
        statement = _WITH_RIDERS[(rider.cte, rider.selects)] = text(sql)
    row = session.execute(statement, params | rider.params).one()
    rider.results[:] = row[1:]
    return row[0]


def write_off_due(session: Session, state: State, lots: list[LiveLot], now: datetime) -> int:
    """Book an expiry for every lot whose time has come, once per lot; credit that came back
    to a refunded lot (from a call hold) is taken back the same way. Returns the lines booked."""
    booked = 0
    for lot in lots:
        if lot.refunded_at is not None and lot.remaining > 0:
            kind = "refund"
        elif rules.is_due(lot, now):
            kind = "expire"
        else:
            continue
        key = f"~{kind}:lot:{lot.id}:{_write_offs_of(session, lot.id, kind) + 1}"
        _book(session, state, kind=kind, changes=[(lot, -lot.remaining)], key=key,
              request_hash=fingerprint(lot=lot.id), reason=f"{kind} lot #{lot.id}", now=now)
        if kind == "expire":
            session.execute(update(LOTS).where(LOTS.c.id == lot.id, LOTS.c.expired_at.is_(None)).values(expired_at=lot.expires_at))
        booked += 1
    return booked


def _write_offs_of(session: Session, lot_id: int, kind: str) -> int:
    query = (
        select(func.count()).select_from(ENTRIES).join(JOURNAL, JOURNAL.c.id == ENTRIES.c.transaction_id)
        .where(ENTRIES.c.lot_id == lot_id, JOURNAL.c.kind == kind)
    )
    return session.scalar(query)


def _book_once(session: Session, account_id: int, key: str, request_hash: str, book):
    """Run `book` and commit. If a concurrent request booked the same key first (the
    journal's unique key refuses ours), roll back and answer with the first result."""
    try:
        result = book()
        session.commit()
        return result
    except IntegrityError as error:
        session.rollback()
        if not _is_key_clash(error):
            raise
    replay = _replay(lock(session, account_id, key)[0], request_hash, key)
    session.commit()
    return replay


def _is_key_clash(error: IntegrityError) -> bool:
    message = str(error.orig)
    return KEY_CONSTRAINT in message or "credit_transactions.account_id, credit_transactions.idempotency_key" in message


def grant_in(
    session: Session, state: State, lots: list[LiveLot], *, kind: str, amount: int, expires_at: datetime, source_ref: str,
    key: str, reason: str, now: datetime, issued_at: datetime | None = None,
) -> Result:
    """Grant inside the caller's transaction (the caller locked with `key`)."""
    issued_at = issued_at or now
    request_hash = fingerprint(op="grant", kind=kind, amount=amount, expires_at=expires_at, source=source_ref)
    replay = _replay(state, request_hash, key)
    if replay is not None:
        return replay
    if amount <= 0:
        raise ValueError("a grant must be positive")
    if issued_at > now:
        raise ValueError("a lot cannot be issued in the future")
    rules.check_lifetime(issued_at, expires_at)
    write_off_due(session, state, lots, now)
    lot_id = session.execute(
        insert(LOTS).returning(LOTS.c.id),
        {"account_id": state.account_id, "kind": kind, "amount": amount, "remaining": 0, "issued_at": issued_at,
         "expires_at": expires_at, "source_ref": source_ref},
    ).scalar_one()
    lot = LiveLot(lot_id, kind, amount, 0, issued_at, expires_at)
    result = _book(session, state, kind="grant", changes=[(lot, amount)], key=key,
                   request_hash=request_hash, reason=reason, now=now)
    if not rules.is_live(lot, now):  # granted already past its expiry (a late webhook): write it off
        write_off_due(session, state, [lot], now)
    if kind == "purchase":
        session.execute(update(STATES).where(STATES.c.account_id == state.account_id).values(has_purchased=True))
    return result


# -- public services: one transaction each ------------------------------------------------


def grant(
    *, session: Session, account_id: int, kind: str, amount: int, expires_at: datetime, source_ref: str,
    idempotency_key: str, reason: str, now: datetime, issued_at: datetime | None = None,
) -> Result:
    request_hash = fingerprint(op="grant", kind=kind, amount=amount, expires_at=expires_at, source=source_ref)
    state, lots, _ = _start(session, account_id, idempotency_key, request_hash)
    return _book_once(session, account_id, idempotency_key, request_hash, lambda: grant_in(
        session, state, lots, kind=kind, amount=amount, expires_at=expires_at, source_ref=source_ref,
        key=idempotency_key, reason=reason, now=now, issued_at=issued_at,
    ))


def grant_purchase(*, session: Session, account_id: int, amount: int, paid_at: datetime, payment_ref: str, now: datetime) -> Result:
    """Credit for a confirmed payment: its own lot, valid 90 days from the payment time."""
    return grant(
        session=session, account_id=account_id, kind="purchase", amount=amount,
        expires_at=rules.purchase_expiry(paid_at), source_ref=f"payment:{payment_ref}",
        idempotency_key=f"purchase:{payment_ref}", reason=f"purchase {payment_ref}", now=now, issued_at=paid_at,
    )


def debit(*, session: Session, account_id: int, amount: int, idempotency_key: str, reason: str, now: datetime) -> Result:
    """Spend `amount` from the live lots in burn order, or InsufficientCredit and no change."""
    request_hash = fingerprint(op="debit", amount=amount, reason=reason)
    state, lots, replay = _start(session, account_id, idempotency_key, request_hash)
    if replay is not None:
        session.commit()
        return replay
    try:
        return _book_once(session, account_id, idempotency_key, request_hash, lambda: debit_in(
            session, state, lots, amount=amount, key=idempotency_key, reason=reason, now=now))
    except InsufficientCredit:
        session.commit()  # keep the write-offs: they are true whatever happens to this debit
        raise


def hold(
    *, session: Session, account_id: int, amount: int, idempotency_key: str, reason: str, now: datetime,
    lifetime: timedelta = HOLD_LIFETIME,
) -> Hold:
    """Set `amount` aside from the live lots; the available balance drops by it at once."""
    request_hash = fingerprint(op="hold", amount=amount, reason=reason)
    state, lots, replay = _start(session, account_id, idempotency_key, request_hash)
    if replay is not None:
        return _hold_of(session, replay)
    try:
        outcome = _book_once(session, account_id, idempotency_key, request_hash, lambda: hold_in(
            session, state, lots, amount=amount, key=idempotency_key, reason=reason, now=now, lifetime=lifetime))
    except InsufficientCredit:
        session.commit()
        raise
    return outcome if isinstance(outcome, Hold) else _hold_of(session, outcome)  # a clash: the first one's hold


def _hold_of(session: Session, result: Result) -> Hold:
    found = session.scalars(select(Hold).join(Transaction, Transaction.hold_id == Hold.id)
                            .where(Transaction.id == result.transaction_id)).one()
    session.commit()
    return found


def settle(*, session: Session, hold_id: int, charged: int, now: datetime) -> Hold:
    """Keep `charged` of the hold and give the rest back to the lots it came from. A
    returned part whose lot has expired meanwhile is written off at once."""
    account_id = session.scalar(select(Hold.account_id).where(Hold.id == hold_id))
    if account_id is None:
        raise UnknownHold(hold_id)
    state, _ = lock(session, account_id)
    held = session.get(Hold, hold_id, populate_existing=True)
    if held.closed_at is not None:
        if held.charged == charged:
            session.commit()
            return held
        raise HoldClosed(hold_id)
    if not 0 <= charged <= held.amount:
        raise ChargeExceedsHold(f"charge {charged} outside 0..{held.amount}")
    _close(session, state, held, charged, now)
    write_off_due(session, state, lots_of(session, account_id), now)
    session.commit()
    return held


def release(*, session: Session, hold_id: int, now: datetime) -> Hold:
    return settle(session=session, hold_id=hold_id, charged=0, now=now)


def _close(session: Session, state: State, held: Hold, charged: int, now: datetime) -> None:
    parts = session.execute(select(HoldPart.lot_id, HoldPart.amount).where(HoldPart.hold_id == held.id)).all()
    query = select(*_LOT_COLUMNS).where(LOTS.c.id.in_([p.lot_id for p in parts]))
    lots = {row.id: LiveLot(*row) for row in session.execute(query)}
    ordered = sorted(((lots[p.lot_id], p.amount) for p in parts), key=lambda pair: rules.burn_key(pair[0]))
    held.charged, held.closed_at = charged, now
    session.flush()
    _book(session, state, kind="release", changes=rules.assign_charge(ordered, charged), key=f"~hold:{held.id}:close",
          request_hash=fingerprint(hold=held.id, charged=charged),
          reason=f"{held.reason}: charged {charged}, released {held.amount - charged}", now=now,
          hold_id=held.id, held_change=-held.amount)


def expire(*, session: Session, account_id: int, now: datetime) -> int:
    """Write off the account's due lots and release its stale holds; returns how many lines."""
    state, _ = lock(session, account_id)
    stale = session.scalars(
        select(Hold).where(Hold.account_id == account_id, Hold.closed_at.is_(None), Hold.expires_at <= now)
        .execution_options(populate_existing=True)
    ).all()
    for held in stale:
        _close(session, state, held, 0, now)
    booked = write_off_due(session, state, lots_of(session, account_id), now)
    session.commit()
    return booked + len(stale)


def accounts_with_due_work(*, session: Session, now: datetime) -> list[int]:
    due_lots = select(LOTS.c.account_id).where(
        LOTS.c.remaining > 0, (LOTS.c.expires_at <= now) | LOTS.c.refunded_at.is_not(None)
    )
    stale_holds = select(Hold.account_id).where(Hold.closed_at.is_(None), Hold.expires_at <= now)
    found = sorted(set(session.scalars(due_lots)) | set(session.scalars(stale_holds)))
    session.commit()
    return found


def refund_lot(*, session: Session, lot_id: int, idempotency_key: str, reason: str, now: datetime) -> Result:
    """Take back a lot's unused remainder (for a refunded payment); the spent part stays spent."""
    account_id = session.scalar(select(LOTS.c.account_id).where(LOTS.c.id == lot_id))
    if account_id is None:
        raise NothingToRefund(lot_id)
    request_hash = fingerprint(op="refund", lot=lot_id)
    state, lots, replay = _start(session, account_id, idempotency_key, request_hash)
    if replay is not None:
        session.commit()
        return replay
    write_off_due(session, state, lots, now)
    changes = [(lot, -lot.remaining) for lot in lots if lot.id == lot_id and lot.remaining]

    def book() -> Result:
        session.execute(update(LOTS).where(LOTS.c.id == lot_id).values(refunded_at=now))
        return _book(session, state, kind="refund", changes=changes, key=idempotency_key,
                     request_hash=request_hash, reason=reason, now=now)

    return _book_once(session, account_id, idempotency_key, request_hash, book)


def grant_trial_in(session: Session, *, account_id: int, phone_e164: str, amount: int, now: datetime) -> Result | None:
    """Trial credit, once per account and once per mobile number; None when already given.
    Runs inside the caller's transaction (the one that verifies the number)."""
    state, lots = lock(session, account_id, "~trial")
    if state.previous is not None:
        return None
    if session.scalars(select(LOTS.c.id).where(LOTS.c.source_ref == f"trial:{phone_e164}")).first() is not None:
        return None
    return grant_in(
        session, state, lots, kind="trial", amount=amount, expires_at=now + rules.TRIAL_LIFETIME,
        source_ref=f"trial:{phone_e164}", key="~trial", reason="trial credit", now=now,
    )


# -- in-transaction steps for payments (the caller locked the account and commits) -------------


def _live(lots: list[LiveLot], lot_id: int, now: datetime) -> LiveLot | None:
    return next((lot for lot in lots if lot.id == lot_id and rules.is_live(lot, now)), None)


def take_back_in(
    session: Session, state: State, lots: list[LiveLot], *, lot_id: int, amount: int, key: str, reason: str,
    now: datetime,
) -> int:
    """Take up to `amount` back from one lot's unused remainder (a refunded payment); the
    spent part stays spent and the balance never goes negative. Returns what was taken."""
    write_off_due(session, state, lots, now)
    lot = _live(lots, lot_id, now)
    taken = min(amount, lot.remaining) if lot is not None else 0
    if taken > 0:
        _book(session, state, kind="refund", changes=[(lot, -taken)], key=key,
              request_hash=fingerprint(op="take_back", lot=lot_id, amount=amount), reason=reason, now=now)
    return taken


def freeze_lot_in(session: Session, state: State, lots: list[LiveLot], *, lot_id: int, key: str, reason: str,
                  now: datetime) -> Hold | None:
    """Set a lot's whole unused remainder aside (a disputed payment) until `close_hold_in`.
    The hold lasts until the lot's own expiry: if still open then, the sweep releases it into
    the expired lot, which writes it off. None when the lot has nothing left."""
    write_off_due(session, state, lots, now)
    lot = _live(lots, lot_id, now)
    if lot is None or lot.remaining == 0:
        return None
    held = Hold(account_id=state.account_id, amount=lot.remaining, reason=reason[:300], created_at=now,
                expires_at=lot.expires_at)
    session.add(held)
    session.flush()
    session.add(HoldPart(hold_id=held.id, lot_id=lot.id, amount=lot.remaining))
    session.flush()
    _book(session, state, kind="hold", changes=[(lot, -lot.remaining)], key=key,
          request_hash=fingerprint(op="freeze", lot=lot_id), reason=reason, now=now, hold_id=held.id,
          held_change=held.amount)
    return held


def mark_refunded_in(session: Session, state: State, *, lot_id: int, now: datetime) -> None:
    """The lot's payment was refunded in full: whatever comes back to it later (a call's
    hold settling) is written off, never spendable again."""
    session.execute(update(LOTS).where(LOTS.c.id == lot_id, LOTS.c.refunded_at.is_(None)).values(refunded_at=now))
    write_off_due(session, state, lots_of(session, state.account_id), now)


def close_hold_in(session: Session, state: State, *, hold_id: int | None, now: datetime,
                  write_off_lot: int | None = None) -> None:
    """Release a hold (if any, and still open) back to its lots; with `write_off_lot`, that
    lot is then marked refunded and its remainder written off (a dispute lost)."""
    held = session.get(Hold, hold_id, populate_existing=True) if hold_id is not None else None
    if held is not None and held.closed_at is None:
        _close(session, state, held, 0, now)
    if write_off_lot is not None:
        session.execute(update(LOTS).where(LOTS.c.id == write_off_lot, LOTS.c.refunded_at.is_(None)).values(refunded_at=now))
    write_off_due(session, state, lots_of(session, state.account_id), now)


def debit_in(session: Session, state: State, lots: list[LiveLot], *, amount: int, key: str, reason: str,
             now: datetime, rider: Rider | None = None) -> Result:
    """Spend inside the caller's transaction (the caller locked the account and commits);
    InsufficientCredit leaves nothing booked but the write-offs. `rider` rows are written
    with the journal line."""
    write_off_due(session, state, lots, now)
    takes = rules.split(lots, amount, now)
    return _book(session, state, kind="debit", changes=[(t.lot, -t.amount) for t in takes], key=key,
                 request_hash=fingerprint(op="debit", amount=amount, reason=reason), reason=reason, now=now,
                 rider=rider)


def hold_in(session: Session, state: State, lots: list[LiveLot], *, amount: int, key: str, reason: str,
            now: datetime, lifetime: timedelta = HOLD_LIFETIME) -> Hold:
    """Set credit aside inside the caller's transaction (a call starting)."""
    write_off_due(session, state, lots, now)
    takes = rules.split(lots, amount, now)
    held = Hold(account_id=state.account_id, amount=amount, reason=reason[:300], created_at=now, expires_at=now + lifetime)
    session.add(held)
    session.flush()
    session.add_all(HoldPart(hold_id=held.id, lot_id=t.lot.id, amount=t.amount) for t in takes)
    session.flush()
    _book(session, state, kind="hold", changes=[(t.lot, -t.amount) for t in takes], key=key,
          request_hash=fingerprint(op="hold", amount=amount, reason=reason), reason=reason, now=now,
          hold_id=held.id, held_change=amount)
    return held


def reverse_in(session: Session, state: State, *, transaction_id: int, key: str, reason: str, now: datetime) -> None:
    """Give a debit back to the lots it came from, inside the caller's transaction (the
    caller locked the account); a lot that expired or was refunded meanwhile has the credit
    written off at once. The journal's unique key makes a second reversal impossible."""
    parts = session.execute(select(ENTRIES.c.lot_id, ENTRIES.c.amount).where(ENTRIES.c.transaction_id == transaction_id)).all()
    lots = {row.id: LiveLot(*row) for row in session.execute(
        select(*_LOT_COLUMNS).where(LOTS.c.id.in_([p.lot_id for p in parts]), LOTS.c.account_id == state.account_id))}
    _book(session, state, kind="refund", changes=[(lots[p.lot_id], -p.amount) for p in parts if p.amount < 0],
          key=key, request_hash=fingerprint(op="reverse", transaction=transaction_id), reason=reason, now=now)
    write_off_due(session, state, lots_of(session, state.account_id), now)


def settle_in(session: Session, state: State, *, hold_id: int, charged: int, now: datetime) -> None:
    """Close a hold inside the caller's transaction (the caller locked the account): keep
    `charged`, give the rest back. A hold the sweep already released stays released."""
    held = session.get(Hold, hold_id, populate_existing=True)
    if held.closed_at is not None:
        return
    _close(session, state, held, min(charged, held.amount), now)
    write_off_due(session, state, lots_of(session, state.account_id), now)
