"""The carrier protocol: how Chotto hands an SMS to a network.

The default carrier, `test-inbox`, delivers nothing: it records every message in the test
inbox of the account it was sent for. A real carrier adapter plugs in by PORTAL_CARRIER.

Every send carries our id (`reference`: the msgid or callid) as the carrier's idempotency key:
a retry after a timeout never sends twice, and a send whose outcome stayed unknown is looked
up by it later (`find_sms`, `find_call`; portal.messaging.delivery's reconcile pass).
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import select
from sqlmodel import Session

from portal import db
from portal.messaging.models import InboxChannel, TestInboxMessage

log = logging.getLogger(__name__)

HANDOVER_TIMEOUT = timedelta(seconds=60)
"""The longest a real adapter waits for the carrier to take an SMS or a call (connecting and
the answer to the request, not the call's own length): then it raises, and the outcome is
unknown. At most half the send job's lease (portal.outbox.LEASE, five minutes; sends get no
shorter one), so a live worker never loses its lease mid hand-over, and a stale worker's
hand-over has ended soon after its lease ran out (test_give_up checks the invariant)."""

LOOKUP_TIMEOUT = timedelta(seconds=10)
"""The longest a real adapter waits for the carrier's status API (`find_sms`, `find_call`)
before it raises ("cannot tell now"): the reconcile pass runs in the worker's loop, between
deliveries that include balance alerts promised within a minute."""


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


class CarrierUnavailable(Exception):
    """The send definitely did not reach the carrier (the connection was refused, or the
    carrier answered "busy, try later" before taking it): retried, and failed and refunded if
    the worker gives up. Any exception but this and CarrierRejected leaves the outcome unknown."""


@dataclass(frozen=True)
class SentSMS:
    """What the carrier knows of a message it took: its reference, and whether it was delivered."""

    carrier_ref: str
    delivered: bool


class Carrier(Protocol):
    def send_sms(self, *, session: Session, sms: OutgoingSMS, now: datetime) -> str:
        """Hand the message over; returns the carrier's reference."""

    def place_call(self, *, session: Session, call: OutgoingCall, now: datetime) -> int:
        """Make the call and play it back; returns the answered duration in seconds."""

    def find_sms(self, *, session: Session, reference: str) -> SentSMS | None:
        """The message the carrier took with this idempotency key, or None when it never took
        one; raises when it cannot tell now (asked again on the next pass). Called with no
        transaction open: an adapter that reads the database opens its own read unit."""

    def find_call(self, *, session: Session, reference: str) -> int | None:
        """The answered seconds of the call placed with this idempotency key, or None when none
        was placed; raises when it cannot tell now."""


class TestInboxCarrier:
    """Records in the caller's transaction, so its outcome is never unknown; honours the
    idempotency key as a real carrier must (a second send with one records nothing)."""

    def send_sms(self, *, session: Session, sms: OutgoingSMS, now: datetime) -> str:
        if sms.reference is not None and (known := self._recorded(session, InboxChannel.SMS, sms.reference)):
            return f"inbox-{known.id}"
        record = TestInboxMessage(
            account_id=sms.account_id,
            channel=InboxChannel.SMS,
            recipient=sms.recipient,
            sender=sms.sender,
            body=sms.body,
            reference=sms.reference,
            created_at=now,
        )
        session.add(record)
        session.flush()
        log.info("test inbox: SMS to %s recorded as #%s", sms.recipient[:-4] + "****", record.id)
        return f"inbox-{record.id}"

    def find_sms(self, *, session: Session, reference: str) -> SentSMS | None:
        with db.read(session):  # the inbox is the database: a short read of its own
            known = self._recorded(session, InboxChannel.SMS, reference)
        return SentSMS(carrier_ref=f"inbox-{known.id}", delivered=True) if known else None

    def find_call(self, *, session: Session, reference: str) -> int | None:
        with db.read(session):
            known = self._recorded(session, InboxChannel.VOICE, reference)
        return _seconds_of(known.body) if known else None

    @staticmethod
    def _recorded(session: Session, channel: InboxChannel, reference: str) -> TestInboxMessage | None:
        return session.scalars(select(TestInboxMessage).where(TestInboxMessage.channel == channel,
                                                              TestInboxMessage.reference == reference)).first()

    def place_call(self, *, session: Session, call: OutgoingCall, now: datetime) -> int:
        """Record the call's playback; the "duration" is what reading it out would take
        (about 8 characters a second, plus 2 seconds to answer), or 30 s for a recording."""
        if call.tts_message:
            body, duration = f"TTS ({call.tts_lang}): {call.tts_message}", 2 + -(-len(call.tts_message) // 8)
        else:
            body, duration = f"Recording: {call.recording_url}", 30
        if known := self._recorded(session, InboxChannel.VOICE, call.reference):
            return _seconds_of(known.body)
        duration = min(duration, call.max_seconds)
        session.add(TestInboxMessage(account_id=call.account_id, channel=InboxChannel.VOICE, recipient=call.recipient,
                                     sender=call.caller, body=f"{body} [{duration} s]", reference=call.reference,
                                     created_at=now))
        session.flush()
        return duration


def _seconds_of(body: str) -> int:
    """The duration a recorded call's body ends with ("… [12 s]")."""
    return int(body.rsplit("[", 1)[1].split(" ", 1)[0])


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
