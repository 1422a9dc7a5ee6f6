"""Notices written in the transaction of the change that causes them: one Notice, its
deliveries (one per recipient and channel) and one outbox row per delivery. Nothing here commits.

`on_balance_change` is the ledger's watcher (portal.ledger.steps.watch, registered by
create_app): the ledger calls it in the booking's transaction, under the account's lock, with
the thresholds its line crossed downwards or brought back."""

import json
import uuid
from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session

from portal import outbox
from portal.accounts.models import Account, Membership, Role, User
from portal.alerts.models import (
    OPTIONAL, AlertAddress, AlertMember, AlertOptOut, AlertSettings, Channel, Delivery, DeliveryStatus, Notice,
    NoticeKind, defaults,
)
from portal.ledger.models import THRESHOLDS
from portal.ledger.rules import TransactionKind
from portal.outbox import OutboxKind

RECEIVING_ROLES = (Role.OWNER, Role.BILLING)


def on_balance_change(session: Session, *, account_id: int, crossed: list[int], recovered: list[int], balance: int,
                      kind: str, now: datetime) -> None:
    """A crossing writes one low-balance notice (naming every threshold the line crossed); a
    purchase or grant that brings the balance back to crossed thresholds writes one notice
    saying so. Other re-armings (a call's hold released) re-arm silently."""
    if crossed:
        write_notice(session, account_id=account_id, kind=NoticeKind.LOW_BALANCE, now=now,
                     data={"thresholds": _amounts(session, crossed), "balance": balance, "cause": str(kind)})
    if recovered and kind == TransactionKind.GRANT:
        write_notice(session, account_id=account_id, kind=NoticeKind.RECOVERED, now=now,
                     data={"thresholds": _amounts(session, recovered), "balance": balance, "cause": str(kind)})


def _amounts(session: Session, ids: list[int]) -> list[int]:
    return sorted(session.scalars(select(THRESHOLDS.c.amount).where(THRESHOLDS.c.id.in_(ids))))


def settings_row(session: Session, account_id: int, now: datetime) -> AlertSettings:
    """The account's settings, the defaults when none were saved (not added to the session)."""
    return session.get(AlertSettings, account_id) or defaults(account_id, now)


def recipients(session: Session, account_id: int, settings: AlertSettings) -> list[str]:
    """The e-mail addresses that receive the account's alerts: every owner and billing member
    (or the chosen members), then the confirmed extra addresses."""
    members = select(User.email).join(Membership, Membership.user_id == User.id).where(
        Membership.account_id == account_id, User.disabled_at.is_(None))
    if settings.all_members:
        members = members.where(Membership.role.in_(RECEIVING_ROLES))
    else:
        members = members.join(AlertMember, (AlertMember.user_id == User.id) & (AlertMember.account_id == account_id))
    addresses = select(AlertAddress.address).where(AlertAddress.account_id == account_id,
                                                   AlertAddress.confirmed_at.is_not(None))
    found = [*session.scalars(members.order_by(User.id)), *session.scalars(addresses.order_by(AlertAddress.id))]
    return list(dict.fromkeys(found))


def write_notice(session: Session, *, account_id: int, kind: NoticeKind, data: dict, now: datetime,
                 only_webhook: bool = False) -> Notice:
    """The notice, a delivery per recipient and channel, and their outbox rows."""
    settings = settings_row(session, account_id, now)
    language = session.scalar(select(Account.language).where(Account.id == account_id))
    notice = Notice(uuid=str(uuid.uuid4()), account_id=account_id, kind=kind,
                    payload=json.dumps(data, ensure_ascii=False, default=str), created_at=now)
    session.add(notice)
    session.flush()
    targets: list[tuple[Channel, str]] = []
    if settings.email and not only_webhook:
        opted_out = set()
        if kind in OPTIONAL:
            opted_out = set(session.scalars(select(AlertOptOut.recipient).where(
                AlertOptOut.account_id == account_id, AlertOptOut.topic == OPTIONAL[kind])))
        targets += [(Channel.EMAIL, address) for address in recipients(session, account_id, settings)
                    if address not in opted_out]
    if settings.webhook_url:
        targets.append((Channel.WEBHOOK, settings.webhook_url))
    if settings.sms and settings.sms_number and not only_webhook:
        targets.append((Channel.SMS, settings.sms_number))
    deliveries = [Delivery(notice_id=notice.id, channel=channel, recipient=recipient, language=str(language),
                           status=DeliveryStatus.PENDING) for channel, recipient in targets]
    session.add_all(deliveries)
    session.flush()
    for delivery in deliveries:
        outbox.enqueue(session, kind=OutboxKind.ALERT, payload={"delivery_id": delivery.id}, now=now)
    return notice
