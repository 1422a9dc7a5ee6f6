"""The ledger's in-transaction steps: lock the account's credit row, read its lots, book
journal lines. The public services (`service`) run them inside their unit of work; other
packages run the `*_in` steps under their own lock, in their own unit (a payment, a send).
Nothing here commits.

Reasons are refused when longer than the journal's column, never cut short. A hold's reason
is shorter still, so the line that closes it ("<reason>: charged N, released N") always fits.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, insert, literal, null, select, text, true, update
from sqlalchemy.engine import Row
from sqlalchemy.sql import Select
from sqlmodel import Session

from portal.ledger import rules, writes
from portal.ledger.models import ENTRIES, JOURNAL, LOTS, STATES, THRESHOLDS, Hold, HoldPart
from portal.ledger.rules import LotKind, TransactionKind
from portal.ledger.writes import Change, Rider

HOLD_LIFETIME = timedelta(hours=2)
DEFAULT_THRESHOLD = 100 * rules.MILLI_YEN  # every new account starts with a ¥100 low-balance alert
REASON_LENGTH = JOURNAL.c.reason.type.length
_BIGGEST = 2**63 - 1  # the largest amount a money column holds


def closing_reason(reason: str, charged: int, released: int) -> str:
    return f"{reason}: charged {charged}, released {released}"


HOLD_REASON_LENGTH = REASON_LENGTH - len(closing_reason("", _BIGGEST, _BIGGEST))


# What a booking that crosses balance thresholds calls, in its transaction: watcher(session,
# account_id=, crossed=[threshold ids], recovered=[ids], balance=, kind=, now=). The ledger imports
# no other domain package: portal.alerts registers itself when the app starts.
_WATCHERS: list = []


def watch(watcher) -> None:
    if watcher not in _WATCHERS:
        _WATCHERS.append(watcher)


class IdempotencyConflict(Exception):
    """The idempotency key was used before for a different request."""


@dataclass(frozen=True)
class Result:
    transaction_id: int
    amount: int
    balance_after: int
    replayed: bool


@dataclass(frozen=True)
class Previous:
    """The journal line already booked under an idempotency key."""

    transaction_id: int
    request_hash: str
    amount: int
    balance_after: int


@dataclass
class State:
    account_id: int
    balance: int
    held: int
    previous: Previous | None


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


# -- locking and reading ----------------------------------------------------------------------


def open_state(session: Session, *, account_id: int, now: datetime) -> None:
    """Create the account's credit row; called in the transaction that creates the account."""
    session.flush()
    session.execute(insert(STATES).values(account_id=account_id, balance=0, held=0, floor=0,
                                          billing_mode="prepaid", has_purchased=False, updated_at=now))
    # not armed: the balance starts below it; the first credit at or above it arms it
    session.execute(insert(THRESHOLDS).values(account_id=account_id, amount=DEFAULT_THRESHOLD, armed=False,
                                              created_at=now))


# The names ledger_lock() (migration 0002) gives its columns, on both engines.
_PREVIOUS = (JOURNAL.c.id.label("previous_id"), JOURNAL.c.request_hash.label("previous_hash"),
             JOURNAL.c.amount.label("previous_amount"), JOURNAL.c.balance_after.label("previous_balance"))
_LOCK = (
    select(STATES.c.balance, STATES.c.held, *_PREVIOUS)
    .select_from(STATES.outerjoin(JOURNAL, (JOURNAL.c.account_id == STATES.c.account_id)
                                  & (JOURNAL.c.idempotency_key == bindparam("key"))))
    .where(STATES.c.account_id == bindparam("account_id"))
)
_LOT_COLUMNS = (LOTS.c.id.label("lot_id"), LOTS.c.kind.label("lot_kind"), LOTS.c.amount.label("lot_amount"),
                LOTS.c.remaining.label("lot_remaining"), LOTS.c.issued_at.label("lot_issued"),
                LOTS.c.expires_at.label("lot_expires"), LOTS.c.refunded_at.label("lot_refunded"))
