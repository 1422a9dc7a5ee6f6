"""Retention: messages, calls, callback answers, OTP codes and the OTP guards' refusals older
than 13 months are deleted in
bounded batches, each batch its own short transaction (the rollup follows through the delete
triggers; its emptied days are dropped after). The customer API keeps listing 90 days.

The OTP tallies (a site's live codes sent and verified by the hour, kept by triggers) are read
only by the completion guard over the last day: they go once past that window (with an hour's
margin, see otp.rules.tallies_purge_before), in the same bounded batches. A code of a purged
hour that is changed later (it cannot be verified any more: it expired long before) would only
add a tally row the next pass takes again."""

from datetime import datetime

from sqlalchemy import delete, select, tuple_, update
from sqlmodel import Session

from portal import db
from portal.alerts.models import Delivery
from portal.messaging.api_models import Call, CallbackAttempt, Message
from portal.otp import rules as otp_rules
from portal.otp.models import OtpBlocked, OtpCode, OtpTally
from portal.usage import rules
from portal.usage.models import USAGE_DAILY

MESSAGES, CALLS, ATTEMPTS = Message.__table__, Call.__table__, CallbackAttempt.__table__
DELIVERIES = Delivery.__table__
CODES, REFUSALS, TALLIES = OtpCode.__table__, OtpBlocked.__table__, OtpTally.__table__


def purge(session: Session, *, now: datetime, batch: int = 5000) -> int:
    """Delete every row older than 13 months (at `now`), `batch` rows of a table per
    transaction, and the OTP tallies past their window; returns how many rows of the history
    went (the tallies, counters rather than history, are not counted)."""
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
    _purge_tallies(session, before=otp_rules.tallies_purge_before(now), batch=batch)
    with db.write(session):
        session.execute(delete(USAGE_DAILY).where(USAGE_DAILY.c.events == 0, USAGE_DAILY.c.day <= rules.jst_day(before)))
    return deleted


def _purge_tallies(session: Session, *, before: datetime, batch: int) -> int:
    """The tallies of hours before `before`, oldest first, `batch` rows per transaction."""
    deleted = 0
    while True:
        with db.write(session):
            oldest = (select(TALLIES.c.site_id, TALLIES.c.hour).where(TALLIES.c.hour < before)
                      .order_by(TALLIES.c.hour, TALLIES.c.site_id).limit(batch))
            gone = session.execute(delete(TALLIES).where(tuple_(TALLIES.c.site_id, TALLIES.c.hour).in_(oldest)))
        deleted += gone.rowcount
        if gone.rowcount < batch:
            return deleted
