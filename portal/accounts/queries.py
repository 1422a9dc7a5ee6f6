"""Small shared reads and locks used by the accounts services (they never commit)."""

from datetime import datetime

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlmodel import Session

from portal.accounts import tokens
from portal.accounts.models import Account, Membership, OneTimeToken, User


class InvalidEmail(ValueError):
    pass


def normalise_email(raw: str) -> str:
    try:
        checked = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from None
    return checked.normalized.lower()


def user_by_email(session: Session, email: str) -> User | None:
    return session.scalars(select(User).where(User.email == email)).first()


def membership(session: Session, *, account_id: int, user_id: int) -> Membership | None:
    query = select(Membership).where(Membership.account_id == account_id, Membership.user_id == user_id)
    return session.scalars(query).first()


def memberships_of(session: Session, *, user_id: int) -> list[tuple[Membership, Account]]:
    query = (
        select(Membership, Account)
        .join(Account, Account.id == Membership.account_id)
        .where(Membership.user_id == user_id)
        .order_by(Account.name, Account.id)
    )
    return [tuple(row) for row in session.execute(query)]


def lock_account(session: Session, account_id: int) -> Account:
    """Serialise writers of one account: FOR UPDATE on PostgreSQL; SQLite already runs
    every transaction as BEGIN IMMEDIATE."""
    query = select(Account).where(Account.id == account_id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return session.scalars(query).one()


def live_link(session: Session, *, token: str, purpose: str, now: datetime) -> OneTimeToken | None:
    """The unused, unexpired link record of `purpose` that `token` opens, if any."""
    return session.scalars(
        select(OneTimeToken).where(
            OneTimeToken.token_hash == tokens.hash_token(token),
            OneTimeToken.purpose == purpose,
            OneTimeToken.used_at.is_(None),
            OneTimeToken.expires_at > now,
        )
    ).first()
