"""On PostgreSQL a paid API request authenticates and locks the account in one statement
(`credentials.authenticate(lock_account=True)`): the lock is really held from that statement
on, and what it read serves the request's next `ledger.lock` in that same transaction only."""

import psycopg
import pytest
from sqlalchemy import select

from portal.accounts.models import Membership
from portal.credentials import service as credentials
from portal.ledger import service as ledger
from portal.ledger import steps
from tests.api.conftest import fund, new_key
from tests.helpers import db_session, make_user

pytestmark = pytest.mark.postgresql


@pytest.fixture
def key(app):
    user = make_user(app, email="dev@example.com")
    with db_session(app) as session:
        account_id = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
    fund(app, account_id, 1000)
    return new_key(app, account_id, user.id)


def _authenticated(session, key, clock):
    """As a request does it (the first use in a minute was noted before, in a unit of its own)."""
    credentials.authenticate(session=session, sid=key.sid, token=key.token, ip="127.0.0.1", now=clock())
    session.commit()
    return credentials.authenticate(session=session, sid=key.sid, token=key.token, ip="127.0.0.1", now=clock(),
                                    lock_account=True)


def _locked_elsewhere(app, account_id) -> bool:
    url = app.extensions["portal.engine"].url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as other:
        try:
            other.execute("SELECT 1 FROM credit_states WHERE account_id = %s FOR UPDATE NOWAIT", [account_id])
        except psycopg.errors.LockNotAvailable:
            return True
    return False


def test_the_authenticating_statement_holds_the_accounts_lock_until_the_transaction_ends(app, key, clock):
    with db_session(app) as session:
        principal = _authenticated(session, key, clock)
        assert principal.account_id == key.account_id and _locked_elsewhere(app, key.account_id)
        session.rollback()
        assert not _locked_elsewhere(app, key.account_id)


def test_what_it_read_serves_the_next_lock_of_that_transaction_only(app, key, clock):
    with db_session(app) as session:
        _authenticated(session, key, clock)
        assert steps._LOCKED_AHEAD in session.info
        state, lots = steps.lock(session, key.account_id)
        assert state.balance == 1_000_000 and len(lots) == 1 and steps._LOCKED_AHEAD not in session.info
        session.commit()
        _authenticated(session, key, clock)
        session.commit()  # the transaction that locked ahead ends unused (a refusal, a rate limit)
        ledger.debit(session=session, account_id=key.account_id, amount=1000, idempotency_key="elsewhere",
                     reason="meanwhile", now=clock())
        with session.begin():
            state, lots = steps.lock(session, key.account_id)  # a new transaction: read afresh
            assert state.balance == 999_000 and lots[0].remaining == 999_000
