"""One failure count per address for every password check: log-in, re-authentication and
password change. Five free failures, then 30 s doubling up to an hour; after 100 in a row
only a reset by e-mail unlocks the address. Unknown addresses are counted exactly alike."""

import hashlib
import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from portal import db
from portal.accounts import passwords
from portal.accounts.errors import LoginLocked, LoginThrottled
from portal.accounts.models import LoginThrottle

log = logging.getLogger("portal.auth")

FREE_FAILURES = 5
FIRST_DELAY = timedelta(seconds=30)
LONGEST_DELAY = timedelta(hours=1)
HARD_CAP = 100


def throttle_delay(failures: int) -> timedelta:
    """No delay for the first five failures, then 30 s doubling up to an hour."""
    if failures < FREE_FAILURES:
        return timedelta(0)
    return min(FIRST_DELAY * 2 ** min(failures - FREE_FAILURES, 8), LONGEST_DELAY)


def email_key(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()


def checked_password(session: Session, *, email: str, stored_hash: str | None, password: str, now: datetime) -> bool:
    """Whether `password` matches `stored_hash` (None: no login, a dummy hash is checked),
    counted against the address's throttle. Raises LoginThrottled or LoginLocked without
    checking anything while the address waits.

    The attempt is counted as a failure under the address's row lock before the password is
    checked, so parallel guesses cannot slip past the delays; a right password then clears the
    count. Two units of work around the check: argon2 runs outside any transaction, so a burst
    of checks never holds the database (on SQLite, the whole database) while hashing, and the
    count is committed before the caller refuses a wrong password, which is why this must not
    run inside a caller's unit (it would be rolled back with it)."""
    db.outside_units(session)
    with db.write(session):
        throttle = _locked_throttle(session, email_key(email), now)
        refusal = _refusal(throttle, now)
        if refusal is None:
            _record_failure(throttle, now)
    if refusal is not None:
        raise refusal
    if not passwords.verify_password(stored_hash or passwords.DUMMY_HASH, password) or stored_hash is None:
        return False
    with db.write(session):
        clear(session, email=email)
    return True


def clear(session: Session, *, email: str) -> None:
    """Forget the address's failures (a right password, or a reset by e-mail), in the caller's unit."""
    session.execute(delete(LoginThrottle).where(LoginThrottle.email_hash == email_key(email)))


def _locked_throttle(session: Session, key: str, now: datetime) -> LoginThrottle:
    """The address's throttle row, created if missing, locked until the transaction ends."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(
        insert(LoginThrottle).values(email_hash=key, failures=0, last_failure_at=now).on_conflict_do_nothing()
    )
    query = select(LoginThrottle).where(LoginThrottle.email_hash == key).execution_options(populate_existing=True)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return session.scalars(query).one()


def _refusal(throttle: LoginThrottle, now: datetime) -> LoginLocked | LoginThrottled | None:
    if throttle.failures >= HARD_CAP:
        return LoginLocked()
    if throttle.blocked_until is not None and throttle.blocked_until > now:
        return LoginThrottled(int((throttle.blocked_until - now).total_seconds()) + 1)
    return None


def _record_failure(throttle: LoginThrottle, now: datetime) -> None:
    throttle.failures += 1
    throttle.last_failure_at = now
    delay = throttle_delay(throttle.failures)
    throttle.blocked_until = now + delay if delay else None