_LOTS_WITH_CREDIT = select(*_LOT_COLUMNS).where(LOTS.c.account_id == bindparam("account_id"), LOTS.c.remaining > 0)
# ledger_lock() reads no refunded_at: harmless, since a refunded lot's remainder is written off
# in the transaction that gives credit back to it, so a lock never finds one with credit left.
_LOCK_FUNCTION = text("SELECT *, CAST(NULL AS timestamptz) AS lot_refunded FROM ledger_lock(:account_id, :key)")


_LOCK_NAMES = ("balance", "held", "previous_id", "previous_hash", "previous_amount", "previous_balance", "lot_id",
               "lot_kind", "lot_amount", "lot_remaining", "lot_issued", "lot_expires")
_LOCKED_AHEAD = "portal.ledger.locked_ahead"


def locking(query: Select) -> Select:
    """PostgreSQL: `query` (one row at most, with an `account_id` column) that also locks that
    account, as `lock` does, in the same statement: ledger_lock() is called once for its row
    (its statements each see what is committed when they run, so nothing it reads is stale
    after waiting for the lock). One row per lot with credit left; hand them to `locked_ahead`."""
    found = query.subquery("found")
    locked = func.ledger_lock(found.c.account_id, literal("")).table_valued(*_LOCK_NAMES).lateral("locked")
    return select(found, *locked.c, null().label("lot_refunded")).select_from(found.join(locked, true()))


def locked_ahead(session: Session, account_id: int, rows: list[Row]) -> None:
    """The account is locked in the session's transaction (by a `locking` query, whose `rows`
    these are): its next `lock` in this same transaction takes this state and these lots
    instead of reading them again. Once only, and never in another transaction."""
    state = _state(account_id, rows[0])
    lots = [_live_lot(row) for row in rows if row.lot_id is not None]
    session.info[_LOCKED_AHEAD] = (session.get_transaction(), account_id, state, lots)


def lock(session: Session, account_id: int, key: str | None = None) -> tuple[State, list[LiveLot]]:
    """Lock the account's credit row until the transaction ends, then read the journal line
    already booked under `key` (if any) and the lots with credit left. PostgreSQL: FOR UPDATE
    and the reads in one call of ledger_lock() (or what a `locking` query of this very
    transaction read, see `locked_ahead`). SQLite: the transaction began with BEGIN
    IMMEDIATE, so two plain reads are already serialised."""
    params = {"account_id": account_id, "key": key or ""}
    ahead = session.info.pop(_LOCKED_AHEAD, None)
    if ahead is not None and not key and ahead[0] is session.get_transaction() and ahead[1] == account_id:
        return ahead[2], ahead[3]
    if session.get_bind().dialect.name == "postgresql":
        rows = session.execute(_LOCK_FUNCTION, params).all()
        lots = [_live_lot(row) for row in rows if row.lot_id is not None]
    else:
        rows = session.execute(_LOCK, params).all()
        lots = lots_of(session, account_id)
    return _state(account_id, rows[0]), lots


def _state(account_id: int, row: Row) -> State:
    previous = None
    if row.previous_id is not None:
        previous = Previous(row.previous_id, row.previous_hash, row.previous_amount, row.previous_balance)
    return State(account_id, row.balance, row.held, previous)


def _live_lot(row: Row) -> LiveLot:
    return LiveLot(id=row.lot_id, kind=row.lot_kind, amount=row.lot_amount, remaining=row.lot_remaining,
                   issued_at=row.lot_issued, expires_at=row.lot_expires, refunded_at=row.lot_refunded)


def lots_of(session: Session, account_id: int) -> list[LiveLot]:
    """The account's lots with credit left (only after the lock: then never stale)."""
    return [_live_lot(row) for row in session.execute(_LOTS_WITH_CREDIT, {"account_id": account_id})]


