"""The outbox: side effects written in the same transaction as the change that causes them.

The worker claims due rows with a lease, delivers them outside any transaction, then marks
them sent; a crashed worker's lease runs out and another worker delivers the row again.

Leases are five minutes, except for kinds given a shorter one (`Leases`): a balance alert is
promised within a minute, so a crashed worker's alert must be free again well before that.
A short lease is renewed when its delivery starts (`renew`: a row claimed in a batch may wait
behind slower ones), and the delivery bounds its own time to well under the lease, so a live
worker never loses a short lease mid-send.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import Column, Text, or_, select, update
from sqlmodel import Field, Session, SQLModel

from portal import db
from portal.db import enum_column, utc_column

LEASE = timedelta(minutes=5)
ALERT_LEASE = timedelta(seconds=45)  # the default of PORTAL_ALERT_LEASE_SECONDS
Leases = dict[str, timedelta]  # a kind's own lease, shorter than LEASE
MAX_ATTEMPTS = 12
LAST_ERROR_LENGTH = 2000


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt: 30 s, 1 min, 2 min, … capped at 1 h."""
    return min(timedelta(seconds=30 * 2 ** (attempts - 1)), timedelta(hours=1))




class OutboxKind(StrEnum):
    """What the worker does with a message (portal.worker.deliver)."""

    EMAIL = "email"
    SMS = "sms"  # a verification code from the portal itself
    API_SMS = "api_sms"  # a customer's message sent through the API
    API_CALL = "api_call"
    CALLBACK = "callback"  # a status callback to the customer's URL
    OTP_FALLBACK = "otp_fallback"  # a call reading an OTP code that was not verified in time
    ALERT = "alert"  # one delivery of a balance alert (portal.alerts)


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox"

    id: int | None = Field(default=None, primary_key=True)
    kind: OutboxKind = Field(sa_column=enum_column(OutboxKind, 20))
    payload: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=utc_column())
    available_at: datetime = Field(sa_column=utc_column())
    leased_until: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    attempts: int = Field(default=0)
    sent_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    failed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))

    def data(self) -> dict:
        return json.loads(self.payload)


def enqueue(session: Session, *, kind: OutboxKind, payload: dict, now: datetime) -> OutboxMessage:
    """Add a message to the caller's transaction; the caller commits."""
    message = OutboxMessage(
        kind=kind, payload=json.dumps(payload, ensure_ascii=False), created_at=now, available_at=now
    )
    session.add(message)
    return message


def lease_of(kind: str, leases: Leases | None) -> timedelta:
    return (leases or {}).get(kind, LEASE)


def claim(session: Session, *, now: datetime, limit: int = 10, leases: Leases | None = None) -> list[OutboxMessage]:
    """Lease up to `limit` due messages to this worker (one unit: the lease is committed), each
    for its kind's lease (`leases`, LEASE for the kinds it does not name)."""
    query = (
        select(OutboxMessage)
        .where(OutboxMessage.sent_at.is_(None), OutboxMessage.failed_at.is_(None))
        .where(OutboxMessage.available_at <= now)
        .where(or_(OutboxMessage.leased_until.is_(None), OutboxMessage.leased_until <= now))
        .order_by(OutboxMessage.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    with db.write(session):
        messages = list(session.scalars(query))
        for message in messages:
            message.leased_until = now + lease_of(message.kind, leases)
            message.attempts += 1
    return messages


def renew(session: Session, *, message_id: int, lease: datetime, until: datetime) -> datetime | None:
    """Move this worker's lease (`lease`: the leased_until it holds) to `until`, when the row
    is still its own: the new leased_until, or None when another worker has claimed the row
    meanwhile (or it was sent). One conditional UPDATE, so it cannot overwrite a claim that
    lands at the same moment (PostgreSQL re-checks the condition after the claimer's commit)."""
    table = OutboxMessage.__table__
    with db.write(session):
        changed = session.execute(update(table).where(
            table.c.id == message_id, table.c.leased_until == lease, table.c.sent_at.is_(None),
            table.c.failed_at.is_(None)).values(leased_until=until)).rowcount
    return until if changed == 1 else None


@dataclass(frozen=True)
class Held:
    """A claimed row as its worker holds it: the row's id and the leased_until it was given."""

    id: int
    lease: datetime


def still_held(session: Session, held: Held) -> bool:
    """Whether the worker still holds the row, inside the caller's unit: the row is locked
    first on PostgreSQL (a claim waits, or skips it, until the caller commits), so what the
    caller writes next cannot race another worker's claim."""
    query = select(OutboxMessage.id).where(OutboxMessage.id == held.id, OutboxMessage.leased_until == held.lease,
                                           OutboxMessage.sent_at.is_(None), OutboxMessage.failed_at.is_(None))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return session.scalar(query) is not None


def mark_sent(session: Session, *, message_id: int, lease: datetime, now: datetime) -> None:
    """Record delivery and drop what the payload carried (links, codes): it served its purpose."""
    with db.write(session):
        message = session.get(OutboxMessage, message_id)
        if message.leased_until == lease:
            message.sent_at, message.leased_until = now, None
            message.payload = _redacted(message.payload)


def _redacted(payload: str) -> str:
    data = json.loads(payload)
    return json.dumps({key: data[key] for key in ("to", "subject", "compose", "recipient", "account_id") if key in data})


GiveUp = Callable[[Session, "OutboxMessage"], None]


def mark_failed_attempt(session: Session, *, message_id: int, lease: datetime | None, error: str, now: datetime,
                        on_give_up: GiveUp | None = None) -> bool:
    """Retry with exponential back-off (30 s, 1 min, 2 min, … capped at 1 h), then give up.
    `error` is the worker's description of the failure, for the operators, not anyone's text:
    its first LAST_ERROR_LENGTH characters tell what went wrong (a mail server's whole answer
    page is not worth keeping twelve times). Giving up runs `on_give_up(session, message)` in
    the same unit, before the payload is redacted (a send's job fails or holds its send there,
    portal.messaging.delivery). The row is locked first, so two workers failing it at once give
    up once. Only the worker that still holds the lease (`lease`: the leased_until it was
    given) records anything: a stale worker, whose lease ran out and whose row another worker
    claimed, must neither give up while that worker's attempt is in flight nor free its lease.
    Returns whether this call gave up."""
    with db.write(session):
        query = select(OutboxMessage).where(OutboxMessage.id == message_id)
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
        message = session.scalars(query.execution_options(populate_existing=True)).one()
        if message.sent_at is not None or message.failed_at is not None or message.leased_until != lease:
            return False
        message.last_error = error[:LAST_ERROR_LENGTH]
        message.leased_until = None
        if message.attempts < MAX_ATTEMPTS:
            message.available_at = now + backoff(message.attempts)
            return False
        message.failed_at = now
        if on_give_up is not None:
            on_give_up(session, message)
        message.payload = _redacted(message.payload)
        return True
