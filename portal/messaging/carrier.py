"""The carrier protocol: how Chotto hands an SMS to a network.

The default carrier, `test-inbox`, delivers nothing: it records every message in the test
inbox of the account it was sent for. A real carrier adapter plugs in by PORTAL_CARRIER.
"""

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import select
from sqlmodel import Session

from portal.messaging.models import InboxChannel, TestInboxMessage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutgoingSMS:
    account_id: int | None
    recipient: str
    sender: str
    body: str
    reference: str | None = None  # our id: the carrier's idempotency key, so a retry never sends twice


@dataclass(frozen=True)
class OutgoingCall:
    account_id: int
    caller: str
    recipient: str
    tts_message: str | None
    tts_lang: str | None
    recording_url: str | None
    reference: str
    max_seconds: int = 600  # the carrier ends the call there: the hold pays for no more


class CarrierRejected(Exception):
    """The carrier definitely did not deliver (invalid or unreachable number): the send is
    refunded. Any other exception means the outcome is unknown and the send is retried."""


class Carrier(Protocol):
    def send_sms(self, *, session: Session, sms: OutgoingSMS, now: datetime) -> str:
        """Hand the message over; returns the carrier's reference."""

    def place_call(self, *, session: Session, call: OutgoingCall, now: datetime) -> int:
        """Make the call and play it back; returns the answered duration in seconds."""


class TestInboxCarrier:
    def send_sms(self, *, session: Session, sms: OutgoingSMS, now: datetime) -> str:
        record = TestInboxMessage(
            account_id=sms.account_id,
            channel=InboxChannel.SMS,
            recipient=sms.recipient,
            sender=sms.sender,
            body=sms.body,
            created_at=now,
        )
        session.add(record)
        session.flush()
        log.info("test inbox: SMS to %s recorded as #%s", sms.recipient[:-4] + "****", record.id)
        return f"inbox-{record.id}"

    def place_call(self, *, session: Session, call: OutgoingCall, now: datetime) -> int:
        """Record the call's playback; the "duration" is what reading it out would take
        (about 8 characters a second, plus 2 seconds to answer), or 30 s for a recording."""
        if call.tts_message:
            body, duration = f"TTS ({call.tts_lang}): {call.tts_message}", 2 + -(-len(call.tts_message) // 8)
        else:
            body, duration = f"Recording: {call.recording_url}", 30
        duration = min(duration, call.max_seconds)
        session.add(TestInboxMessage(account_id=call.account_id, channel=InboxChannel.VOICE, recipient=call.recipient,
                                     sender=call.caller, body=f"{body} [{duration} s]", created_at=now))
        session.flush()
        return duration


CARRIERS = {"test-inbox": TestInboxCarrier}


def carrier_for(name: str) -> Carrier:
    try:
        return CARRIERS[name]()
    except KeyError:
        raise ValueError(f"unknown carrier {name!r}; known: {', '.join(CARRIERS)}") from None


def inbox_for(session: Session, *, account_id: int, limit: int = 100) -> list[TestInboxMessage]:
    query = (
        select(TestInboxMessage)
        .where(TestInboxMessage.account_id == account_id)
        .order_by(TestInboxMessage.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))
