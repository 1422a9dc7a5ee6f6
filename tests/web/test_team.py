import base64
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from portal.accounts import team
from portal.accounts.models import Invitation, Membership, User
from portal.audit import AuditEvent
from portal.credentials import service as credentials
from portal.credentials.models import Credential
from tests.helpers import PASSWORD, PageClient, db_session, last_link, make_user, mails_to


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
    assert mails_to(app, "finance@example.com")[-1].subject == "[Chotto] Olivia Owner invites you to Olivia Owner"
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
    member.get(f"/team/members/{mine.id}/remove", status=403)
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


# -- issue 9 item 5: removal shows and revokes the member's credentials; recent password -------


def join(owner, app, email, role, *, name="Dev Member", language="en"):
    """A newcomer accepts an invitation; answers their client, membership id and user id."""
    link = invite(owner, app, email, role)
    member = PageClient(app.test_client(), app)
    member.post(link, {"name": name, "password": "ledger lines and tea", "language": language}, status=302)
    with db_session(app) as session:
        user = session.scalars(select(User).where(User.email == email)).one()
        theirs = session.scalars(select(Membership).where(Membership.user_id == user.id)).one()
    return member, theirs.id, user.id


def new_credential(app, user_id, name, mode="live"):
    with db_session(app) as session:
        account_id = session.scalars(select(Membership.account_id).where(Membership.user_id == user_id)).first()
        credential, token = credentials.create(
            session=session, account_id=account_id, user_id=user_id, name=name, mode=mode,
            scopes=["sms", "read"], networks=[], monthly_cap=None, now=app.config["CLOCK"](),
        )
    return credential.id, {"Authorization": "Basic " + base64.b64encode(f"{credential.sid}:{token}".encode()).decode()}


def api_status(app, headers) -> int:
    return app.test_client().get("/you/credits/", headers=headers).status_code


def reauthenticate(client, next_path="/team"):
    response = client.post("/reauthenticate", {"password": PASSWORD, "next": next_path}, status=302)
    assert response.headers["Location"] == next_path.rstrip("?")


def asks_for_password(response) -> bool:
    location = response.headers.get("Location") or response.headers.get("HX-Redirect") or ""
    return response.status_code in (200, 302) and location.startswith("/reauthenticate?next=")


def test_removing_a_member_lists_their_credentials_and_revokes_all_but_those_kept(owner, app):
    _, membership_id, dev_id = join(owner, app, "dev@example.com", "developer")
    kept_id, kept = new_credential(app, dev_id, "billing-sync")
    dropped_id, dropped = new_credential(app, dev_id, "old-script", mode="test")
    _, owners_own = new_credential(app, owner_id(app), "owner's own")
    assert [api_status(app, h) for h in (kept, dropped, owners_own)] == [200, 200, 200]

    page = owner.page(f"/team/members/{membership_id}/remove")
    boxes = page.find_all("input", attrs={"name": "keep"})
    assert sorted(int(box["value"]) for box in boxes) == sorted([kept_id, dropped_id])
    assert not any(box.has_attr("checked") for box in boxes), "keeping must be an explicit choice"
    text = " ".join(page.get_text(" ").split())
    assert "billing-sync" in text and "old-script" in text and "owner's own" not in text

    form = page.find("form", action=f"/team/members/{membership_id}/remove")
    owner.post(form["action"], {"keep": str(kept_id)}, status=302)

    assert roles(app) == ["owner"]
    assert api_status(app, dropped) == 401
    assert api_status(app, kept) == 200
    assert api_status(app, owners_own) == 200
    with db_session(app) as session:
        events = session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("%.re%"))).all()
    assert events.count("credential.revoked") == 1


