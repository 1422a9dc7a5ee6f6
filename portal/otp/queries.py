"""Reads for the OTP pages: a site's log (its recent codes and blocked requests, the numbers
masked but for their last four digits) and its statistics by day in Japan time. Live and test
codes are kept apart, as the API keeps them."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlmodel import Session

from portal import db
from portal.clock import JST
from portal.messaging.api_models import Message, MessageStatus
from portal.otp.models import BlockReason, Channel, CodeStatus, OtpBlocked, OtpCode

MASK = "•"
KEPT_DIGITS = 4


class LogStatus(StrEnum):
    SENT = "sent"
    DELIVERED = "delivered"
    VERIFIED = "verified"
    EXPIRED = "expired"
    FAILED = "failed"
    LOCKED = "locked"  # its attempts were used up
    REPLACED = "replaced"
    BLOCKED = "blocked"


@dataclass(frozen=True)
class LogLine:
    at: datetime
    phone: str  # masked
    channel: Channel | None  # None for a blocked request: nothing was sent
    status: LogStatus
    reason: BlockReason | None = None
    msgid: str | None = None


@dataclass(frozen=True)
class Day:
    day: date  # in Japan time
    requests: int
    delivered: int
    verified: int
    blocked: int
    fallback_calls: int
    cost: int  # milli-yen, refunds taken off

    @property
    def starts_at(self) -> datetime:
        return datetime.combine(self.day, datetime.min.time(), JST)

    @property
    def completion_percent(self) -> int | None:
        return round(100 * self.verified / self.requests) if self.requests else None


def masked(e164: str) -> str:
    """"+819012345678" → "•••••••••5678": only the last four digits are shown."""
    return MASK * max(0, len(e164) - KEPT_DIGITS) + e164[-KEPT_DIGITS:]


def code_status(status: CodeStatus, expires_at: datetime, message_status: str | None, now: datetime) -> LogStatus:
    if status == CodeStatus.VERIFIED:
        return LogStatus.VERIFIED
    if status == CodeStatus.LOCKED:
        return LogStatus.LOCKED
    if message_status == MessageStatus.FAIL:
        return LogStatus.FAILED
    if status == CodeStatus.REPLACED:
        return LogStatus.REPLACED
    if now >= expires_at:
        return LogStatus.EXPIRED
    return LogStatus.DELIVERED if message_status == MessageStatus.DELIVERED else LogStatus.SENT


def _codes(account_id: int, site_id: int, mode: str):
    return (select(OtpCode.created_at, OtpCode.phone_number, OtpCode.channel, OtpCode.status, OtpCode.expires_at,
                   OtpCode.msgid, Message.status, Message.cost, Message.refunded_at)
            .outerjoin(Message, Message.msgid == OtpCode.msgid)
            .where(OtpCode.account_id == account_id, OtpCode.site_id == site_id, OtpCode.mode == mode))


def _blocked(account_id: int, site_id: int, mode: str):
    return select(OtpBlocked.created_at, OtpBlocked.phone_number, OtpBlocked.reason).where(
        OtpBlocked.account_id == account_id, OtpBlocked.site_id == site_id, OtpBlocked.mode == mode)


def log_of(*, session: Session, account_id: int, site_id: int, mode: str, now: datetime, limit: int = 50) -> list[LogLine]:
    """The newest `limit` codes and blocked requests of the site, newest first."""
    with db.read(session):
        codes = session.execute(_codes(account_id, site_id, mode).order_by(OtpCode.id.desc()).limit(limit)).all()
        blocked = session.execute(_blocked(account_id, site_id, mode).order_by(OtpBlocked.id.desc()).limit(limit)).all()
    lines = [LogLine(row[0], masked(row[1]), row[2], code_status(row[3], row[4], row[6], now), msgid=row[5])
             for row in codes]
    lines += [LogLine(at, masked(phone), None, LogStatus.BLOCKED, reason=reason) for at, phone, reason in blocked]
    return sorted(lines, key=lambda line: line.at, reverse=True)[:limit]


def daily(*, session: Session, account_id: int, site_id: int, mode: str, now: datetime, days: int = 30) -> list[Day]:
    """The last `days` days (Japan time) that saw any request, newest first."""
    since = datetime.combine(now.astimezone(JST).date() - timedelta(days=days - 1), datetime.min.time(), JST)
    with db.read(session):
        codes = session.execute(_codes(account_id, site_id, mode).where(OtpCode.created_at >= since)).all()
        blocked = session.scalars(select(OtpBlocked.created_at).where(
            OtpBlocked.account_id == account_id, OtpBlocked.site_id == site_id, OtpBlocked.mode == mode,
            OtpBlocked.created_at >= since)).all()
    counts: dict[date, list[int]] = defaultdict(lambda: [0] * 6)
    for at, _phone, channel, status, _expires, _msgid, message_status, cost, refunded_at in codes:
        day = counts[at.astimezone(JST).date()]
        day[0] += 1
        day[1] += message_status == MessageStatus.DELIVERED or status == CodeStatus.VERIFIED
        day[2] += status == CodeStatus.VERIFIED
        day[4] += channel == Channel.VOICE
        day[5] += (cost or 0) if refunded_at is None else 0
    for at in blocked:
        counts[at.astimezone(JST).date()][3] += 1
    return [Day(day, *values) for day, values in sorted(counts.items(), reverse=True)]
