"""At most a few mails of one purpose per address per hour, whatever the client's IP.

Addresses are counted under a hash, never in clear. Over the quota the caller answers exactly
as usual and simply queues no mail, so the limit tells nobody whether an address is known."""

import hashlib
import logging
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from portal.accounts.models import MailPurpose, MailQuota

log = logging.getLogger("portal.auth")

MAILS_PER_ADDRESS_PER_HOUR = 3


def address_hash(email: str) -> str:
    return hashlib.sha256(f"mail-quota\x1f{email}".encode()).hexdigest()


def allow_mail(session: Session, *, email: str, purpose: MailPurpose, now: datetime) -> bool:
    """Count one more mail of `purpose` to `email` this hour (in the caller's unit of work);
    False once the quota is spent."""
    purpose = MailPurpose(purpose)
    key = address_hash(email)
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    table = MailQuota.__table__
    counted = (
        insert(table)
        .values(address_hash=key, purpose=purpose, hour=_hour_of(now), requests=1)
        .on_conflict_do_update(
            index_elements=[table.c.address_hash, table.c.purpose, table.c.hour],
            set_={"requests": table.c.requests + 1},
        )
        .returning(table.c.requests)
    )
    requests = session.execute(counted).scalar_one()
    if requests > MAILS_PER_ADDRESS_PER_HOUR:
        log.info("mail quota reached purpose=%s address_hash=%s", purpose, key[:12])
        return False
    return True


def purge(session: Session, *, now: datetime) -> None:
    """Counters of hours that are over (in the caller's unit of work)."""
    session.execute(delete(MailQuota).where(MailQuota.hour < _hour_of(now) - timedelta(hours=1)))


def _hour_of(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0)