def test_owners_are_mailed_who_was_removed_by_whom_and_which_credentials_were_revoked_or_kept(owner, app):
    _, membership_id, dev_id = join(owner, app, "dev@example.com", "developer")
    kept_id, _ = new_credential(app, dev_id, "billing-sync")
    new_credential(app, dev_id, "old-script")
    owner.post(f"/team/members/{membership_id}/remove", {"keep": str(kept_id)}, status=302)
    mail = mails_to(app, "owner@example.com")[-1]
    assert mail.subject == "[Chotto] Dev Member was removed from Olivia Owner"
    body = " ".join(mail.text_body.split())
    assert "Olivia Owner removed Dev Member (dev@example.com) from Olivia Owner." in body
    revoked, kept = body.split("now revoked")[1].split("kept by choice")
    assert "old-script" in revoked and "billing-sync" not in revoked
    assert "billing-sync" in kept


ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
JUNK_KEEPS = {"superscript": lambda _id: "²", "arabic_indic_digits": lambda id_: str(id_).translate(ARABIC_INDIC),
              "5000_digits": lambda _id: "1" * 5000, "19_digits": lambda id_: str(id_).zfill(19),
              "negative": lambda id_: f"-{id_}", "spaced": lambda id_: f" {id_}", "exponent": lambda _id: "1e3",
              "empty": lambda _id: ""}


@pytest.mark.parametrize("junk", JUNK_KEEPS.values(), ids=JUNK_KEEPS.keys())
def test_a_keep_value_that_is_not_a_plain_id_is_ignored_rather_than_failing(owner, app, junk):
    _, membership_id, dev_id = join(owner, app, "dev@example.com", "developer")
    kept_id, kept = new_credential(app, dev_id, "billing-sync")
    dropped_id, dropped = new_credential(app, dev_id, "old-script")
    owner.post(f"/team/members/{membership_id}/remove", {"keep": [junk(dropped_id), str(kept_id)]}, status=302)
    assert roles(app) == ["owner"]
    assert [api_status(app, kept), api_status(app, dropped)] == [200, 401]


def test_an_unticked_list_revokes_every_credential_even_one_created_after_the_page_was_shown(owner, app):
    _, membership_id, dev_id = join(owner, app, "dev@example.com", "developer")
    _, first = new_credential(app, dev_id, "first")
    owner.get(f"/team/members/{membership_id}/remove")
    _, late = new_credential(app, dev_id, "created while the owner was reading")
    owner.post(f"/team/members/{membership_id}/remove", status=302)
    assert [api_status(app, first), api_status(app, late)] == [401, 401]


def test_a_refused_removal_revokes_nothing(owner, app):
    _, mine = new_credential(app, owner_id(app), "mine")
    with db_session(app) as session:
        my_membership = session.scalars(select(Membership)).one()
    owner.post(f"/team/members/{my_membership.id}/remove", status=302)
    assert "An account needs at least one owner" in owner.text("/team")
    assert api_status(app, mine) == 200


def test_removal_and_revocations_commit_together_or_not_at_all(owner, app, monkeypatch):
    _, membership_id, dev_id = join(owner, app, "dev@example.com", "developer")
    _, theirs = new_credential(app, dev_id, "theirs")

    def mail_fails(*args, **kwargs):
        raise RuntimeError("the outbox is unavailable")

    monkeypatch.setattr(team, "_tell", mail_fails)
    with db_session(app) as session, pytest.raises(RuntimeError):
        team.remove_member(session=session, account_id=account_id(app), membership_id=membership_id,
                           actor_id=owner_id(app), keep=(), now=app.config["CLOCK"]())
    assert roles(app) == ["developer", "owner"]
    assert api_status(app, theirs) == 200


def test_a_member_without_credentials_is_removed_after_the_confirmation_step(owner, app):
    _, membership_id, _ = join(owner, app, "dev@example.com", "developer")
    team_page = owner.page("/team")
    link = team_page.find("a", href=f"/team/members/{membership_id}/remove")
    assert link is not None, "the Remove button leads to the confirmation step"
    assert "Dev Member created or rotated no API credentials in this account." in owner.text(link["href"])
    owner.post(link["href"], status=302)
    assert roles(app) == ["owner"]


def _invite_owner(owner, app, membership_id):
    return owner.post("/team/invitations", {"email": "boss@example.com", "role": "owner"})


