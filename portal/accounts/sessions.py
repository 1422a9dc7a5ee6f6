"""Server-side sign-in sessions: the cookie carries a random token, the row decides.

Ending a row (log-out, password change, "sign out other sessions") refuses the cookie on its
very next request. A session also ends after 60 idle minutes and 24 hours in all.
"""

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlmodel import Session

from portal import db
from portal.accounts import throttle, tokens
from portal.accounts.errors import NotAMember, WrongPassword
from portal.accounts.models import User, UserSession
from portal.accounts.queries import membership, memberships_of

log = logging.getLogger("portal.auth")

IDLE_TIMEOUT = timedelta(minutes=60)
ABSOLUTE_TIMEOUT = timedelta(hours=24)
TOUCH_EVERY = timedelta(minutes=1)
FRESH_FOR = timedelta(minutes=10)
IP_LENGTH = 45  # the longest written form of an address (IPv6 with an IPv4 tail)
USER_AGENT_LENGTH = 200


def start(*, session: Session, user_id: int, ip: str, user_agent: str, now: datetime, ending: str | None = None) -> str:
    """Open a session and return its token; `ending` is the token of the browser's previous
    session, which is ended so a fixed or stolen pre-login cookie is worth nothing.

    The address and the browser's User-Agent are kept only to help the person recognise the
    session in their list: a User-Agent is the browser's free text, of any length, and an
    "address" longer than any IP address is none; both are kept cut to their columns, since
    refusing a sign-in over them would help nobody."""
    token, token_hash = tokens.new_token()
    with db.write(session):
        if ending:
            _end_by_token(session, ending, now)
        accounts = memberships_of(session, user_id=user_id)
        session.add(
            UserSession(
                token_hash=token_hash,
                user_id=user_id,
                account_id=accounts[0][1].id if accounts else None,
                created_at=now,
                last_seen_at=now,
                authenticated_at=now,
                ip=ip[:IP_LENGTH],
                user_agent=user_agent[:USER_AGENT_LENGTH],
            )
        )
    return token


def is_live(row: UserSession, now: datetime) -> bool:
    return (
        row.ended_at is None
        and now - row.last_seen_at < IDLE_TIMEOUT
        and now - row.created_at < ABSOLUTE_TIMEOUT
    )


def resolve(*, session: Session, token: str, now: datetime) -> tuple[UserSession, User] | None:
    """The live session and its user for a cookie token (a read unit: most requests never
    wait for SQLite's write lock), touching last-seen at most once a minute (a write unit)."""
    with db.read(session):
        row = session.scalars(select(UserSession).where(UserSession.token_hash == tokens.hash_token(token))).first()
        if row is None or not is_live(row, now):
            return None
        user = session.get(User, row.user_id)
        if user is None or user.disabled_at is not None:
            return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        with db.write(session):
            row.last_seen_at = now
    return row, user


def end(*, session: Session, token: str, now: datetime) -> None:
    with db.write(session):
        _end_by_token(session, token, now)


def _end_by_token(session: Session, token: str, now: datetime) -> None:
    row = session.scalars(select(UserSession).where(UserSession.token_hash == tokens.hash_token(token))).first()
    if row is not None and row.ended_at is None:
        row.ended_at = now
        log.info("session ended user_id=%s session_id=%s", row.user_id, row.id)


def end_one(*, session: Session, user_id: int, session_id: int, now: datetime) -> None:
    with db.write(session):
        row = session.get(UserSession, session_id)
        if row is not None and row.user_id == user_id and row.ended_at is None:
            row.ended_at = now


def live_sessions(*, session: Session, user_id: int, now: datetime) -> list[UserSession]:
    query = (
        select(UserSession)
        .where(UserSession.user_id == user_id, UserSession.ended_at.is_(None))
        .order_by(UserSession.last_seen_at.desc())
    )
    with db.read(session):
        return [row for row in session.scalars(query) if is_live(row, now)]


def is_fresh(row: UserSession, now: datetime) -> bool:
    return now - row.authenticated_at < FRESH_FOR


def reauthenticate(*, session: Session, session_id: int, password: str, now: datetime) -> str:
    """Check the password again, against the same failure count as log-in (LoginThrottled,
    LoginLocked); the session gets a new token (returned) and a fresh time. The check commits
    units of its own (the count outlives a wrong password), so it runs between this service's."""
    with db.read(session):
        row = session.get(UserSession, session_id)
        user = session.get(User, row.user_id)
    if not throttle.checked_password(session, email=user.email, stored_hash=user.password_hash, password=password, now=now):
        log.info("re-authentication failed user_id=%s", row.user_id)
        raise WrongPassword()
    token, token_hash = tokens.new_token()
    with db.write(session):
        row = session.get(UserSession, session_id)
        row.authenticated_at, row.token_hash = now, token_hash
    log.info("re-authenticated user_id=%s session_id=%s", row.user_id, row.id)
    return token


def switch_account(*, session: Session, session_id: int, account_id: int) -> None:
    with db.write(session):
        row = session.get(UserSession, session_id)
        if membership(session, account_id=account_id, user_id=row.user_id) is None:
            raise NotAMember()
        row.account_id = account_id
