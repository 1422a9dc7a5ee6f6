"""A company account with a credit line, for the postpay tests."""

from sqlalchemy import select

from portal.accounts.models import Account, AccountKind, Membership
from tests.api.conftest import fund, new_key
from tests.helpers import db_session, make_user

YEN = 1000


def cli(app, *args):
    return app.test_cli_runner().invoke(args=[str(arg) for arg in args])


def company(app, email="owner@kaisha.example", *, phone=None, language="en"):
    """A verified owner of a company account (without a phone number: no trial credit)."""
    user = make_user(app, email=email, phone=phone, language=language)
    with db_session(app) as session:
        account_id = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
        session.get(Account, account_id).kind = AccountKind.COMPANY
        session.commit()
    return user, account_id


def approved(app, *, limit=100, prepaid=0, email="owner@kaisha.example", due_days=None):
    """A company with `prepaid` yen of prepaid credit and a credit line of `limit` yen; returns
    (user, account_id, a live API key)."""
    user, account_id = company(app, email=email)
    if prepaid:
        fund(app, account_id, prepaid, ref=f"fund-{account_id}")
    args = ["postpay", "approve", email, "--limit", limit] + (["--due-days", due_days] if due_days else [])
    result = cli(app, *args)
    assert result.exit_code == 0, result.output
    return user, account_id, new_key(app, account_id, user.id)