def _lots_by_id(session: Session, lot_ids: list[int], account_id: int) -> dict[int, LiveLot]:
    query = select(*_LOT_COLUMNS).where(LOTS.c.id.in_(lot_ids), LOTS.c.account_id == account_id)
    return {lot.id: lot for lot in map(_live_lot, session.execute(query))}


def replay(state: State, request_hash: str, key: str) -> Result | None:
    """The first result booked under `key` for this same request; IdempotencyConflict when
    the key was used for another one."""
    if state.previous is None:
        return None
    if state.previous.request_hash != request_hash:
        raise IdempotencyConflict(key)
    return Result(state.previous.transaction_id, state.previous.amount, state.previous.balance_after, replayed=True)


# -- booking ----------------------------------------------------------------------------------


def _book(
    session: Session, state: State, *, kind: TransactionKind, changes: list[Change], key: str, request_hash: str,
    reason: str, now: datetime, hold_id: int | None = None, held_change: int = 0, rider: Rider | None = None,
) -> Result:
    """Apply `changes` to the lots and the cached totals and append the journal line."""
    rules.check_reason(reason, REASON_LENGTH)
    changes = [change for change in changes if change.amount]
    amount = sum(change.amount for change in changes)
    for change in changes:
        change.lot.remaining += change.amount
    state.balance += amount
    state.held += held_change
    line = {"account_id": state.account_id, "kind": kind, "amount": amount, "balance_after": state.balance,
            "held_after": state.held, "idempotency_key": key, "request_hash": request_hash, "reason": reason,
            "hold_id": hold_id, "occurred_at": now}
    booked = writes.book(session, line, changes, rider)
    if booked.crossed or booked.recovered:
        for watcher in _WATCHERS:
            watcher(session, account_id=state.account_id, crossed=booked.crossed, recovered=booked.recovered,
                    balance=state.balance, kind=kind, now=now)
    return Result(booked.transaction_id, amount, state.balance, replayed=False)


def write_off_due(session: Session, state: State, lots: list[LiveLot], now: datetime) -> int:
    """Book an expiry for every lot whose time has come, once per lot; credit that came back
    to a refunded lot (from a call hold) is taken back the same way. Returns the lines booked."""
    booked = 0
    for lot in lots:
        if lot.refunded_at is not None and lot.remaining > 0:
            kind = TransactionKind.REFUND
        elif rules.is_due(lot, now):
            kind = TransactionKind.EXPIRE
        else:
            continue
        key = f"~{kind}:lot:{lot.id}:{_write_offs_of(session, lot.id, kind) + 1}"
        _book(session, state, kind=kind, changes=[Change(lot, -lot.remaining)], key=key,
              request_hash=fingerprint(lot=lot.id), reason=f"{kind} lot #{lot.id}", now=now)
        if kind == TransactionKind.EXPIRE:
            session.execute(update(LOTS).where(LOTS.c.id == lot.id, LOTS.c.expired_at.is_(None)).values(expired_at=lot.expires_at))
        booked += 1
    return booked


def _write_offs_of(session: Session, lot_id: int, kind: TransactionKind) -> int:
    query = (
        select(func.count()).select_from(ENTRIES).join(JOURNAL, JOURNAL.c.id == ENTRIES.c.transaction_id)
        .where(ENTRIES.c.lot_id == lot_id, JOURNAL.c.kind == kind)
    )
    return session.scalar(query)


def close(session: Session, state: State, held: Hold, charged: int, now: datetime) -> None:
    """Close an open hold: keep `charged` (from the lots that burn first) and give the rest
    back to the lots it came from."""
    parts = session.execute(select(HoldPart.lot_id, HoldPart.amount).where(HoldPart.hold_id == held.id)).all()
    lots = _lots_by_id(session, [part.lot_id for part in parts], state.account_id)
    ordered = sorted(((lots[part.lot_id], part.amount) for part in parts), key=lambda pair: rules.burn_key(pair[0]))
    held.charged, held.closed_at = charged, now
    session.flush()
    _book(session, state, kind=TransactionKind.RELEASE,
          changes=[Change(lot, amount) for lot, amount in rules.assign_charge(ordered, charged)],
          key=f"~hold:{held.id}:close", request_hash=fingerprint(hold=held.id, charged=charged),
          reason=closing_reason(held.reason, charged, held.amount - charged), now=now,
          hold_id=held.id, held_change=-held.amount)


