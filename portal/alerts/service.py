"""The alerts' units of work (see the package docstring for the list). One unit each
(`db.write` / `db.read`), keyword-only, `now` passed in; the account's credit row is locked
wherever thresholds are set, so a threshold's armed state always matches the balance."""

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from portal import audit, db, mail
from portal.audit import AuditAction
from portal.clock import JST
from portal.accounts import tokens
from portal.accounts.models import Membership, User
from portal.accounts.signup import MailContent
from portal.alerts import detect, rules
from portal.alerts.delivery import deliver  # noqa: F401  (re-exported for the worker)
from portal.alerts.models import (
    AlertAddress, AlertMark, AlertMember, AlertOptOut, AlertSettings, Delivery, Notice, NoticeKind,
)
from portal.alerts.rules import N_
from portal.ledger import queries
from portal.ledger import service as ledger
from portal.ledger.models import LOTS, BalanceThreshold
from portal.ledger.rules import MILLI_YEN

ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class InvalidFields(ValueError):
    """Every invalid field, each with its reasons (English, translated by the page)."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__(", ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class ThresholdView:
    id: int
    yen: int
    armed: bool
    crossed_at: datetime | None


@dataclass(frozen=True)
class AddressView:
    id: int
    address: str
    confirmed_at: datetime | None


@dataclass(frozen=True)
class Settings:
    thresholds: list[ThresholdView]
    email: bool
    webhook_url: str | None
    webhook_secret_set: bool
    sms: bool
    sms_number: str | None
    expiry_warnings: bool
    run_out_days: int | None
    all_members: bool
    member_ids: list[int]
    addresses: list[AddressView]


@dataclass(frozen=True)
class HistoryRow:
    notice_id: str
    kind: str
    created_at: datetime
    recipient: str
    channel: str
    status: str
    attempts: int
    last_error: str | None
    delivered_at: datetime | None


def _thresholds(session: Session, account_id: int) -> list[ThresholdView]:
    rows = session.scalars(select(BalanceThreshold).where(BalanceThreshold.account_id == account_id)
                           .order_by(BalanceThreshold.amount.desc()))
    return [ThresholdView(row.id, row.amount // MILLI_YEN, row.armed, row.crossed_at) for row in rows]


def thresholds_of(*, session: Session, account_id: int) -> list[ThresholdView]:
    """For the dashboard: the thresholds, highest first; `armed` False means crossed (or set below)."""
    with db.read(session):
        return _thresholds(session, account_id)


def settings_of(*, session: Session, account_id: int, now: datetime) -> Settings:
    with db.read(session):
        row = detect.settings_row(session, account_id, now)
        members = list(session.scalars(select(AlertMember.user_id).where(AlertMember.account_id == account_id)))
        addresses = [AddressView(a.id, a.address, a.confirmed_at) for a in session.scalars(
            select(AlertAddress).where(AlertAddress.account_id == account_id).order_by(AlertAddress.id))]
        return Settings(_thresholds(session, account_id), row.email, row.webhook_url, bool(row.webhook_secret),
                        row.sms, row.sms_number, row.expiry_warnings, row.run_out_days, row.all_members, members,
                        addresses)


def save_thresholds(*, session: Session, account_id: int, user_id: int, yen: list[int],
                    now: datetime) -> list[ThresholdView]:
    """Replace the thresholds; one kept at the same amount keeps its state, a new one is armed
    only when the balance is at or above it (no notice for a balance already below)."""
    errors = rules.threshold_errors(yen)
    if errors:
        raise InvalidFields({"thresholds": errors})
    with db.write(session):
        state, _ = ledger.lock(session, account_id)
        existing = {row.amount: row for row in session.scalars(
            select(BalanceThreshold).where(BalanceThreshold.account_id == account_id))}
        wanted = {rules.to_milli(amount) for amount in yen}
        for amount, row in existing.items():
            if amount not in wanted:
                session.delete(row)
        for amount in wanted - existing.keys():
            session.add(BalanceThreshold(account_id=account_id, amount=amount, created_at=now,
                                         armed=rules.armed_at_setup(state.balance, amount)))
        session.flush()
        return _thresholds(session, account_id)


def _settings_for_update(session: Session, account_id: int, now: datetime) -> AlertSettings:
    row = session.get(AlertSettings, account_id)
    if row is None:
        row = detect.defaults(account_id, now)
        session.add(row)
        session.flush()  # inserted with its defaults first: a None set afterwards is an UPDATE to NULL, not "use the default"
    row.updated_at = now
    return row


def save_channels(*, session: Session, account_id: int, user_id: int, email: bool, webhook_url: str | None,
                  sms: bool, sms_number: str | None, expiry_warnings: bool, run_out_days: int | None,
                  now: datetime, allow_http: bool = False) -> Settings:
    errors: dict[str, list[str]] = {}
    webhook_url = (webhook_url or "").strip() or None
    if webhook_url and not (webhook_url.startswith("https://") or (allow_http and webhook_url.startswith("http://"))):
        errors["webhook_url"] = [N_("Enter an https:// address.")]
    if run_out_days is not None and run_out_days not in rules.RUN_OUT_DAYS:
        errors["run_out_days"] = [N_("Enter a number of days from 1 to 90.")]
    with db.write(session):
        verified = set(session.scalars(select(User.phone_e164).join(Membership, Membership.user_id == User.id).where(
            Membership.account_id == account_id, User.phone_verified_at.is_not(None))))
        if sms and sms_number not in verified:
            errors["sms_number"] = [N_("Choose a verified mobile number of a member.")]
        if errors:
            raise InvalidFields(errors)
        row = _settings_for_update(session, account_id, now)
        if webhook_url != row.webhook_url:
            audit.record(session, account_id=account_id, user_id=user_id, action=AuditAction.ALERT_WEBHOOK_CHANGED,
                         detail=webhook_url or "-", now=now)
        row.email, row.webhook_url, row.sms, row.sms_number = email, webhook_url, sms, sms_number if sms else None
        row.expiry_warnings, row.run_out_days = expiry_warnings, run_out_days
        if webhook_url and not row.webhook_secret:
            row.webhook_secret = "whsec_" + secrets.token_urlsafe(32)
    return settings_of(session=session, account_id=account_id, now=now)


def rotate_webhook_secret(*, session: Session, account_id: int, user_id: int, now: datetime) -> str:
    with db.write(session):
        row = _settings_for_update(session, account_id, now)
        row.webhook_secret = "whsec_" + secrets.token_urlsafe(32)
        audit.record(session, account_id=account_id, user_id=user_id, action=AuditAction.ALERT_WEBHOOK_SECRET_ROTATED,
                     detail="-", now=now)
        return row.webhook_secret


def webhook_secret(*, session: Session, account_id: int) -> str | None:
    with db.read(session):
        row = session.get(AlertSettings, account_id)
        return row.webhook_secret if row else None


def save_members(*, session: Session, account_id: int, user_id: int, all_members: bool, member_ids: list[int],
                 now: datetime) -> None:
    with db.write(session):
        members = set(session.scalars(select(Membership.user_id).where(Membership.account_id == account_id)))
        if not set(member_ids) <= members:
            raise InvalidFields({"members": [N_("Choose members of this account.")]})
        row = _settings_for_update(session, account_id, now)
        row.all_members = all_members
        session.execute(delete(AlertMember).where(AlertMember.account_id == account_id))
        session.add_all(AlertMember(account_id=account_id, user_id=member) for member in sorted(set(member_ids)))


CONFIRMATION_MAIL = "alert_confirm_address"  # the deferred mail's `compose` name (portal.worker.compose)


def add_address(*, session: Session, account_id: int, user_id: int, address: str, confirm_url: str, language: str,
                now: datetime) -> AddressView:
    """An extra recipient; the mail with the confirmation link leaves with the unit. `confirm_url`
    holds "{token}". The link's token is issued by the worker as it sends the mail
    (`confirmation_mail`), like a password reset's: no row, the outbox included, ever holds it;
    until then the row holds the hash of a token nobody has."""
    address = address.strip()
    if not ADDRESS.match(address) or len(address) > 254:
        raise InvalidFields({"address": [N_("Enter an e-mail address.")]})
    with db.write(session):
        taken = session.scalar(select(AlertAddress.id).where(AlertAddress.account_id == account_id,
                                                             func.lower(AlertAddress.address) == address.lower()))
        if taken is not None:
            raise InvalidFields({"address": [N_("This address is already on the list.")]})
        row = AlertAddress(account_id=account_id, address=address, language=language,
                           token_hash=tokens.new_token()[1], created_at=now)
        session.add(row)
        session.flush()
        audit.record(session, account_id=account_id, user_id=user_id, action=AuditAction.ALERT_ADDRESS_ADDED,
                     detail=address, now=now)
        mail.defer(session, to=address, compose=CONFIRMATION_MAIL, now=now, address_id=row.id, confirm_url=confirm_url)
        return AddressView(row.id, row.address, row.confirmed_at)


def confirmation_mail(session: Session, *, payload: dict, now: datetime) -> MailContent | None:
    """The confirmation mail of an extra address, in the worker's unit of work: a new token,
    whose hash replaces the row's (an earlier link, never delivered, dies). Nothing once the
    address is removed or confirmed."""
    row = session.get(AlertAddress, payload["address_id"])
    if row is None or row.confirmed_at is not None or row.address != payload["to"]:
        return None
    token, row.token_hash = tokens.new_token()
    return MailContent(CONFIRMATION_MAIL, row.language, {"confirm_url": payload["confirm_url"].replace("{token}", token)})


def confirm_address(*, session: Session, token: str, now: datetime) -> AddressView | None:
    with db.write(session):
        row = session.scalars(select(AlertAddress).where(AlertAddress.token_hash == tokens.hash_token(token))).first()
        if row is None:
            return None
        if row.confirmed_at is None:
            row.confirmed_at = now
        return AddressView(row.id, row.address, row.confirmed_at)


def remove_address(*, session: Session, account_id: int, user_id: int, address_id: int, now: datetime) -> None:
    with db.write(session):
        row = session.scalars(select(AlertAddress).where(AlertAddress.id == address_id,
                                                         AlertAddress.account_id == account_id)).first()
        if row is not None:
            audit.record(session, account_id=account_id, user_id=user_id, action=AuditAction.ALERT_ADDRESS_REMOVED,
                         detail=row.address, now=now)
            session.delete(row)


def send_test(*, session: Session, account_id: int, user_id: int, now: datetime) -> str:
    """A test notice to the webhook (only): the "send a test" button. Returns its id."""
    with db.write(session):
        balance = ledger.lock(session, account_id)[0].balance
        return detect.write_notice(session, account_id=account_id, kind=NoticeKind.TEST, now=now,
                                   data={"balance": balance}, only_webhook=True).uuid


def history(*, session: Session, account_id: int, limit: int = 100) -> list[HistoryRow]:
    query = (select(Notice, Delivery).join(Delivery, Delivery.notice_id == Notice.id)
             .where(Notice.account_id == account_id).order_by(Notice.id.desc(), Delivery.id).limit(limit))
    with db.read(session):
        return [HistoryRow(notice.uuid, notice.kind, notice.created_at, delivery.recipient, delivery.channel,
                           delivery.status, delivery.attempts, delivery.last_error, delivery.delivered_at)
                for notice, delivery in session.execute(query)]


def unsubscribe(*, session: Session, token: str, secret: str, now: datetime) -> bool:
    """The link in an optional notice's mail: that recipient gets no more of that topic."""
    read = rules.read_unsubscribe_token(secret, token)
    if read is None:
        return False
    account_id, recipient, topic = read
    try:
        with db.write(session):
            exists = session.scalar(select(AlertOptOut.id).where(AlertOptOut.account_id == account_id,
                                                                AlertOptOut.recipient == recipient,
                                                                AlertOptOut.topic == topic))
            if exists is None:
                session.add(AlertOptOut(account_id=account_id, recipient=recipient, topic=topic, created_at=now))
                session.flush()
    except IntegrityError:  # a concurrent request (the button and the mail provider's one-click) recorded it first
        pass
    return True


