"""Sign-up: an attempt that waits for its own e-mail link, then the account and its owner.

Nothing but the attempt is written until the mailbox answers: the link mailed for an attempt
creates the login with the password chosen in that attempt, and only an address's newest
attempt can be completed. Opening the link is not enough: the attempt completes only for the
browser that made it or for someone who types its password. A mail scanner following the link
of a sign-up made with someone else's address completes nothing, and a mailbox owner holding
such a link cannot create a login whose password she does not know. Whoever reads the mail
therefore ends up with a password she chose herself.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from portal import db, mail
from portal.accounts import mail_quota, passwords, throttle, tokens
from portal.accounts.errors import TokenInvalid, WeakPassword, WrongPassword
from portal.accounts.models import (
    EMAIL_TAKEN,
    Account,
    AccountKind,
    Invitation,
    Language,
    LinkPurpose,
    MailPurpose,
    Membership,
    OneTimeToken,
    PhoneChallenge,
    Role,
    SignUpAttempt,
    TaxResidency,
    User,
    UserSession,
)
from portal.accounts.queries import InvalidEmail, live_link, normalise_email, user_by_email
from portal.ledger import service as ledger
from portal.ledger.models import BalanceThreshold, CreditState

log = logging.getLogger("portal.auth")

VERIFY_EMAIL_TTL = timedelta(hours=24)


class DeferredMail(StrEnum):
    """Mails the worker composes as it delivers them (portal.accounts.mails.compose)."""

    SIGNUP = "signup"
    RESET_PASSWORD = "reset_password"


class LinkState(StrEnum):
    READY = "ready"
    USED = "used"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"  # the address signed up again since: only the newest link works
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SignUpRequest:
    email: str
    password: str
    name: str
    account_name: str
    account_kind: AccountKind
    language: Language
    tax_residency: TaxResidency


@dataclass(frozen=True)
class MailContent:
    """What the worker renders: a template under templates/mail/, its language and context."""

    template: str
    language: str
    context: dict


@dataclass(frozen=True)
class Verified:
    user: User
    attempt_id: int | None


@dataclass(frozen=True)
class VerificationLink:
    """What a /verify-email/ link is, read without using it: a sign-up attempt (attempt_id) or
    a link mailed to an existing login whose address was never proved (user_id)."""

    state: LinkState
    attempt_id: int | None = None
    user_id: int | None = None


def sign_up(*, session: Session, request: SignUpRequest, now: datetime) -> int:
    """Record the attempt and queue its mail; returns the attempt's id.

    The request does the same work whether or not the address has a login (one argon2 hash,
    one attempt, one quota count, one outbox row); the worker picks the mail when it renders
    it: the link, or a notice that the address already has a login. The answer and its cost
    never tell whether an address is registered. A new attempt supersedes every earlier one
    of the address, even when the hourly mail quota leaves it without a mail."""
    email = normalise_email(request.email)
    reasons = passwords.problems(request.password, context_words=(email.split("@")[0],))
    if reasons:
        raise WeakPassword(reasons)
    password_hash = passwords.hash_password(request.password)  # before the unit of work: no lock held while hashing
    token, token_hash = tokens.new_token()
    attempt = SignUpAttempt(
        email=email,
        password_hash=password_hash,
        name=request.name.strip(),
        account_name=request.account_name.strip() or request.name.strip(),
        account_kind=request.account_kind,
        language=request.language,
        tax_residency=request.tax_residency,
        token_hash=token_hash,
        created_at=now,
        expires_at=now + VERIFY_EMAIL_TTL,
    )
    with db.write(session):
        session.add(attempt)
        if mail_quota.allow_mail(session, email=email, purpose=MailPurpose.SIGNUP, now=now):
            mail.defer(session, to=email, compose=DeferredMail.SIGNUP, now=now, token=token)
        session.flush()
        attempt_id = attempt.id
    log.info("sign-up attempt attempt_id=%s", attempt_id)
    return attempt_id


def resend_sign_up(*, session: Session, email: str, now: datetime) -> None:
    """Mail the link of the address's pending sign-up again, valid for another day. The link
    is replaced: the one mailed before stops working, as every link of ours does when a newer
    one is issued (one live link per sign-up). The request does the same work whether or not
    the address has a pending sign-up or a login (one quota count, one update of 0 or 1 rows,
    one outbox row); the worker mails nothing for a token that matches no attempt, and the
    caller answers the same either way."""
    try:
        email = normalise_email(email)
    except InvalidEmail:
        return
    token, token_hash = tokens.new_token()
    with db.write(session):
        if not mail_quota.allow_mail(session, email=email, purpose=MailPurpose.SIGNUP, now=now):
            return
        newest = select(func.max(SignUpAttempt.id)).where(SignUpAttempt.email == email).scalar_subquery()
        session.execute(
            update(SignUpAttempt)
            .where(SignUpAttempt.id == newest, SignUpAttempt.used_at.is_(None), SignUpAttempt.expires_at > now)
            .values(token_hash=token_hash, expires_at=now + VERIFY_EMAIL_TTL)
        )
        mail.defer(session, to=email, compose=DeferredMail.SIGNUP, now=now, token=token)
    log.info("sign-up link resend requested email_hash=%s", mail_quota.address_hash(email)[:12])


def signup_mail(session: Session, *, email: str, token: str) -> MailContent | None:
    """The worker's choice for an attempt's mail (in its unit of work): nothing once a newer
    attempt exists."""
    attempt = session.scalars(select(SignUpAttempt).where(SignUpAttempt.token_hash == tokens.hash_token(token))).first()
    if attempt is None or not _is_newest(session, attempt):
        return None
    user = user_by_email(session, email)
    if user is not None and user.email_verified_at is not None:
        return MailContent("already_registered", user.language, {"user": {"name": user.name}})
    return MailContent("verify_email", attempt.language, {"user": {"name": attempt.name}, "token": token})


def attempt_for(session: Session, *, token: str) -> SignUpAttempt | None:
    return session.scalars(select(SignUpAttempt).where(SignUpAttempt.token_hash == tokens.hash_token(token))).first()


def verification_link(*, session: Session, token: str, now: datetime) -> VerificationLink:
    """Reads a link and changes nothing: a GET of it (a mail scanner, a link preview) never
    creates, proves or uses up anything."""
    with db.read(session):
        attempt = attempt_for(session, token=token)
        if attempt is not None:
            return VerificationLink(_attempt_state(session, attempt, now), attempt_id=attempt.id)
        record = live_link(session, token=token, purpose=LinkPurpose.VERIFY_EMAIL, now=now)
        user = session.get(User, record.user_id) if record is not None else None
        if user is None or user.disabled_at is not None or has_pending_attempt(session, email=user.email, now=now):
            return VerificationLink(LinkState.UNKNOWN)
        return VerificationLink(LinkState.READY, user_id=user.id)


def complete_sign_up(
    *, session: Session, token: str, now: datetime, browser_attempt_id: int | None = None, password: str | None = None
) -> Verified:
    """The link of an address's newest attempt: creates the account and its owner with the
    password of that attempt, the address proved. Completes only for the browser that made the
    attempt (`browser_attempt_id`, kept in its signed session) or with the attempt's password,
    checked against the address's failure throttle (WrongPassword, LoginThrottled,
    LoginLocked). A login whose address was never proved gives way to it; an address that has a
    proved login keeps it. The password check commits units of its own (the failure count
    outlives a refusal), so it runs between a read unit and the write unit, which reads the
    attempt again under the write lock."""
    with db.read(session):
        attempt = _ready_attempt(session, token=token, now=now)
    if attempt.id != browser_attempt_id:
        email, stored_hash = attempt.email, attempt.password_hash
        if password is None or not throttle.checked_password(
            session, email=email, stored_hash=stored_hash, password=password, now=now
        ):
            log.info("sign-up link refused a wrong password attempt_id=%s", attempt.id)
            raise WrongPassword()
    try:
        with db.write(session):
            user = _complete(session, token=token, now=now)
    except IntegrityError as error:
        if db.violated_constraint(error) != EMAIL_TAKEN:
            raise
        raise TokenInvalid() from None  # the address got a login at this very moment
    log.info("email verified user_id=%s (sign-up completed)", user.id)
    return Verified(user=user, attempt_id=attempt.id)


def _complete(session: Session, *, token: str, now: datetime) -> User:
    attempt = _ready_attempt(session, token=token, now=now)
    claimed = session.execute(
        update(SignUpAttempt).where(SignUpAttempt.id == attempt.id, SignUpAttempt.used_at.is_(None)).values(used_at=now)
    )
    if claimed.rowcount != 1:
        raise TokenInvalid()
    existing = user_by_email(session, attempt.email)
    if existing is not None and existing.email_verified_at is not None:
        raise TokenInvalid()
    if existing is not None and not _delete_login(session, user_id=existing.id):
        raise TokenInvalid()
    return _create_owner(session, attempt=attempt, now=now)


def _ready_attempt(session: Session, *, token: str, now: datetime) -> SignUpAttempt:
    attempt = attempt_for(session, token=token)
    if attempt is None or _attempt_state(session, attempt, now) != LinkState.READY:
        raise TokenInvalid()
    return attempt


def _attempt_state(session: Session, attempt: SignUpAttempt, now: datetime) -> LinkState:
    if attempt.used_at is not None:
        return LinkState.USED
    if not _is_newest(session, attempt):
        return LinkState.SUPERSEDED
    if attempt.expires_at <= now:
        return LinkState.EXPIRED
    return LinkState.READY


def has_pending_attempt(session: Session, *, email: str, now: datetime) -> bool:
    query = select(SignUpAttempt.id).where(
        SignUpAttempt.email == email, SignUpAttempt.used_at.is_(None), SignUpAttempt.expires_at > now
    )
    return session.scalars(query.limit(1)).first() is not None


def _is_newest(session: Session, attempt: SignUpAttempt) -> bool:
    newest = session.scalar(select(func.max(SignUpAttempt.id)).where(SignUpAttempt.email == attempt.email))
    return newest == attempt.id


def _create_owner(session: Session, *, attempt: SignUpAttempt, now: datetime) -> User:
    account = Account(
        name=attempt.account_name,
        kind=attempt.account_kind,
        language=attempt.language,
        tax_residency=attempt.tax_residency,
        created_at=now,
    )
    user = new_user(
        email=attempt.email, name=attempt.name, password_hash=attempt.password_hash, language=attempt.language, now=now
    )
    user.email_verified_at = now
    session.add_all([account, user])
    session.flush()
    session.add(Membership(account_id=account.id, user_id=user.id, role=Role.OWNER, created_at=now))
    ledger.open_state(session, account_id=account.id, now=now)
    return user


def new_user(*, email: str, name: str, password_hash: str, language: str, now: datetime) -> User:
    return User(
        email=email,
        name=name.strip(),
        password_hash=password_hash,
        language=language,
        created_at=now,
        password_changed_at=now,
    )


def queue_verification_mail(session: Session, *, user: User, now: datetime) -> None:
    """A link for a login that exists but whose address was never proved (made by an operator
    without --verified): earlier links of the login stop working."""
    session.execute(
        update(OneTimeToken)
        .where(OneTimeToken.user_id == user.id, OneTimeToken.purpose == LinkPurpose.VERIFY_EMAIL,
               OneTimeToken.used_at.is_(None))
        .values(used_at=now)
    )
    token, token_hash = tokens.new_token()
    session.add(
        OneTimeToken(
            purpose=LinkPurpose.VERIFY_EMAIL,
            user_id=user.id,
            token_hash=token_hash,
            created_at=now,
            expires_at=now + VERIFY_EMAIL_TTL,
        )
    )
    mail.queue(session, to=user.email, template="verify_email", language=user.language, now=now, user=user, token=token)


def purge_stale(*, session: Session, now: datetime) -> int:
    """Forget sign-up attempts whose link has expired and logins whose address was not proved
    within a link's lifetime, with the accounts only they belong to. Returns the logins removed.
    One unit of work; each login is removed under a savepoint, so one that other rows still
    refer to (a foreign key refuses) is kept and the others go."""
    removed = 0
    with db.write(session):
        session.execute(delete(SignUpAttempt).where(SignUpAttempt.expires_at <= now))
        mail_quota.purge(session, now=now)
        stale = session.scalars(
            select(User.id).where(User.email_verified_at.is_(None), User.created_at <= now - VERIFY_EMAIL_TTL)
        ).all()
        for user_id in stale:
            try:
                with session.begin_nested():
                    removed += _delete_login(session, user_id=user_id)
            except IntegrityError:
                log.warning("unverified login user_id=%s kept: other rows refer to it", user_id)
    if removed:
        log.info("purged %s unverified logins", removed)
    return removed


def _delete_login(session: Session, *, user_id: int) -> bool:
    """Delete a login and the accounts it alone belongs to; False (nothing done) when one of
    its accounts has other members."""
    account_ids = session.scalars(select(Membership.account_id).where(Membership.user_id == user_id)).all()
    shared = session.scalar(
        select(func.count()).select_from(Membership).where(
            Membership.account_id.in_(account_ids), Membership.user_id != user_id
        )
    )
    if shared:
        return False
    for statement in (
        delete(UserSession).where(or_(UserSession.user_id == user_id, UserSession.account_id.in_(account_ids))),
        delete(OneTimeToken).where(OneTimeToken.user_id == user_id),
        delete(PhoneChallenge).where(PhoneChallenge.user_id == user_id),
        delete(Invitation).where(or_(Invitation.invited_by_user_id == user_id, Invitation.account_id.in_(account_ids))),
        delete(Membership).where(Membership.user_id == user_id),
        delete(BalanceThreshold).where(BalanceThreshold.account_id.in_(account_ids)),  # every account opens with one
        delete(CreditState).where(CreditState.account_id.in_(account_ids)),
        delete(User).where(User.id == user_id),
        delete(Account).where(Account.id.in_(account_ids)),
    ):
        session.execute(statement)
    log.info("unverified login removed user_id=%s", user_id)
    return True
