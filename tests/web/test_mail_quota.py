"""Issue 9 item 8: at most three mails of one purpose per address per hour, whatever the
client's IP; beyond that the answer is the same as ever and nothing is queued."""

import re

from sqlalchemy import select

from portal.accounts import team
from portal.accounts.mail_quota import MAILS_PER_ADDRESS_PER_HOUR
from portal.accounts.models import Invitation, MailQuota, Membership
from portal.outbox import OutboxMessage
from tests.helpers import PASSWORD, PageClient, db_session, deliver_outbox, make_user, mails_to

SIGNUP = {"name": "Hana Sato", "email": "hana@example.com", "password": PASSWORD, "account_kind": "individual",
          "account_name": "", "tax_residency": "JP", "language": "en"}


def outbox_rows(app) -> int:
    with db_session(app) as session:
        return len(session.scalars(select(OutboxMessage.id)).all())


def without_tokens(response) -> str:
    """The page minus its CSRF tokens (they carry a timestamp)."""
    body = re.sub(r'"X-CSRFToken": "[^"]+"', "", response.get_data(as_text=True))
    return re.sub(r'name="csrf_token" value="[^"]+"', "", body)


def from_many_addresses(app, count):
    """A new browser, and a new client IP, for each request."""
    clients = []
    for i in range(count):
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = f"198.51.100.{i}"
        clients.append(PageClient(client, app))
    return clients


def test_the_quota_is_three_mails_per_address_per_hour():
    assert MAILS_PER_ADDRESS_PER_HOUR == 3


def test_sign_up_mails_an_address_three_times_an_hour_whatever_the_ip(app, clock):
    answers = []
    for client in from_many_addresses(app, 4):
        answers.append(client.post("/signup", SIGNUP, status=302).headers["Location"])
        deliver_outbox(app)
    assert len(set(answers)) == 1
    assert len(mails_to(app, "hana@example.com")) == 3
    queued = outbox_rows(app)
    clock.advance(hours=1)
    PageClient(app.test_client(), app).post("/signup", SIGNUP, status=302)
    assert outbox_rows(app) == queued + 1 and len(mails_to(app, "hana@example.com")) == 4


def test_forgot_password_mails_an_address_three_times_an_hour_with_the_same_answer(app, clock):
    make_user(app, "hana@example.com")
    bodies = set()
    for client in from_many_addresses(app, 4):
        bodies.add(without_tokens(client.post("/password/forgot", {"email": "hana@example.com"}, status=200)))
    assert len(bodies) == 1
    assert outbox_rows(app) == 3
    assert len(mails_to(app, "hana@example.com")) == 3


def test_invitations_mail_an_address_three_times_an_hour_and_the_fourth_inviter_is_told(app, clock):
    owners = [make_user(app, f"owner{i}@example.com") for i in range(4)]
    with db_session(app) as session:
        for owner in owners[:3]:
            account_id = session.scalars(select(Membership.account_id).where(Membership.user_id == owner.id)).one()
            team.invite(session=session, account_id=account_id, inviter_id=owner.id, email="hana@example.com",
                        role="developer", now=clock())
    fourth = PageClient(app.test_client(), app)
    fourth.login("owner3@example.com")
    page = fourth.post("/team/invitations", {"email": "hana@example.com", "role": "developer"}, status=422)
    assert "as many invitations as an hour allows" in page.get_data(as_text=True)
    assert len(mails_to(app, "hana@example.com")) == 3
    with db_session(app) as session:
        assert len(session.scalars(select(Invitation).where(Invitation.email == "hana@example.com")).all()) == 3
    clock.advance(hours=1)
    fourth.login("owner3@example.com")  # the hour also ended the idle session
    fourth.post("/team/invitations", {"email": "hana@example.com", "role": "developer"}, status=302)
    assert len(mails_to(app, "hana@example.com")) == 4


def test_each_purpose_has_its_own_quota(app):
    make_user(app, "hana@example.com")
    client = PageClient(app.test_client(), app)
    for _ in range(3):
        client.post("/password/forgot", {"email": "hana@example.com"}, status=200)
    client.post("/signup", SIGNUP, status=302)
    assert [m.subject for m in mails_to(app, "hana@example.com")][-1] == "[Chotto] You already have a login"


def test_the_counters_keep_no_address_in_clear(app):
    PageClient(app.test_client(), app).post("/password/forgot", {"email": "hana@example.com"}, status=200)
    with db_session(app) as session:
        [row] = session.scalars(select(MailQuota)).all()
    assert "hana" not in repr(row.model_dump()) and len(row.address_hash) == 64
