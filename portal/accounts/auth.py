"""Log-in with throttling, e-mail verification, password reset and password change."""

import hashlib
import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from portal import mail
from portal.accounts import passwords, tokens
from portal.accounts.errors import (
    InvalidCredentials,
    LoginLocked,
    LoginThrottled,
    TokenInvalid,
    WeakPassword,
    WrongPassword,
)
from portal.accounts.models import LoginThrottle, OneTimeToken, User, UserSession
from portal.accounts.queries import InvalidEmail, normalise_email, user_by_email
from portal.accounts.signup import queue_verification_mail

log = logging.getLogger("portal.auth")

FREE_FAILURES = 5
FIRST_DELAY = timedelta(seconds=30)
LONGEST_DELAY = timedelta(hours=1)
HARD_CAP = 100
RESET_TTL = timedelta(minutes=60)


def throttle_delay(failures: int) -> timedelta:
    """No delay for the first five failures, then 30 s doubling up to an hour."""
    if failures < FREE_FAILURES:
        return timedelta(0)
    return min(FIRST_DELAY * 2 ** min(failures - FREE_FAILURES, 8), LONGEST_DELAY)


def _email_key(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()


def authenticate(*, session: Session, email: str, password: str, now: datetime) -> User:
    """The user whose password this is, or InvalidCredentials; throttled per address.

    The attempt is counted as a failure under the address's row lock before the password is
    checked, so parallel guesses cannot slip past the delays; a right password then clears
    the count. Two short transactions: argon2 runs in neither, so a burst of log-ins never
    holds the database (on SQLite, the whole database) while hashing."""
    try:
        email = normalise_email(email)
    except InvalidEmail:
        passwords.verify_password(passwords.DUMMY_HASH, password)
        raise InvalidCredentials() from None
    key = _email_key(email)
    throttle = _locked_throttle(session, key, now)
    try:
        _refuse_if_throttled(throttle, now)
    except (LoginLocked, LoginThrottled):
        session.commit()
        raise
    _record_failure(throttle, now)
    user = user_by_email(session, email)
    stored = user.password_hash if user is not None and user.disabled_at is None else None
    session.commit()
    if not passwords.verify_password(stored or passwords.DUMMY_HASH, password) or stored is None:
        log.info("login failed email_hash=%s", key[:12])
        raise InvalidCredentials()
    session.execute(delete(LoginThrottle).where(LoginThrottle.email_hash == key))
    if passwords.needs_rehash(stored):
        session.execute(update(User).where(User.id == user.id).values(password_hash=passwords.hash_password(password)))
    session.commit()
    log.info("login succeeded user_id=%s", user.id)
    return user


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


def _refuse_if_throttled(throttle: LoginThrottle, now: datetime) -> None:
    if throttle.failures >= HARD_CAP:
        raise LoginLocked()
    if throttle.blocked_until is not None and throttle.blocked_until > now:
        raise LoginThrottled(int((throttle.blocked_until - now).total_seconds()) + 1)


def _record_failure(throttle: LoginThrottle, now: datetime) -> None:
    throttle.failures += 1
    throttle.last_failure_at = now
    delay = throttle_delay(throttle.failures)
    throttle.blocked_until = now + delay if delay else None


def _use_token(session: Session, *, token: str, purpose: str, now: datetime) -> OneTimeToken:
    """Mark a link used exactly once; a concurrent second use finds it already used."""
    token_hash = tokens.hash_token(token)
    claimed = session.execute(
        update(OneTimeToken)
        .where(
            OneTimeToken.token_hash == token_hash,
            OneTimeToken.purpose == purpose,
            OneTimeToken.used_at.is_(None),
            OneTimeToken.expires_at > now,
        )
        .values(used_at=now)
    )
    if claimed.rowcount != 1:
        raise TokenInvalid()
    return session.scalars(select(OneTimeToken).where(OneTimeToken.token_hash == token_hash)).one()


def verify_email(*, session: Session, token: str, now: datetime) -> User:
    record = _use_token(session, token=token, purpose="verify_email", now=now)
    user = session.get(User, record.user_id)
    if user.email_verified_at is None:
        user.email_verified_at = now
    session.commit()
    log.info("email verified user_id=%s", user.id)
    return user


def resend_verification(*, session: Session, user_id: int, now: datetime) -> None:
    user = session.get(User, user_id)
    if user.email_verified_at is None:
        queue_verification_mail(session, user=user, now=now)
    session.commit()


def request_password_reset(*, session: Session, email: str, now: datetime) -> None:
    """Mail a reset link when the address is known; the caller answers the same either way."""
    try:
        user = user_by_email(session, normalise_email(email))
    except InvalidEmail:
        return
    if user is None or user.disabled_at is not None:
        return
    token, token_hash = tokens.new_token()
    session.add(
        OneTimeToken(
            purpose="reset_password", user_id=user.id, token_hash=token_hash, created_at=now, expires_at=now + RESET_TTL
        )
    )
    mail.queue(session, to=user.email, template="reset_password", language=user.language, now=now, user=user, token=token)
    session.commit()


def check_reset_token(*, session: Session, token: str, now: datetime) -> User:
    """The user a reset link belongs to, without using it up (to show the form)."""
    record = session.scalars(
        select(OneTimeToken).where(
            OneTimeToken.token_hash == tokens.hash_token(token),
            OneTimeToken.purpose == "reset_password",
            OneTimeToken.used_at.is_(None),
            OneTimeToken.expires_at > now,
        )
    ).first()
    if record is None:
        raise TokenInvalid()
    return session.get(User, record.user_id)


def reset_password(*, session: Session, token: str, new_password: str, now: datetime) -> User:
    """Set a new password from a reset link: ends every session, clears the log-in throttle,
    and tells the owner by mail. It does not sign anyone in."""
    user = check_reset_token(session=session, token=token, now=now)
    _check_new_password(user, new_password)  # before anything is written: a refusal uses up nothing
    session.commit()  # argon2 below runs outside any transaction
    password_hash = passwords.hash_password(new_password)
    _use_token(session, token=token, purpose="reset_password", now=now)
    user = session.get(User, user.id)
    user.password_hash, user.password_changed_at = password_hash, now
    end_sessions(session, user_id=user.id, now=now)
    session.execute(LoginThrottle.__table__.delete().where(LoginThrottle.email_hash == _email_key(user.email)))
    if user.email_verified_at is None:
        user.email_verified_at = now  # the link reached the mailbox
    mail.queue(session, to=user.email, template="password_changed", language=user.language, now=now, user=user)
    session.commit()
    log.info("password reset user_id=%s", user.id)
    return user


def change_password(
    *,
    session: Session,
    user_id: int,
    current_password: str,
    new_password: str,
    keep_session_id: int,
    end_other_sessions: bool,
    now: datetime,
) -> None:
    user = session.get(User, user_id)
    session.commit()  # argon2 below runs outside any transaction
    if not passwords.verify_password(user.password_hash, current_password):
        raise WrongPassword()
    _check_new_password(user, new_password)
    password_hash = passwords.hash_password(new_password)
    user = session.get(User, user_id)
    user.password_hash, user.password_changed_at = password_hash, now
    if end_other_sessions:
        end_sessions(session, user_id=user.id, now=now, except_id=keep_session_id)
    mail.queue(session, to=user.email, template="password_changed", language=user.language, now=now, user=user)
    session.commit()
    log.info("password changed user_id=%s", user.id)


def _check_new_password(user: User, new_password: str) -> None:
    reasons = passwords.problems(new_password, context_words=(user.email.split("@")[0],))
    if reasons:
        raise WeakPassword(reasons)


def end_sessions(session: Session, *, user_id: int, now: datetime, except_id: int | None = None) -> None:
    query = update(UserSession).where(UserSession.user_id == user_id, UserSession.ended_at.is_(None))
    if except_id is not None:
        query = query.where(UserSession.id != except_id)
    session.execute(query.values(ended_at=now))
