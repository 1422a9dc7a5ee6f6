"""The operator commands find an account by e-mail through one function
(portal.accounts.operator.account_by_email), with one message when none matches."""

import pytest
from sqlalchemy import select

from portal.accounts.models import Membership, Role
from portal.accounts.operator import AmbiguousAccount, NoSuchAccount, account_by_email
from portal.credentials.models import Credential
from tests.helpers import db_session, make_user


def run(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def member_of_another_account(app, email: str, role: Role) -> tuple[int, int]:
    """`email`'s owned account and a second account, run by someone else, where `email` has `role`."""
    user = make_user(app, email)
    other = make_user(app, "boss@example.com")
    with db_session(app) as session:
        own = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
        second = session.scalars(select(Membership.account_id).where(Membership.user_id == other.id)).one()
        session.add(Membership(account_id=second, user_id=user.id, role=role, created_at=app.config["CLOCK"]()))
        session.commit()
    return own, second


def test_an_address_without_a_login_or_an_account_gets_one_message(app):
    make_user(app, "owner@example.com")
    with db_session(app) as session:
        for email in ("nobody@example.com", "not an address"):
            with pytest.raises(NoSuchAccount, match=f"no account found for {email}$"):
                account_by_email(session, email=email)
        with pytest.raises(NoSuchAccount, match="no account found for owner@example.com with id 999$"):
            account_by_email(session, email="owner@example.com", account_id=999)


def test_the_roles_asked_for_narrow_the_choice_and_several_accounts_ask_for_one(app):
    own, second = member_of_another_account(app, "ops@example.com", Role.BILLING)
    with db_session(app) as session:
        assert account_by_email(session, email=" OPS@example.com ", roles=(Role.OWNER,)).account_id == own
        with pytest.raises(AmbiguousAccount, match="belongs to several accounts .*: pass --account") as ambiguous:
            account_by_email(session, email="ops@example.com")
        assert f"{own}, {second}" in str(ambiguous.value) or f"{second}, {own}" in str(ambiguous.value)
        found = account_by_email(session, email="ops@example.com", account_id=second)
        assert (found.account_id, found.role) == (second, Role.BILLING)
        with pytest.raises(NoSuchAccount, match="no account found for ops@example.com as owner or developer with id"):
            account_by_email(session, email="ops@example.com", account_id=second, roles=(Role.OWNER, Role.DEVELOPER))


def test_keys_create_and_credits_grant_look_accounts_up_the_same_way(app):
    own, second = member_of_another_account(app, "ops@example.com", Role.BILLING)
    refused = run(app, "keys", "create", "ops@example.com", "--name", "deploy", "--account", str(second))
    assert refused.exit_code == 1
    assert f"no account found for ops@example.com as owner or developer with id {second}" in refused.output
    created = run(app, "keys", "create", "ops@example.com", "--name", "deploy")  # the one account it may manage
    assert created.exit_code == 0, created.output
    with db_session(app) as session:
        assert session.scalars(select(Credential.account_id)).all() == [own]
    unknown = run(app, "credits", "grant", "nobody@example.com", "5", "--reason", "x")
    assert unknown.exit_code == 1 and "no account found for nobody@example.com as owner" in unknown.output
