import pytest
from sqlalchemy import select

from portal.accounts.models import Membership
from tests.helpers import PageClient, db_session, last_link, make_user, mails_to


@pytest.fixture
def owner(app):
    make_user(app, "owner@example.com", name="Olivia Owner")
    client = PageClient(app.test_client(), app)
    client.login("owner@example.com")
    return client


def invite(owner, app, email, role):
    owner.post("/team/invitations", {"email": email, "role": role}, status=302)
    return last_link(app, email, "/invitations/")


def roles(app):
    with db_session(app) as session:
        return sorted(m.role for m in session.scalars(select(Membership)))


def test_a_new_person_accepts_an_invitation_as_billing_and_can_sign_in(owner, app):
    link = invite(owner, app, "finance@example.com", "billing")
    assert mails_to(app, "finance@example.com")[-1].subject == "Olivia Owner invites you to Olivia Owner on Chotto"
    guest = PageClient(app.test_client(), app)
    assert "You are invited as Billing" in guest.text(link)
    guest.post(link, {"name": "Fumiko Finance", "password": "ledger lines and tea", "language": "ja"}, status=302)
    assert roles(app) == ["billing", "owner"]
    fresh = PageClient(app.test_client(), app)
    fresh.login("finance@example.com", "ledger lines and tea")
    fresh.get("/dashboard", status=200)


def test_an_invitation_link_works_once(owner, app):
    link = invite(owner, app, "dev@example.com", "developer")
    guest = PageClient(app.test_client(), app)
    guest.post(link, {"name": "Dev", "password": "ledger lines and tea", "language": "en"}, status=302)
    PageClient(app.test_client(), app).get(link, status=410)


def test_an_invitation_expires_after_seven_days(owner, app, clock):
    link = invite(owner, app, "dev@example.com", "developer")
    clock.advance(days=7)
    PageClient(app.test_client(), app).get(link, status=410)


def test_an_existing_login_joins_with_its_own_password(owner, app):
    make_user(app, "dev@example.com")
    link = invite(owner, app, "dev@example.com", "developer")
    guest = PageClient(app.test_client(), app)
    assert "Sign in to accept" in guest.text(link)
    guest.login("dev@example.com")
    guest.post(link, status=302)
    assert roles(app) == ["developer", "owner", "owner"]
    assert "Account: Olivia Owner" in guest.text("/dashboard")


def test_an_invitation_cannot_be_accepted_by_another_login(owner, app):
    make_user(app, "intruder@example.com")
    make_user(app, "dev2@example.com")
    link = invite(owner, app, "dev2@example.com", "developer")
    intruder = PageClient(app.test_client(), app)
    intruder.login("intruder@example.com")
    intruder.post(link, status=200)
    assert roles(app).count("developer") == 0


def test_withdrawing_an_invitation_kills_its_link(owner, app):
    link = invite(owner, app, "dev@example.com", "developer")
    page = owner.page("/team")
    action = page.find("form", action=lambda a: a and a.endswith("/revoke"))["action"]
    owner.post(action, status=302)
    PageClient(app.test_client(), app).get(link, status=410)


def test_a_new_invitation_replaces_the_previous_one(owner, app):
    first = invite(owner, app, "dev@example.com", "developer")
    second = invite(owner, app, "dev@example.com", "billing")
    PageClient(app.test_client(), app).get(first, status=410)
    PageClient(app.test_client(), app).get(second, status=200)


def test_owners_change_roles_but_the_last_owner_stays(owner, app):
    with db_session(app) as session:
        mine = session.scalars(select(Membership)).one()
    owner.post(f"/team/members/{mine.id}/role", {"role": "developer"}, status=302)
    assert roles(app) == ["owner"]
    assert "An account needs at least one owner" in owner.text("/team")
    owner.post(f"/team/members/{mine.id}/remove", status=302)
    assert roles(app) == ["owner"]


def test_an_owner_can_hand_over_and_step_down(owner, app):
    link = invite(owner, app, "second@example.com", "owner")
    PageClient(app.test_client(), app).post(link, {"name": "Second", "password": "ledger lines and tea", "language": "en"})
    with db_session(app) as session:
        mine = session.scalars(select(Membership).order_by(Membership.id)).first()
    owner.post(f"/team/members/{mine.id}/role", {"role": "billing"}, status=302)
    assert roles(app) == ["billing", "owner"]


def test_role_changes_answer_htmx_with_the_members_table(owner, app):
    with db_session(app) as session:
        mine = session.scalars(select(Membership)).one()
    response = owner.post(
        f"/team/members/{mine.id}/role", {"role": "developer"}, headers={"HX-Request": "true"}, status=200
    )
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<section id="members">')
    assert "An account needs at least one owner" in html
    assert "HX-Request" in response.headers["Vary"]


@pytest.mark.parametrize("role", ["developer", "billing"])
def test_only_owners_invite_change_roles_and_remove(owner, app, role):
    link = invite(owner, app, f"{role}@example.com", role)
    member = PageClient(app.test_client(), app)
    member.post(link, {"name": role, "password": "ledger lines and tea", "language": "en"}, status=302)
    member.get("/team", status=200)
    member.post("/team/invitations", {"email": "x@example.com", "role": "owner"}, status=403)
    with db_session(app) as session:
        mine = session.scalars(select(Membership).order_by(Membership.id)).first()
    member.post(f"/team/members/{mine.id}/role", {"role": "billing"}, status=403)
    member.post(f"/team/members/{mine.id}/remove", status=403)
    assert "Send invitation" not in member.text("/team")


def test_a_removed_member_loses_access_at_once(owner, app):
    link = invite(owner, app, "dev@example.com", "developer")
    member = PageClient(app.test_client(), app)
    member.post(link, {"name": "Dev", "password": "ledger lines and tea", "language": "en"}, status=302)
    with db_session(app) as session:
        theirs = session.scalars(select(Membership).where(Membership.role == "developer")).one()
    owner.post(f"/team/members/{theirs.id}/remove", status=302)
    member.get("/team", status=302)
    assert "not a member of any account" in member.text("/dashboard")


def test_an_owner_cannot_touch_another_accounts_members(owner, app):
    make_user(app, "other@example.com")
    with db_session(app) as session:
        theirs = session.scalars(select(Membership).order_by(Membership.id.desc())).first()
    owner.post(f"/team/members/{theirs.id}/remove", status=302)
    owner.post(f"/team/members/{theirs.id}/role", {"role": "billing"}, status=302)
    assert roles(app) == ["owner", "owner"]
    assert "That person is no longer a member." in owner.text("/team")
