"""The carrier protocol: how Chotto hands an SMS to a network.

The default carrier, `test-inbox`, delivers nothing: it records every message in the test
inbox of the account it was sent for. A real carrier adapter plugs in by PORTAL_CARRIER.
"""

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from flask import current_app
from sqlalchemy import select
from sqlmodel import Session

from portal.messaging.models import TestInboxMessage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutgoingSMS:
    account_id: int | None
    recipient: str
    sender: str
    body: str


class Carrier(Protocol):
    def send_sms(self, *, session: Session, sms: OutgoingSMS, now: datetime) -> str:
        """Hand the message over; returns the carrier's reference."""


class TestInboxCarrier:
    def send_sms(self, *, session: Session, sms: OutgoingSMS, now: datetime) -> str:
        record = TestInboxMessage(
            account_id=sms.account_id,
            channel="sms",
            recipient=sms.recipient,
            sender=sms.sender,
            body=sms.body,
            created_at=now,
        )
        session.add(record)
        session.flush()
        log.info("test inbox: SMS to %s recorded as #%s", sms.recipient[:-4] + "****", record.id)
        return f"inbox-{record.id}"


CARRIERS = {"test-inbox": TestInboxCarrier}


def carrier_for(name: str) -> Carrier:
    try:
        return CARRIERS[name]()
    except KeyError:
        raise ValueError(f"unknown carrier {name!r}; known: {', '.join(CARRIERS)}") from None


def current_carrier() -> Carrier:
    return current_app.extensions["portal.carrier"]


def inbox_for(session: Session, *, account_id: int, limit: int = 100) -> list[TestInboxMessage]:
    query = (
        select(TestInboxMessage)
        .where(TestInboxMessage.account_id == account_id)
        .order_by(TestInboxMessage.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))
