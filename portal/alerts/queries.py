"""Reads for the alert pages: a page of the history, one notice's deliveries (the result of a
test, shown in place), and the extra address a confirmation link is for. Each is one read unit
of work and sees only the account it is given."""

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal import db
from portal.accounts import tokens
from portal.accounts.models import Account
from portal.alerts import rules
from portal.alerts.models import AlertAddress, Delivery, DeliveryStatus, Notice
from portal.messaging.api_models import Message, MessageStatus


@dataclass(frozen=True)
class SentRow:
    notice_id: str
    kind: str
    created_at: datetime
    recipient: str
    channel: str
    status: str
    attempts: int
    last_error: str | None
    last_attempt_at: datetime | None
    delivered_at: datetime | None
    problem: str | None = None  # what went wrong, in words (rules.readable_error): marked for the catalog
    problem_values: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PendingAddress:
    address: str
    account_name: str


# An alert SMS is handed to the carrier by the messaging worker: its message tells how it went.
_SMS_STATUS = {MessageStatus.QUEUED: DeliveryStatus.PENDING, MessageStatus.DELIVERING: DeliveryStatus.PENDING,
               MessageStatus.DELIVERED: DeliveryStatus.SENT, MessageStatus.FAIL: DeliveryStatus.FAILED,
               MessageStatus.UNKNOWN: DeliveryStatus.PENDING}  # until the carrier says whether it took it


def _row(notice: Notice, delivery: Delivery, message_status: str | None) -> SentRow:
    status, last_error = delivery.status, delivery.last_error
    problem = rules.readable_error(delivery.channel, last_error) if status != DeliveryStatus.SENT else None
    if message_status is not None:
        status = _SMS_STATUS[message_status]
        problem = (rules.CARRIER_FAILED, {}) if message_status == MessageStatus.FAIL else None
    return SentRow(notice_id=notice.uuid, kind=notice.kind, created_at=notice.created_at,
                   recipient=delivery.recipient, channel=delivery.channel, status=status,
                   attempts=delivery.attempts, last_error=last_error,
                   last_attempt_at=delivery.last_attempt_at, delivered_at=delivery.delivered_at,
                   problem=problem[0] if problem else None, problem_values=problem[1] if problem else {})


def _with_messages(query):
    """The deliveries with the status of their SMS, if any."""
    return query.add_columns(Message.status).outerjoin(Message, Message.id == Delivery.message_id)


def history_page(session: Session, *, account_id: int, page: int, per_page: int) -> tuple[list[SentRow], int]:
    """One page of what was sent, newest first, and how many deliveries there are in all."""
    joined = _with_messages(select(Notice, Delivery).join(Delivery, Delivery.notice_id == Notice.id).where(
        Notice.account_id == account_id))
    with db.read(session):
        total = session.scalar(select(func.count()).select_from(Delivery).join(Notice, Notice.id == Delivery.notice_id)
                               .where(Notice.account_id == account_id))
        rows = session.execute(joined.order_by(Notice.created_at.desc(), Notice.id.desc(), Delivery.id)
                               .offset((page - 1) * per_page).limit(per_page)).all()
        return [_row(notice, delivery, status) for notice, delivery, status in rows], total or 0


def deliveries_of_notice(session: Session, *, account_id: int, notice_id: str) -> list[SentRow] | None:
    """A notice's deliveries by its stable id; None when the account has no such notice."""
    with db.read(session):
        notice = session.scalars(select(Notice).where(Notice.uuid == notice_id, Notice.account_id == account_id)).first()
        if notice is None:
            return None
        deliveries = session.execute(_with_messages(select(Delivery)).where(Delivery.notice_id == notice.id)
                                     .order_by(Delivery.id))
        return [_row(notice, delivery, status) for delivery, status in deliveries]


def pending_address(session: Session, *, token: str) -> PendingAddress | None:
    """The unconfirmed address a confirmation link is for, and its account's name."""
    if not token or len(token) > 64:
        return None
    with db.read(session):
        found = session.execute(select(AlertAddress.address, Account.name)
                                .join(Account, Account.id == AlertAddress.account_id)
                                .where(AlertAddress.token_hash == tokens.hash_token(token), AlertAddress.confirmed_at.is_(None))).first()
        return PendingAddress(address=found[0], account_name=found[1]) if found else None
