"""Log-in with throttling, e-mail verification, password reset and password change."""

import logging
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlmodel import Session

from portal import db, mail
from portal.accounts import mail_quota, passwords, signup, throttle, tokens
from portal.accounts.errors import InvalidCredentials, TokenInvalid, WeakPassword, WrongPassword
from portal.accounts.models import LinkPurpose, MailPurpose, OneTimeToken, User, UserSession
from portal.accounts.queries import InvalidEmail, live_link, normalise_email, user_by_email
from portal.accounts.signup import DeferredMail, MailContent, Verified

log = logging.getLogger("portal.auth")

RESET_TTL = timedelta(minutes=60)


def authenticate(*, session: Session, email: str, password: str, now: datetime) -> User:
    """The user whose password this is, or InvalidCredentials; throttled per address
    (LoginThrottled, LoginLocked). An unknown address costs the same queries and the same
    argon2 check as a known one. The password check commits units of its own (the failure
    count outlives a refusal), so this service's reads and writes are units around it."""
    try:
        email = normalise_email(email)
    except InvalidEmail:
        passwords.verify_password(passwords.DUMMY_HASH, password)
        raise InvalidCredentials() from None
    with db.read(session):
        user = user_by_email(session, email)
    stored = user.password_hash if user is not None and user.disabled_at is None else None
    if not throttle.checked_password(session, email=email, stored_hash=stored, password=password, now=now):
        log.info("login failed email_hash=%s", throttle.email_key(email)[:12])
        raise InvalidCredentials()
    if passwords.needs_rehash(stored):
        rehashed = passwords.hash_password(password)  # outside any transaction, as every argon2 run
        with db.write(session):
            session.execute(update(User).where(User.id == user.id).values(password_hash=rehashed))
    log.info("login succeeded user_id=%s", user.id)
    return user


def verify_email(*, session: Session, token: str, now: datetime) -> Verified:
    """A link mailed to an existing login whose address was never proved proves it (and signs
    nobody in), unless someone has since signed up with the address: then only that sign-up's
    link settles who gets it. Sign-up links complete through signup.complete_sign_up, which
    needs the attempt's browser or password."""
    with db.write(session):
        record = _use_token(session, token=token, purpose=LinkPurpose.VERIFY_EMAIL, now=now)
        user = session.get(User, record.user_id)
        if user.disabled_at is not None or signup.has_pending_attempt(session, email=user.email, now=now):
            raise TokenInvalid()
        if user.email_verified_at is None:
            user.email_verified_at = now
    log.info("email verified user_id=%s", user.id)
    return Verified(user=user, attempt_id=None)


def resend_verification(*, session: Session, user_id: int, now: datetime) -> None:
    with db.write(session):
        user = session.get(User, user_id)
        if user.email_verified_at is None and mail_quota.allow_mail(session, email=user.email,
                                                                    purpose=MailPurpose.SIGNUP, now=now):
            signup.queue_verification_mail(session, user=user, now=now)


def request_password_reset(*, session: Session, email: str, now: datetime) -> None:
    """Queue a reset mail for the address; the worker issues the link if it has a login.

    Known and unknown addresses cost exactly the same here (one quota count, one outbox row),
    and the caller answers the same either way."""
    try:
        email = normalise_email(email)
    except InvalidEmail:
        return
    with db.write(session):
        if mail_quota.allow_mail(session, email=email, purpose=MailPurpose.RESET_PASSWORD, now=now):
            mail.defer(session, to=email, compose=DeferredMail.RESET_PASSWORD, now=now)
    log.info("password reset requested email_hash=%s", throttle.email_key(email)[:12])


