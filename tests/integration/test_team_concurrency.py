import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select
from sqlmodel import Session

from portal.accounts import team
from portal.accounts.errors import LastOwner
from portal.accounts.models import Membership
from portal.credentials import service as credentials
from portal.credentials.models import Credential
from tests.helpers import make_user


def test_two_owners_demoting_each_other_at_once_leave_one_owner(app, session, clock):
    first, second = make_user(app, "first@example.com"), make_user(app, "second@example.com")
    mine = session.scalars(select(Membership).where(Membership.user_id == first.id)).one()
    theirs = Membership(account_id=mine.account_id, user_id=second.id, role="owner", created_at=clock())
    session.add(theirs)
    session.commit()
    engine, start = app.extensions["portal.engine"], threading.Barrier(2)

    def demote(membership_id):
        with app.app_context(), Session(engine, expire_on_commit=False) as db:  # the mail to owners is rendered
            start.wait()
            try:
                team.change_role(session=db, account_id=mine.account_id, membership_id=membership_id, role="developer",
                                 actor_id=first.id, now=clock())
                return "demoted"
            except LastOwner:
                return "refused"

    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(pool.map(demote, [mine.id, theirs.id]))
    assert outcomes == ["demoted", "refused"]
    roles = session.scalars(select(Membership.role).where(Membership.account_id == mine.account_id)).all()
    assert sorted(roles) == ["developer", "owner"]


def test_two_owners_removing_each_other_at_once_leave_one_owner_and_only_the_removed_ones_keys_revoked(app, session, clock):
    first, second = make_user(app, "first@example.com"), make_user(app, "second@example.com")
    mine = session.scalars(select(Membership).where(Membership.user_id == first.id)).one()
    theirs = Membership(account_id=mine.account_id, user_id=second.id, role="owner", created_at=clock())
    session.add(theirs)
    session.commit()
    for user in (first, second):
        credentials.create(session=session, account_id=mine.account_id, user_id=user.id, name=f"key of {user.email}",
                           mode="live", scopes=["read"], networks=[], monthly_cap=None, now=clock())
    engine, start = app.extensions["portal.engine"], threading.Barrier(2)

    def remove(actor_id, membership_id):
        with app.app_context(), Session(engine, expire_on_commit=False) as db:
            start.wait()
            try:
                team.remove_member(session=db, account_id=mine.account_id, membership_id=membership_id,
                                   actor_id=actor_id, keep=(), now=clock())
                return "removed"
            except LastOwner:
                return "refused"

    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(pool.map(remove, [first.id, second.id], [theirs.id, mine.id]))
    assert outcomes == ["refused", "removed"]
    account_id = mine.account_id
    session.expire_all()
    remaining = session.scalars(select(Membership.user_id).where(Membership.account_id == account_id)).all()
    roles = session.scalars(select(Membership.role).where(Membership.account_id == account_id)).all()
    assert len(remaining) == 1 and roles == ["owner"]
    revoked = session.scalars(select(Credential.created_by).where(Credential.revoked_at.is_not(None))).all()
    assert revoked and remaining[0] not in revoked
