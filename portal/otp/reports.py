"""Logs and statistics of an OTP site, for its pages."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlmodel import Session

from portal import db
from portal.messaging.api_models import Call, CallStatus, Message, MessageStatus
from portal.otp import rules
from portal.otp.models import BlockReason, Channel, OtpBlocked, OtpCode
from portal.otp.sites import own_site


@dataclass(frozen=True)
class LogLine:
    """One request of a site: a code sent (status from rules.outcome) or a blocked one."""

    at: datetime
    phone_number: str
    mode: str
    channel: str  # sms, or "sms+voice" when the fallback called
    status: str  # verified, failed, replaced, expired, delivered, sent, or blocked
    reason: BlockReason | None  # why it was blocked
    msgid: str | None
    cost: int  # milli-yen


def _codes(session: Session, site_id: int, since: datetime, limit: int | None = None):
    query = (select(OtpCode, Message.status, Message.cost, Call.cost, Call.status)
             .outerjoin(Message, Message.msgid == OtpCode.msgid)
             .outerjoin(Call, or_(Call.callid == OtpCode.fallback_callid, Call.callid == OtpCode.msgid))
             .where(OtpCode.site_id == site_id, OtpCode.created_at >= since).order_by(OtpCode.id.desc()))
    return session.execute(query.limit(limit) if limit else query).all()


def log_of(*, session: Session, account_id: int, site_id: int, now: datetime, limit: int = 100,
           days: int = 90) -> list[LogLine]:
    """The site's newest requests, codes and blocked ones together, newest first."""
    since = now - timedelta(days=days)
    with db.read(session):
        own_site(session, account_id, site_id)
        lines = [LogLine(code.created_at, code.phone_number, code.mode,
                         "sms+voice" if code.fallback_callid else code.channel.value,
                         rules.outcome(code.status, code.expires_at, _delivery(code, status, call_status), now), None,
                         code.msgid, (sms_cost or 0) + (call_cost or 0))
                 for code, status, sms_cost, call_cost, call_status in _codes(session, site_id, since, limit)]
        blocked = session.scalars(select(OtpBlocked)
                                  .where(OtpBlocked.site_id == site_id, OtpBlocked.created_at >= since)
                                  .order_by(OtpBlocked.id.desc()).limit(limit))
        lines += [LogLine(b.created_at, b.phone_number, b.mode, "sms", "blocked", b.reason, None, 0) for b in blocked]
    return sorted(lines, key=lambda line: line.at, reverse=True)[:limit]


def _delivery(code: OtpCode, message_status: str | None, call_status: str | None) -> str | None:
    """How the code reached the phone, in the SMS's terms: a code read out in an answered call
    was delivered, in a failed one it failed."""
    if code.channel == Channel.VOICE:
        return {CallStatus.ANSWERED: MessageStatus.DELIVERED, CallStatus.FAILED: MessageStatus.FAIL}.get(call_status)
    return message_status


def statistics_of(*, session: Session, account_id: int, site_id: int, now: datetime, days: int = 30,
                  mode: str = "live") -> list[rules.Day]:
    """By Japan day, newest first: requests, blocked, delivered, verified, the completion rate,
    fallback calls and cost, for the live (or test) requests of the last `days` days."""
    since = now - timedelta(days=days)
    with db.read(session):
        own_site(session, account_id, site_id)
        sent = []
        for code, status, sms_cost, call_cost, call_status in _codes(session, site_id, since):
            delivery = _delivery(code, status, call_status)
            if code.mode == mode:
                sent.append(rules.Sent(code.created_at, rules.outcome(code.status, code.expires_at, delivery, now),
                                       delivery == MessageStatus.DELIVERED, code.fallback_callid is not None,
                                       (sms_cost or 0) + (call_cost or 0)))
        blocked = session.scalars(select(OtpBlocked.created_at).where(
            OtpBlocked.site_id == site_id, OtpBlocked.mode == mode, OtpBlocked.created_at >= since))
        return rules.by_day(sent, list(blocked))
