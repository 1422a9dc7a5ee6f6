"""What operators do from the command line."""

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from portal.accounts import passwords
from portal.accounts.errors import WeakPassword
from portal.accounts.models import Account, Membership, User
from portal.accounts.phone import normalise_phone
from portal.accounts.queries import normalise_email, user_by_email
from portal.accounts.signup import new_user
from portal.ledger import service as ledger


class NoSuchAccount(LookupError):
    pass


class AmbiguousAccount(LookupError):
    pass


def owned_account(session: Session, *, email: str, account_id: int | None) -> int:
    """The one lookup of an account by e-mail, for the operator commands: the account the login
    EMAIL owns (`account_id` when it owns several)."""
    user = user_by_email(session, normalise_email(email))
    if user is None:
        raise NoSuchAccount(f"no login with the address {email}")
    owned = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id, Membership.role == "owner")).all()
    if account_id is not None:
        if account_id not in owned:
            raise NoSuchAccount(f"{email} does not own account {account_id}")
        return account_id
    if len(owned) != 1:
        raise AmbiguousAccount(f"{email} owns {len(owned)} accounts ({', '.join(map(str, owned)) or 'none'}); pass --account")
    return owned[0]


def create_account(
    *, session: Session, email: str, password: str, name: str | None, language: str,
    verified: bool, phone: str | None, trial_amount: int, now: datetime,
) -> User:
    """With both the e-mail and the phone verified, the trial credit comes with it."""
    email = normalise_email(email)
    reasons = passwords.problems(password, context_words=(email.split("@")[0],))
    if reasons:
        raise WeakPassword(reasons)
    if user_by_email(session, email) is not None:
        raise ValueError(f"{email} already has a login")
    name = name or email.split("@")[0]
    account = Account(name=name, kind="individual", language=language, tax_residency="JP", created_at=now)
    user = new_user(email=email, name=name, password_hash=passwords.hash_password(password), language=language, now=now)
    if verified:
        user.email_verified_at = now
    if phone:
        user.phone_e164, user.phone_verified_at = normalise_phone(phone), now
    session.add_all([account, user])
    session.flush()
    session.add(Membership(account_id=account.id, user_id=user.id, role="owner", created_at=now))
    ledger.open_state(session, account_id=account.id, now=now)
    if verified and phone:
        session.flush()
        ledger.grant_trial_in(session, account_id=account.id, phone_e164=user.phone_e164, amount=trial_amount, now=now)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise ValueError("that e-mail address or mobile number is already in use") from None
    return user