def _change_role(owner, app, membership_id):
    return owner.post(f"/team/members/{membership_id}/role", {"role": "billing"})


def _remove(owner, app, membership_id):
    return owner.post(f"/team/members/{membership_id}/remove")


def _team_state(app):
    with db_session(app) as session:
        invited = session.scalars(select(Invitation.email).where(Invitation.revoked_at.is_(None))).all()
        revoked = session.scalars(select(Credential.name).where(Credential.revoked_at.is_not(None))).all()
    return roles(app), sorted(invited), revoked


@pytest.mark.parametrize("action", [_invite_owner, _change_role, _remove])
def test_owner_changes_without_a_recent_password_go_to_the_prompt_and_change_nothing(owner, app, clock, action):
    _, membership_id, dev_id = join(owner, app, "dev@example.com", "developer")
    new_credential(app, dev_id, "theirs")
    clock.advance(minutes=10, seconds=1)
    before, mails_before = _team_state(app), len(mails_to(app, "owner@example.com"))
    response = action(owner, app, membership_id)
    assert asks_for_password(response)
    assert _team_state(app) == before
    assert len(mails_to(app, "owner@example.com")) == mails_before
    assert mails_to(app, "boss@example.com") == []


def test_the_removal_confirmation_page_itself_asks_for_the_password_and_comes_back(owner, app, clock):
    _, membership_id, _ = join(owner, app, "dev@example.com", "developer")
    clock.advance(minutes=11)
    response = owner.get(f"/team/members/{membership_id}/remove", status=302)
    assert asks_for_password(response)
    back = parse_qs(urlsplit(response.headers["Location"]).query)["next"][0]
    reauthenticate(owner, back)
    owner.get(back, status=200)


def test_an_htmx_role_change_without_a_recent_password_sends_the_whole_page_to_the_prompt(owner, app, clock):
    _, membership_id, _ = join(owner, app, "dev@example.com", "developer")
    clock.advance(minutes=10, seconds=1)
    response = owner.post(f"/team/members/{membership_id}/role", {"role": "billing"},
                          headers={"HX-Request": "true"}, status=200)
    assert response.headers["HX-Redirect"].startswith("/reauthenticate?next=")
    assert roles(app) == ["developer", "owner"]


def test_inviting_a_developer_or_billing_member_needs_no_fresh_password(owner, app, clock):
    clock.advance(minutes=30)
    owner.post("/team/invitations", {"email": "dev@example.com", "role": "developer"}, status=302)
    assert mails_to(app, "dev@example.com")


@pytest.mark.parametrize("action", [_invite_owner, _change_role, _remove])
def test_a_password_confirmed_within_ten_minutes_allows_the_change_and_ten_minutes_and_a_second_do_not(
        owner, app, clock, action):
    _, membership_id, _ = join(owner, app, "dev@example.com", "developer")
    clock.advance(minutes=30)
    prompt = action(owner, app, membership_id)
    assert asks_for_password(prompt)
    back = parse_qs(urlsplit(prompt.headers["Location"]).query)["next"][0]
    reauthenticate(owner, back)
    owner.get(back, status=200 if "/remove" in back else 302)  # the confirmation step, or the team page

    clock.advance(minutes=10, seconds=1)
    assert asks_for_password(action(owner, app, membership_id))
    assert _team_state(app)[0] == ["developer", "owner"]

    reauthenticate(owner)
    clock.advance(minutes=9, seconds=59)
    response = action(owner, app, membership_id)
    assert response.status_code == 302 and response.headers["Location"] == "/team"
    assert _team_state(app) != (["developer", "owner"], [], [])


def test_the_team_page_tells_an_owner_when_changes_need_the_password_again(owner, app, clock):
    assert "need your password again" not in owner.text("/team")
    clock.advance(minutes=10)
    page = owner.page("/team")
    assert "need your password again" in page.get_text()
    assert page.find("a", href="/reauthenticate?next=/team")


