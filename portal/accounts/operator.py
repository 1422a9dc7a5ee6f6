"""What operators do from the command line."""

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from portal import db
from portal.accounts import passwords
from portal.accounts.errors import WeakPassword
from portal.accounts.models import (EMAIL_TAKEN, PHONE_TAKEN, Account, AccountKind, Language, Membership, Role,
                                    TaxResidency, User)
from portal.accounts.phone import normalise_phone
from portal.accounts.queries import InvalidEmail, memberships_of, normalise_email, user_by_email
from portal.accounts.signup import new_user
from portal.ledger import service as ledger


class NoSuchAccount(LookupError):
    pass


class AmbiguousAccount(LookupError):
    pass


@dataclass(frozen=True)
class Member:
    """The login an operator named by its address, and the account meant."""

    user_id: int
    account_id: int
    role: Role


def account_by_email(session: Session, *, email: str, account_id: int | None = None,
                     roles: Collection[Role] = tuple(Role)) -> Member:
    """The one lookup of an account by e-mail, for every operator command: the account where
    the login EMAIL holds one of `roles` (`account_id` picks one when it holds several).
    NoSuchAccount, with the same message whatever is missing (the login, a membership, the
    role, the account asked for); AmbiguousAccount lists the accounts to choose from."""
    with db.read(session):
        found = _memberships(session, email, roles)
    chosen = [member for member in found if account_id is None or member.account_id == account_id]
    if not chosen:
        wanted = "" if set(roles) == set(Role) else " as " + " or ".join(roles)
        raise NoSuchAccount(f"no account found for {email}{wanted}" + (f" with id {account_id}" if account_id else ""))
    if len(chosen) > 1:
        ids = ", ".join(str(member.account_id) for member in chosen)
        raise AmbiguousAccount(f"{email} belongs to several accounts ({ids}): pass --account with one of them")
    return chosen[0]


def _memberships(session: Session, email: str, roles: Collection[Role]) -> list[Member]:
    try:
        user = user_by_email(session, normalise_email(email))
    except InvalidEmail:
        return []
    if user is None:
        return []
    return [Member(user.id, account.id, membership.role)
            for membership, account in memberships_of(session, user_id=user.id) if membership.role in roles]


def create_account(
    *, session: Session, email: str, password: str, name: str | None, language: str,
    verified: bool, phone: str | None, trial_amount: int, now: datetime,
) -> User:
    """With both the e-mail and the phone verified, the trial credit comes with it."""
    email = normalise_email(email)
    reasons = passwords.problems(password, context_words=(email.split("@")[0],))
    if reasons:
        raise WeakPassword(reasons)
    try:
        with db.write(session):
            return _create(session, email=email, password=password, name=name, language=Language(language),
                           verified=verified, phone=phone, trial_amount=trial_amount, now=now)
    except IntegrityError as error:
        if db.violated_constraint(error) not in (EMAIL_TAKEN, PHONE_TAKEN):
            raise
        raise ValueError("that e-mail address or mobile number is already in use") from None


def _create(session: Session, *, email: str, password: str, name: str | None, language: Language, verified: bool,
            phone: str | None, trial_amount: int, now: datetime) -> User:
    if user_by_email(session, email) is not None:
        raise ValueError(f"{email} already has a login")
    name = name or email.split("@")[0]
    account = Account(name=name, kind=AccountKind.INDIVIDUAL, language=language, tax_residency=TaxResidency.JP,
                      created_at=now)
    user = new_user(email=email, name=name, password_hash=passwords.hash_password(password), language=language, now=now)
    if verified:
        user.email_verified_at = now
    if phone:
        user.phone_e164, user.phone_verified_at = normalise_phone(phone), now
    session.add_all([account, user])
    session.flush()
    session.add(Membership(account_id=account.id, user_id=user.id, role=Role.OWNER, created_at=now))
    ledger.open_state(session, account_id=account.id, now=now)
    if verified and phone:
        session.flush()
        ledger.grant_trial_in(session, account_id=account.id, phone_e164=user.phone_e164, amount=trial_amount, now=now)
    return user
