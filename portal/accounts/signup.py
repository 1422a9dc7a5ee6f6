"""Sign-up: the account, its owner, and the e-mail that proves the address."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from portal import mail
from portal.accounts import passwords, tokens
from portal.accounts.errors import WeakPassword
from portal.accounts.models import Account, Membership, OneTimeToken, User
from portal.accounts.queries import normalise_email, user_by_email
from portal.ledger import service as ledger

VERIFY_EMAIL_TTL = timedelta(hours=24)


@dataclass(frozen=True)
class SignUpRequest:
    email: str
    password: str
    name: str
    account_name: str
    account_kind: str
    language: str
    tax_residency: str


def sign_up(*, session: Session, request: SignUpRequest, now: datetime) -> User | None:
    """Create the account and its owner and mail a verification link.

    An address that already has a login gets a mail saying so instead, and the caller shows
    the same page either way: the answer never tells whether an address is registered.
    Returns the new user, or None when the address was already known.
    """
    email = normalise_email(request.email)
    reasons = passwords.problems(request.password, context_words=(email.split("@")[0],))
    if reasons:
        raise WeakPassword(reasons)
    password_hash = passwords.hash_password(request.password)  # before any query: no lock held while hashing
    existing = user_by_email(session, email)
    if existing is not None:
        _mail_existing(session, user=existing, now=now)
        session.commit()
        return None
    user = _create_owner(session, request=request, email=email, password_hash=password_hash, now=now)
    try:
        session.commit()
    except IntegrityError:  # the same address signed up twice at the same moment
        session.rollback()
        return None
    return user


def _create_owner(session: Session, *, request: SignUpRequest, email: str, password_hash: str, now: datetime) -> User:
    account = Account(
        name=request.account_name.strip() or request.name.strip(),
        kind=request.account_kind,
        language=request.language,
        tax_residency=request.tax_residency,
        created_at=now,
    )
    user = new_user(email=email, name=request.name, password_hash=password_hash, language=request.language, now=now)
    session.add_all([account, user])
    session.flush()
    session.add(Membership(account_id=account.id, user_id=user.id, role="owner", created_at=now))
    ledger.open_state(session, account_id=account.id, now=now)
    queue_verification_mail(session, user=user, now=now)
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
    token, token_hash = tokens.new_token()
    session.add(
        OneTimeToken(
            purpose="verify_email",
            user_id=user.id,
            token_hash=token_hash,
            created_at=now,
            expires_at=now + VERIFY_EMAIL_TTL,
        )
    )
    mail.queue(session, to=user.email, template="verify_email", language=user.language, now=now, user=user, token=token)


def _mail_existing(session: Session, *, user: User, now: datetime) -> None:
    if user.email_verified_at is None:
        queue_verification_mail(session, user=user, now=now)
    else:
        mail.queue(session, to=user.email, template="already_registered", language=user.language, now=now, user=user)