# -- the worker's scheduled pass ------------------------------------------------------------------


def _mark_once(session: Session, account_id: int, kind: str, subject: str, now: datetime) -> bool:
    """Record that this warning was given; False when it already was."""
    if session.scalar(select(AlertMark.id).where(AlertMark.account_id == account_id, AlertMark.kind == kind,
                                                 AlertMark.subject == subject)) is not None:
        return False
    session.add(AlertMark(account_id=account_id, kind=kind, subject=subject, created_at=now))
    session.flush()
    return True


def _expiry_warnings(session: Session, account_id: int, now: datetime) -> int:
    settings = detect.settings_row(session, account_id, now)
    if not settings.expiry_warnings:
        return 0
    lots = session.execute(select(LOTS.c.id, LOTS.c.remaining, LOTS.c.expires_at).where(
        LOTS.c.account_id == account_id, LOTS.c.remaining > 0, LOTS.c.refunded_at.is_(None),
        LOTS.c.expires_at > now, LOTS.c.expires_at <= now + timedelta(days=7))).all()
    written = 0
    for lot in lots:
        kind = rules.expiry_warning_due(lot.expires_at, now)
        if kind is not None and _mark_once(session, account_id, kind, f"lot:{lot.id}", now):
            detect.write_notice(session, account_id=account_id, kind=kind, now=now,
                                data={"lot_id": lot.id, "amount": lot.remaining, "expires_at": lot.expires_at.isoformat()})
            written += 1
    return written


