import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select
from sqlmodel import Session

from portal.accounts import team
from portal.accounts.errors import LastOwner
from portal.accounts.models import Membership
from tests.helpers import make_user


def test_two_owners_demoting_each_other_at_once_leave_one_owner(app, session, clock):
    first, second = make_user(app, "first@example.com"), make_user(app, "second@example.com")
    mine = session.scalars(select(Membership).where(Membership.user_id == first.id)).one()
    theirs = Membership(account_id=mine.account_id, user_id=second.id, role="owner", created_at=clock())
    session.add(theirs)
    session.commit()
    engine, start = app.extensions["portal.engine"], threading.Barrier(2)

    def demote(membership_id):
        with Session(engine, expire_on_commit=False) as db:
            start.wait()
            try:
                team.change_role(session=db, account_id=mine.account_id, membership_id=membership_id, role="developer")
                return "demoted"
            except LastOwner:
                return "refused"

    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(pool.map(demote, [mine.id, theirs.id]))
    assert outcomes == ["demoted", "refused"]
    roles = session.scalars(select(Membership.role).where(Membership.account_id == mine.account_id)).all()
    assert sorted(roles) == ["developer", "owner"]