# -- steps the callers run under their own lock ------------------------------------------------


def grant_in(
    session: Session, state: State, lots: list[LiveLot], *, kind: LotKind, amount: int, expires_at: datetime,
    source_ref: str, key: str, reason: str, now: datetime, issued_at: datetime | None = None,
) -> Result:
    """Grant inside the caller's transaction (the caller locked with `key`)."""
    issued_at = issued_at or now
    request_hash = fingerprint(op="grant", kind=kind, amount=amount, expires_at=expires_at, source=source_ref)
    replayed = replay(state, request_hash, key)
    if replayed is not None:
        return replayed
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
    result = _book(session, state, kind=TransactionKind.GRANT, changes=[Change(lot, amount)], key=key,
                   request_hash=request_hash, reason=reason, now=now)
    if not rules.is_live(lot, now):  # granted already past its expiry (a late webhook): write it off
        write_off_due(session, state, [lot], now)
    if kind == LotKind.PURCHASE:
        session.execute(update(STATES).where(STATES.c.account_id == state.account_id).values(has_purchased=True))
    return result


def grant_trial_in(session: Session, *, account_id: int, phone_e164: str, amount: int, now: datetime) -> Result | None:
    """Trial credit, once per account and once per mobile number; None when already given.
    Runs inside the caller's transaction (the one that verifies the number)."""
    state, lots = lock(session, account_id, "~trial")
    if state.previous is not None:
        return None
    if session.scalars(select(LOTS.c.id).where(LOTS.c.source_ref == f"trial:{phone_e164}")).first() is not None:
        return None
    return grant_in(
        session, state, lots, kind=LotKind.TRIAL, amount=amount, expires_at=now + rules.TRIAL_LIFETIME,
        source_ref=f"trial:{phone_e164}", key="~trial", reason="trial credit", now=now,
    )


def debit_in(session: Session, state: State, lots: list[LiveLot], *, amount: int, key: str, reason: str,
             now: datetime, rider: Rider | None = None) -> Result:
    """Spend inside the caller's transaction (the caller locked the account and commits);
    InsufficientCredit leaves nothing booked but the write-offs. `rider` rows are written
    with the journal line."""
    write_off_due(session, state, lots, now)
    takes = rules.split(lots, amount, now)
    return _book(session, state, kind=TransactionKind.DEBIT, changes=[Change(take.lot, -take.amount) for take in takes],
                 key=key, request_hash=fingerprint(op="debit", amount=amount, reason=reason), reason=reason, now=now,
                 rider=rider)


def hold_in(session: Session, state: State, lots: list[LiveLot], *, amount: int, key: str, reason: str,
            now: datetime, lifetime: timedelta = HOLD_LIFETIME) -> Hold:
    """Set credit aside inside the caller's transaction (a call starting)."""
    rules.check_reason(reason, HOLD_REASON_LENGTH)
    write_off_due(session, state, lots, now)
    takes = rules.split(lots, amount, now)
    held = Hold(account_id=state.account_id, amount=amount, reason=reason, created_at=now, expires_at=now + lifetime)
    session.add(held)
    session.flush()
    session.add_all(HoldPart(hold_id=held.id, lot_id=take.lot.id, amount=take.amount) for take in takes)
    session.flush()
    _book(session, state, kind=TransactionKind.HOLD, changes=[Change(take.lot, -take.amount) for take in takes],
          key=key, request_hash=fingerprint(op="hold", amount=amount, reason=reason), reason=reason, now=now,
          hold_id=held.id, held_change=amount)
    return held


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
        _book(session, state, kind=TransactionKind.REFUND, changes=[Change(lot, -taken)], key=key,
              request_hash=fingerprint(op="take_back", lot=lot_id, amount=amount), reason=reason, now=now)
    return taken