def _run_out_warning(session: Session, account_id: int, now: datetime) -> int:
    settings = detect.settings_row(session, account_id, now)
    if settings.run_out_days is None:
        return 0
    summary = queries.summary(session, account_id=account_id, now=now)
    if not rules.run_out_due(summary.forecast, settings.run_out_days, now):
        return 0
    day = now.astimezone(JST).date().isoformat()
    if not _mark_once(session, account_id, NoticeKind.RUN_OUT, day, now):
        return 0
    detect.write_notice(session, account_id=account_id, kind=NoticeKind.RUN_OUT, now=now, data={
        "balance": summary.available, "lasts_until": summary.forecast.lasts_until.isoformat(),
        "daily_burn": summary.forecast.daily_burn})
    return 1


def scheduled_pass(*, session: Session, now: datetime) -> int:
    """Expiry warnings (7 days and 1 day before, once per lot and kind) and run-out warnings
    (once a day) for every account with live credit; one unit of work per account. Returns how
    many notices were written."""
    with db.read(session):
        accounts = sorted(set(session.scalars(select(LOTS.c.account_id).where(LOTS.c.remaining > 0,
                                                                              LOTS.c.expires_at > now))))
    written = 0
    for account_id in accounts:
        with db.write(session):
            ledger.lock(session, account_id)  # one pass at a time per account, whatever the workers
            written += _expiry_warnings(session, account_id, now) + _run_out_warning(session, account_id, now)
    return written
