"""API test helpers: an account with credit and credentials, and a client that speaks Basic auth."""

import base64
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from portal.accounts.models import Membership
from portal.clock import system_now
from portal.credentials import service as credentials
from portal.ledger import service as ledger
from tests.helpers import db_session, make_user

YEN = 1000


@dataclass
class Key:
    sid: str
    token: str
    account_id: int
    user_id: int

    @property
    def headers(self) -> dict:
        raw = base64.b64encode(f"{self.sid}:{self.token}".encode()).decode()
        return {"Authorization": f"Basic {raw}"}


def new_key(app, account_id, user_id, *, mode="live", scopes=("sms", "voice", "otp", "read"), networks=(),
            monthly_cap=None, name="server") -> Key:
    with app.app_context(), db_session(app) as session:
        credential, token = credentials.create(session=session, account_id=account_id, user_id=user_id, name=name,
                                               mode=mode, scopes=list(scopes), networks=list(networks),
                                               monthly_cap=monthly_cap, now=app.config.get("CLOCK", system_now)())
    return Key(credential.sid, token, account_id, user_id)


def fund(app, account_id, yen, ref="fund"):
    """Credit granted by the operator, and the account marked as having bought before (so it
    is past the trial limits) without a payment to reconcile."""
    from datetime import timedelta

    from portal.ledger.models import CreditState

    now = app.config.get("CLOCK", system_now)()
    with db_session(app) as session:
        ledger.grant(session=session, account_id=account_id, kind="grant", amount=yen * YEN,
                     expires_at=now + timedelta(days=90), source_ref=f"{ref}:{account_id}:{yen}", idempotency_key=ref,
                     reason="test funds", now=now)
        session.get(CreditState, account_id).has_purchased = True
        session.commit()


@pytest.fixture
def customer(app):
    user = make_user(app, email="dev@example.com", phone="+819011112222")
    with db_session(app) as session:
        account_id = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
    return user, account_id


@pytest.fixture
def key(app, customer):
    user, account_id = customer
    fund(app, account_id, 1000)
    return new_key(app, account_id, user.id)


@pytest.fixture
def api(app):
    return app.test_client()