def refund_lot_in(session: Session, state: State, lots: list[LiveLot], *, lot_id: int, key: str, reason: str,
                  now: datetime) -> Result:
    """Take back a lot's whole unused remainder and mark it refunded (its payment was), inside
    the caller's transaction; the spent part stays spent."""
    write_off_due(session, state, lots, now)
    changes = [Change(lot, -lot.remaining) for lot in lots if lot.id == lot_id and lot.remaining]
    session.execute(update(LOTS).where(LOTS.c.id == lot_id).values(refunded_at=now))
    return _book(session, state, kind=TransactionKind.REFUND, changes=changes, key=key,
                 request_hash=fingerprint(op="refund", lot=lot_id), reason=reason, now=now)


def freeze_lot_in(session: Session, state: State, lots: list[LiveLot], *, lot_id: int, key: str, reason: str,
                  now: datetime) -> Hold | None:
    """Set a lot's whole unused remainder aside (a disputed payment) until `close_hold_in`.
    The hold lasts until the lot's own expiry: if still open then, the sweep releases it into
    the expired lot, which writes it off. None when the lot has nothing left."""
    rules.check_reason(reason, HOLD_REASON_LENGTH)
    write_off_due(session, state, lots, now)
    lot = _live(lots, lot_id, now)
    if lot is None or lot.remaining == 0:
        return None
    held = Hold(account_id=state.account_id, amount=lot.remaining, reason=reason, created_at=now,
                expires_at=lot.expires_at)
    session.add(held)
    session.flush()
    session.add(HoldPart(hold_id=held.id, lot_id=lot.id, amount=lot.remaining))
    session.flush()
    _book(session, state, kind=TransactionKind.HOLD, changes=[Change(lot, -lot.remaining)], key=key,
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
        close(session, state, held, 0, now)
    if write_off_lot is not None:
        session.execute(update(LOTS).where(LOTS.c.id == write_off_lot, LOTS.c.refunded_at.is_(None)).values(refunded_at=now))
    write_off_due(session, state, lots_of(session, state.account_id), now)


def reverse_in(session: Session, state: State, *, transaction_id: int, key: str, reason: str, now: datetime) -> None:
    """Give a debit back to the lots it came from, inside the caller's transaction (the
    caller locked the account); a lot that expired or was refunded meanwhile has the credit
    written off at once. The journal's unique key makes a second reversal impossible."""
    parts = session.execute(select(ENTRIES.c.lot_id, ENTRIES.c.amount).where(ENTRIES.c.transaction_id == transaction_id)).all()
    lots = _lots_by_id(session, [part.lot_id for part in parts], state.account_id)
    _book(session, state, kind=TransactionKind.REFUND,
          changes=[Change(lots[part.lot_id], -part.amount) for part in parts if part.amount < 0],
          key=key, request_hash=fingerprint(op="reverse", transaction=transaction_id), reason=reason, now=now)
    write_off_due(session, state, lots_of(session, state.account_id), now)


def keep_hold_in(session: Session, state: State, *, hold_id: int, until: datetime) -> None:
    """Keep an open hold from the expiry sweep until `until` (never shortening it), inside the
    caller's transaction (the caller locked the account): no amount moves, so the account's
    cached held total is unchanged."""
    held = session.get(Hold, hold_id, populate_existing=True)
    if held.closed_at is None and held.expires_at < until:
        held.expires_at = until


def settle_in(session: Session, state: State, *, hold_id: int, charged: int, now: datetime) -> None:
    """Close a hold inside the caller's transaction (the caller locked the account): keep
    `charged`, give the rest back. A hold the sweep already released stays released."""
    held = session.get(Hold, hold_id, populate_existing=True)
    if held.closed_at is not None:
        return
    close(session, state, held, min(charged, held.amount), now)
    write_off_due(session, state, lots_of(session, state.account_id), now)