def test_owners_are_mailed_in_their_own_language_about_owner_invitations_and_role_changes(owner, app):
    _, second_id, _ = join(owner, app, "second@example.com", "owner", name="Sato", language="ja")
    _, dev_membership, _ = join(owner, app, "dev@example.com", "developer")
    owner.post("/team/invitations", {"email": "boss@example.com", "role": "owner"}, status=302)
    for email in ("owner@example.com", "second@example.com"):
        assert any("boss@example.com" in mail.text_body for mail in mails_to(app, email)), email

    owner.post(f"/team/members/{dev_membership}/role", {"role": "billing"}, status=302)
    english = mails_to(app, "owner@example.com")[-1]
    assert "Olivia Owner changed the role of Dev Member (dev@example.com) in Olivia Owner from Developer to Billing." \
        in " ".join(english.text_body.split())
    japanese = mails_to(app, "second@example.com")[-1]
    assert "開発者" in japanese.text_body and "dev@example.com" in japanese.text_body

    owner.post(f"/team/members/{dev_membership}/role", {"role": "billing"}, status=302)
    assert mails_to(app, "owner@example.com")[-1].id == english.id, "no change, no mail"


def test_a_demoted_owner_is_told_about_it(owner, app):
    _, second_id, second_user = join(owner, app, "second@example.com", "owner", name="Sato")
    owner.post(f"/team/members/{second_id}/role", {"role": "developer"}, status=302)
    assert "from Owner to Developer" in " ".join(mails_to(app, "second@example.com")[-1].text_body.split())


def test_an_owner_who_steps_down_by_htmx_gets_the_whole_page_drawn_for_their_new_role(owner, app):
    join(owner, app, "second@example.com", "owner", name="Sato")
    with db_session(app) as session:
        mine = session.scalars(select(Membership).where(Membership.user_id == owner_id(app))).one()
    response = owner.post(f"/team/members/{mine.id}/role", {"role": "developer"}, headers={"HX-Request": "true"},
                          status=200)
    assert response.headers["HX-Redirect"] == "/team"
    assert "Send invitation" not in owner.text("/team")


def owner_id(app) -> int:
    with db_session(app) as session:
        return session.scalars(select(User.id).where(User.email == "owner@example.com")).one()


def account_id(app) -> int:
    with db_session(app) as session:
        return session.scalars(select(Membership.account_id).where(Membership.user_id == owner_id(app))).one()


def test_a_removed_or_demoted_member_can_no_longer_create_credentials(owner, app):
    member, membership_id, dev_id = join(owner, app, "dev@example.com", "developer")
    owner.post(f"/team/members/{membership_id}/remove", status=302)
    with db_session(app) as session, pytest.raises(credentials.NotAManager):
        credentials.create(session=session, account_id=account_id(app), user_id=dev_id, name="late", mode="live",
                           scopes=["sms"], networks=[], monthly_cap=None, now=app.config["CLOCK"]())
    with db_session(app) as session:
        assert session.scalars(select(Credential)).all() == []


def test_a_credential_the_member_rotated_is_listed_and_revoked_with_them(owner, app):
    """Rotating hands the member a working token of someone else's credential: it counts as theirs."""
    from datetime import timedelta

    _, membership_id, dev_id = join(owner, app, "dev@example.com", "developer")
    rotated_id, _ = new_credential(app, owner_id(app), "owner's, rotated by the developer")
    untouched_id, untouched = new_credential(app, owner_id(app), "owner's, untouched")
    with db_session(app) as session:
        _, token = credentials.rotate(session=session, account_id=account_id(app), user_id=dev_id,
                                      credential_id=rotated_id, overlap=timedelta(days=7), now=app.config["CLOCK"]())
        sid = session.get(Credential, rotated_id).sid
    developers_copy = {"Authorization": "Basic " + base64.b64encode(f"{sid}:{token}".encode()).decode()}
    page = owner.page(f"/team/members/{membership_id}/remove")
    assert [int(box["value"]) for box in page.find_all("input", attrs={"name": "keep"})] == [rotated_id]
    owner.post(f"/team/members/{membership_id}/remove", status=302)
    assert [api_status(app, developers_copy), api_status(app, untouched)] == [401, 200]
