"""Issue 9 item 1: a sign-up with someone else's address never gives its author the login.
Whoever reads the mailbox ends up with the only password that works."""

from sqlalchemy import func, select

from portal import worker
from portal.accounts.models import Account, Membership, SignUpAttempt, User, UserSession
from portal.ledger.models import CreditState
from tests.helpers import PASSWORD, PageClient, db_session, deliver_outbox, last_link, make_user, mails_to

VICTIM = {
    "name": "Hana Sato", "email": "hana@example.com", "password": PASSWORD, "account_kind": "company",
    "account_name": "Sato Shoji KK", "tax_residency": "JP", "language": "en",
}
ATTACKER_PASSWORD = "the attacker's own long passphrase"
ATTACKER = VICTIM | {"name": "Mallory", "account_name": "Mallory Ltd", "password": ATTACKER_PASSWORD}


def browser(app) -> PageClient:
    return PageClient(app.test_client(), app)


def test_the_mailbox_owner_ends_up_with_the_only_password_that_works(app):
    attacker, victim = browser(app), browser(app)
    attacker.post("/signup", ATTACKER, status=302)
    victim.post("/signup", VICTIM, status=302)

    response = victim.get(last_link(app, "hana@example.com", "/verify-email/"), status=302)

    assert response.headers["Location"].endswith("/verify-phone/")
    attacker.post("/login", {"email": "hana@example.com", "password": ATTACKER_PASSWORD}, status=422)
    browser(app).login("hana@example.com", PASSWORD)
    with db_session(app) as session:
        user = session.scalars(select(User)).one()
        account = session.scalars(select(Account)).one()
    assert (user.name, account.name) == ("Hana Sato", "Sato Shoji KK")


def test_a_new_sign_up_kills_every_earlier_link_of_the_address(app):
    attacker, victim = browser(app), browser(app)
    attacker.post("/signup", ATTACKER, status=302)
    attackers_link = last_link(app, "hana@example.com", "/verify-email/")
    victim.post("/signup", VICTIM, status=302)

    assert "This link cannot be used" in victim.text(attackers_link, status=410)
    victim.get(last_link(app, "hana@example.com", "/verify-email/"), status=302)
    browser(app).login("hana@example.com", PASSWORD)


def test_the_mail_of_a_superseded_sign_up_is_not_sent(app):
    browser(app).post("/signup", ATTACKER, status=302)
    browser(app).post("/signup", VICTIM, status=302)
    assert len(mails_to(app, "hana@example.com")) == 1


def test_a_link_signs_in_only_the_browser_that_sent_its_sign_up(app):
    attacker, victim = browser(app), browser(app)
    attacker.post("/signup", ATTACKER, status=302)
    victim.post("/signup", VICTIM, status=302)

    response = attacker.get(last_link(app, "hana@example.com", "/verify-email/"), status=302)

    assert "/login" in response.headers["Location"]
    assert attacker.get("/dashboard", status=302).headers["Location"].startswith("/login")


def test_an_address_with_a_proved_login_keeps_its_password(app):
    make_user(app, "hana@example.com")
    browser(app).post("/signup", ATTACKER, status=302)
    [notice] = mails_to(app, "hana@example.com")
    assert notice.subject == "You already have a Chotto login" and "/verify-email/" not in notice.text_body
    browser(app).post("/login", {"email": "hana@example.com", "password": ATTACKER_PASSWORD}, status=422)
    browser(app).login("hana@example.com", PASSWORD)


def test_a_login_whose_address_was_never_proved_gives_way_to_the_mailbox_owner(app):
    make_user(app, "hana@example.com", password=ATTACKER_PASSWORD, verified=False)
    attacker = browser(app)
    attacker.login("hana@example.com", ATTACKER_PASSWORD)
    victim = browser(app)
    victim.post("/signup", VICTIM, status=302)

    victim.get(last_link(app, "hana@example.com", "/verify-email/"), status=302)

    assert attacker.get("/dashboard", status=302).headers["Location"].startswith("/login")
    attacker.post("/login", {"email": "hana@example.com", "password": ATTACKER_PASSWORD}, status=422)
    assert "Welcome, Hana Sato" in victim.text("/dashboard", follow_redirects=True)
    with db_session(app) as session:
        assert session.scalars(select(Account.name)).all() == ["Sato Shoji KK"]


def test_an_old_login_cannot_prove_the_address_while_the_mailbox_owner_signs_up(app):
    make_user(app, "hana@example.com", password=ATTACKER_PASSWORD, verified=False)
    attacker = browser(app)
    attacker.login("hana@example.com", ATTACKER_PASSWORD)
    browser(app).post("/signup", VICTIM, status=302)
    attacker.post("/signup/resend", status=302)

    browser(app).get(last_link(app, "hana@example.com", "/verify-email/"), status=410)

    with db_session(app) as session:
        assert session.scalars(select(User)).one().email_verified_at is None


def test_unverified_logins_older_than_a_link_are_purged_with_the_accounts_they_alone_hold(app, clock):
    stale = make_user(app, "stale@example.com", verified=False)
    browser(app).login("stale@example.com")
    browser(app).post("/signup", VICTIM | {"email": "pending@example.com"}, status=302)
    deliver_outbox(app)
    clock.advance(hours=23)
    young = make_user(app, "young@example.com", verified=False)
    proved = make_user(app, "proved@example.com")
    clock.advance(hours=1)

    assert worker.purge_signups(app) == 1

    with db_session(app) as session:
        assert {u.id for u in session.scalars(select(User))} == {young.id, proved.id}
        assert session.scalar(select(func.count()).select_from(Account)) == 2
        assert session.scalar(select(func.count()).select_from(CreditState)) == 2
        assert session.scalar(select(func.count()).select_from(Membership)) == 2
        assert session.scalar(select(func.count()).select_from(UserSession).where(UserSession.user_id == stale.id)) == 0
        assert session.scalar(select(func.count()).select_from(SignUpAttempt)) == 0


def test_a_stale_unverified_login_that_shares_an_account_is_kept(app, clock):
    from portal.accounts.models import Membership as Member

    stale = make_user(app, "stale@example.com", verified=False)
    other = make_user(app, "other@example.com")
    with db_session(app) as session:
        [account_id] = session.scalars(select(Member.account_id).where(Member.user_id == stale.id)).all()
        session.add(Member(account_id=account_id, user_id=other.id, role="developer", created_at=stale.created_at))
        session.commit()
    clock.advance(hours=24, seconds=1)
    assert worker.purge_signups(app) == 0
    with db_session(app) as session:
        assert session.get(User, stale.id) is not None

