"""Events posted to an OTP site's callback URL."""

import json
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlmodel import Session

from portal import outbox
from portal.clock import JST
from portal.credentials.models import Credential
from portal.messaging.delivery import callback_subject
from portal.otp.models import OtpSite


class Event(StrEnum):
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    VERIFIED = "verified"
    FALLBACK_CALLED = "fallback_called"
    BLOCKED = "blocked"


def post_event(session: Session, site: OtpSite, credential_id: int, event: Event, now: datetime, *,
               phone_number: str, otp_id: str | None = None, **extra) -> None:
    """Queue a signed POST of the event to the site's callback URL (if it has one), signed like
    the status callbacks with the callback secret of the credential that asked for the code."""
    if not site.callback_url:
        return
    body = {"event": event.value, "website": site.domain, "otp_id": otp_id, "phone_number": phone_number,
            "time": now.astimezone(JST).isoformat(), **extra}
    sid = session.scalar(select(Credential.sid).where(Credential.id == credential_id))
    subject = callback_subject(account_id=site.account_id, ref=otp_id, event=event) if otp_id else {}
    outbox.enqueue(session, kind=outbox.OutboxKind.CALLBACK, now=now,
                   payload={"url": site.callback_url, "sid": sid, "body": json.dumps(body, ensure_ascii=False)}
                   | subject)
