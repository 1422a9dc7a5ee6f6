"""Retention: messages, calls, callback answers, OTP codes and the OTP guards' refusals older
than 13 months are deleted in
bounded batches, each batch its own short transaction (the rollup follows through the delete
triggers; its emptied days are dropped after). The customer API keeps listing 90 days."""

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlmodel import Session

from portal import db
from portal.alerts.models import Delivery
from portal.messaging.api_models import Call, CallbackAttempt, Message
from portal.otp.models import OtpBlocked, OtpCode
from portal.usage import rules
from portal.usage.models import USAGE_DAILY

MESSAGES, CALLS, ATTEMPTS = Message.__table__, Call.__table__, CallbackAttempt.__table__
DELIVERIES = Delivery.__table__
CODES, REFUSALS = OtpCode.__table__, OtpBlocked.__table__


def purge(session: Session, *, now: datetime, batch: int = 5000) -> int:
    """Delete every row older than 13 months (at `now`), `batch` rows of a table per
    transaction; returns how many rows went."""
    before = rules.purge_before(now)
    deleted = 0
    for table, column in ((MESSAGES, MESSAGES.c.created_at), (CALLS, CALLS.c.created_at),
                          (ATTEMPTS, ATTEMPTS.c.attempted_at), (CODES, CODES.c.created_at),
                          (REFUSALS, REFUSALS.c.created_at)):
        while True:
            with db.write(session):
                ids = session.scalars(select(table.c.id).where(column < before).order_by(table.c.id)
                                      .limit(batch)).all()
                if ids and table is MESSAGES:  # an alert delivery forgets the message it was sent as
                    session.execute(update(DELIVERIES).where(DELIVERIES.c.message_id.in_(ids))
                                    .values(message_id=None))
                if ids:
                    session.execute(delete(table).where(table.c.id.in_(ids)))
            deleted += len(ids)
            if len(ids) < batch:
                break
    with db.write(session):
        session.execute(delete(USAGE_DAILY).where(USAGE_DAILY.c.events == 0, USAGE_DAILY.c.day <= rules.jst_day(before)))
    return deleted