def reset_mail(session: Session, *, email: str, now: datetime) -> MailContent | None:
    """Issue a reset link for the address's login (in the worker's unit of work); every
    earlier one dies. Nothing is sent to an address without a login."""
    user = user_by_email(session, email)
    if user is None or user.disabled_at is not None:
        return None
    _end_links(session, user_id=user.id, now=now)
    token, token_hash = tokens.new_token()
    session.add(
        OneTimeToken(
            purpose=LinkPurpose.RESET_PASSWORD, user_id=user.id, token_hash=token_hash, created_at=now,
            expires_at=now + RESET_TTL,
        )
    )
    log.info("reset link issued user_id=%s", user.id)
    return MailContent("reset_password", user.language, {"user": {"name": user.name}, "token": token})


def check_reset_token(*, session: Session, token: str, now: datetime) -> User:
    """The user a reset link belongs to, without using it up (to show the form)."""
    with db.read(session):
        record = live_link(session, token=token, purpose=LinkPurpose.RESET_PASSWORD, now=now)
        if record is None:
            raise TokenInvalid()
        return session.get(User, record.user_id)


def reset_password(*, session: Session, token: str, new_password: str, now: datetime) -> User:
    """Set a new password from a reset link: ends every session and every other link, clears
    the log-in throttle, and tells the owner by mail. It does not sign anyone in. Argon2 runs
    between the read and the write unit, outside any transaction; the write unit uses the link
    up, so a link used meanwhile refuses."""
    user = check_reset_token(session=session, token=token, now=now)
    _check_new_password(user, new_password)  # before anything is written: a refusal uses up nothing
    password_hash = passwords.hash_password(new_password)
    with db.write(session):
        _use_token(session, token=token, purpose=LinkPurpose.RESET_PASSWORD, now=now)
        user = session.get(User, user.id)
        user.password_hash, user.password_changed_at = password_hash, now
        end_sessions(session, user_id=user.id, now=now)
        _end_links(session, user_id=user.id, now=now)
        throttle.clear(session, email=user.email)
        if user.email_verified_at is None:
            user.email_verified_at = now  # the link reached the mailbox
        mail.queue(session, to=user.email, template="password_changed", language=user.language, now=now, user=user)
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
    """Needs the current password, checked against the same failure count as log-in (units of
    its own: the count outlives a refusal); ends every reset link and mails a notice."""
    with db.read(session):
        user = session.get(User, user_id)
    if not throttle.checked_password(session, email=user.email, stored_hash=user.password_hash,
                                     password=current_password, now=now):
        log.info("password change refused (wrong current password) user_id=%s", user_id)
        raise WrongPassword()
    _check_new_password(user, new_password)
    password_hash = passwords.hash_password(new_password)
    with db.write(session):
        user = session.get(User, user_id)
        user.password_hash, user.password_changed_at = password_hash, now
        if end_other_sessions:
            end_sessions(session, user_id=user.id, now=now, except_id=keep_session_id)
        _end_links(session, user_id=user.id, now=now)
        mail.queue(session, to=user.email, template="password_changed", language=user.language, now=now, user=user)
    log.info("password changed user_id=%s", user.id)


def _use_token(session: Session, *, token: str, purpose: LinkPurpose, now: datetime) -> OneTimeToken:
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


def _end_links(session: Session, *, user_id: int, now: datetime) -> None:
    """Every reset link still open for the login, and any link that would prove its address
    for a password that is no longer the one set: none of them works afterwards."""
    session.execute(
        update(OneTimeToken)
        .where(OneTimeToken.user_id == user_id, OneTimeToken.used_at.is_(None))
        .values(used_at=now)
    )


def _check_new_password(user: User, new_password: str) -> None:
    reasons = passwords.problems(new_password, context_words=(user.email.split("@")[0],))
    if reasons:
        raise WeakPassword(reasons)


def end_sessions(session: Session, *, user_id: int, now: datetime, except_id: int | None = None) -> None:
    query = update(UserSession).where(UserSession.user_id == user_id, UserSession.ended_at.is_(None))
    if except_id is not None:
        query = query.where(UserSession.id != except_id)
    session.execute(query.values(ended_at=now))
