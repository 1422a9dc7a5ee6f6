"""Issue 9 item 1: a sign-up with someone else's address never gives its author the login.
Whoever reads the mailbox ends up with the only password that works."""

from sqlalchemy import func, select

from portal import worker
from portal.accounts.models import Account, LoginThrottle, Membership, SignUpAttempt, User, UserSession
from portal.accounts.throttle import email_key
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


def logins(app) -> int:
    with db_session(app) as session:
        return session.scalar(select(func.count()).select_from(User)) + session.scalar(
            select(func.count()).select_from(Account)
        )


def failures(app, email="hana@example.com") -> int:
    with db_session(app) as session:
        return session.scalar(select(LoginThrottle.failures).where(LoginThrottle.email_hash == email_key(email))) or 0


def test_a_victim_superseded_by_an_attacker_cannot_be_made_to_create_the_attackers_login(app):
    victim, attacker = browser(app), browser(app)
    victim.post("/signup", VICTIM, status=302)
    attacker.post("/signup", ATTACKER, status=302)
    [mail] = mails_to(app, "hana@example.com")  # only the attacker's attempt is mailed
    attackers_link = last_link(app, "hana@example.com", "/verify-email/")

    page = victim.text(attackers_link)
    assert "Enter the password you chose when you signed up to finish creating your login" in page
    refused = victim.post(attackers_link, {"password": PASSWORD}, status=422).get_data(as_text=True)
    assert "That is not the password chosen when signing up with this address." in refused
    assert "Sign up again" in refused and 'href="/signup"' in refused
    assert logins(app) == 0

    victim.post("/signup", VICTIM, status=302)
    victim.get(last_link(app, "hana@example.com", "/verify-email/"), status=302)
    assert "This link cannot be used" in attacker.text(attackers_link, status=410)
    attacker.post("/login", {"email": "hana@example.com", "password": ATTACKER_PASSWORD}, status=422)
    browser(app).login("hana@example.com", PASSWORD)


def test_a_mail_scanner_opening_the_attackers_link_gives_the_attacker_nothing(app):
    attacker = browser(app)
    attacker.post("/signup", ATTACKER, status=302)
    link = last_link(app, "hana@example.com", "/verify-email/")

    app.test_client().get(link)  # Safe Links, a link preview: no cookie
    app.test_client().head(link)

    assert logins(app) == 0
    attacker.post("/login", {"email": "hana@example.com", "password": ATTACKER_PASSWORD}, status=422)
    victim = browser(app)
    victim.post(link, {"password": PASSWORD}, status=422)
    assert logins(app) == 0
    victim.post("/signup", VICTIM, status=302)
    victim.get(last_link(app, "hana@example.com", "/verify-email/"), status=302)
    attacker.post("/login", {"email": "hana@example.com", "password": ATTACKER_PASSWORD}, status=422)
    browser(app).login("hana@example.com", PASSWORD)


def test_a_cookie_less_visit_of_a_valid_link_creates_nothing_and_leaves_the_link_usable(app):
    signer = browser(app)
    signer.post("/signup", VICTIM, status=302)
    link = last_link(app, "hana@example.com", "/verify-email/")

    assert app.test_client().get(link).status_code == 200

    assert logins(app) == 0
    with db_session(app) as session:
        assert session.scalars(select(SignUpAttempt.used_at)).one() is None
    signer.get(link, status=302)
    assert logins(app) == 2


def test_the_browser_that_signed_up_is_signed_in_by_one_visit_of_the_link(app):
    signer = browser(app)
    signer.post("/signup", VICTIM, status=302)

    response = signer.get(last_link(app, "hana@example.com", "/verify-email/"), status=302)

    assert response.headers["Location"].endswith("/verify-phone/")
    assert "Verify your mobile number" in signer.text("/verify-phone/")


def test_another_browser_completes_only_with_the_password_chosen_at_sign_up(app):
    browser(app).post("/signup", VICTIM, status=302)
    link = last_link(app, "hana@example.com", "/verify-email/")
    other = browser(app)

    form = other.page(link).find("form", method="post")
    assert form.find("input", attrs={"name": "password", "autocomplete": "current-password"})
    refused = other.post(link, {"password": ATTACKER_PASSWORD}, status=422).get_data(as_text=True)
    assert "That is not the password chosen when signing up with this address." in refused
    assert logins(app) == 0 and failures(app) == 1
    assert other.get("/verify-phone/", status=302).headers["Location"].startswith("/login")

    response = other.post(link, {"password": PASSWORD}, status=302)

    assert response.headers["Location"].endswith("/verify-phone/")
    assert "Verify your mobile number" in other.text("/verify-phone/")
    assert logins(app) == 2 and failures(app) == 0
    assert "This link cannot be used" in other.text(link, status=410)


def test_wrong_sign_up_passwords_share_the_log_in_throttle_of_the_address(app):
    browser(app).post("/signup", VICTIM, status=302)
    link = last_link(app, "hana@example.com", "/verify-email/")
    other = browser(app)
    for _ in range(5):
        other.post(link, {"password": ATTACKER_PASSWORD}, status=422)

    refused = other.post(link, {"password": PASSWORD}, status=422).get_data(as_text=True)

    assert "Too many failed attempts" in refused
    assert logins(app) == 0 and failures(app) == 5


def test_a_link_form_without_its_csrf_token_is_refused(app):
    browser(app).post("/signup", VICTIM, status=302)
    link = last_link(app, "hana@example.com", "/verify-email/")
    other = browser(app)
    other.get(link)
    other.post(link, {"password": PASSWORD}, csrf=False, status=400)
    assert logins(app) == 0


def test_an_expired_link_says_it_has_expired(app, clock):
    signer = browser(app)
    signer.post("/signup", VICTIM, status=302)
    link = last_link(app, "hana@example.com", "/verify-email/")
    clock.advance(hours=24)

    assert "This link has expired" in signer.text(link, status=410)
    signer.post(link, {"password": PASSWORD}, status=410)
    assert logins(app) == 0


def test_a_superseded_link_says_a_newer_sign_up_replaced_it(app):
    signer = browser(app)
    signer.post("/signup", VICTIM, status=302)
    link = last_link(app, "hana@example.com", "/verify-email/")
    browser(app).post("/signup", ATTACKER, status=302)

    page = signer.text(link, status=410)
    assert "A newer sign-up for this address replaced this link" in page
    browser(app).post(link, {"password": PASSWORD}, status=410)
    assert logins(app) == 0


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


def test_a_link_opened_by_someone_who_does_not_know_its_password_creates_nothing(app):
    attacker, victim = browser(app), browser(app)
    attacker.post("/signup", ATTACKER, status=302)
    victim.post("/signup", VICTIM, status=302)
    link = last_link(app, "hana@example.com", "/verify-email/")

    attacker.get(link, status=200)
    attacker.post(link, {"password": ATTACKER_PASSWORD}, status=422)

    assert logins(app) == 0
    assert attacker.get("/dashboard", status=302).headers["Location"].startswith("/login")


def test_an_address_with_a_proved_login_keeps_its_password(app):
    make_user(app, "hana@example.com")
    browser(app).post("/signup", ATTACKER, status=302)
    [notice] = mails_to(app, "hana@example.com")
    assert notice.subject == "[Chotto] You already have a login" and "/verify-email/" not in notice.text_body
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

    link = last_link(app, "hana@example.com", "/verify-email/")
    attacker.get(link, status=410)
    browser(app).post(link, status=410)

    with db_session(app) as session:
        assert session.scalars(select(User)).one().email_verified_at is None


def test_a_link_mailed_to_an_existing_login_proves_the_address_only_on_a_click(app):
    make_user(app, "hana@example.com", verified=False)
    owner = browser(app)
    owner.login("hana@example.com")
    owner.post("/signup/resend", status=302)
    link = last_link(app, "hana@example.com", "/verify-email/")
    other = browser(app)

    page = other.page(link)

    assert page.find("form", method="post").find("button")
    with db_session(app) as session:
        assert session.scalars(select(User)).one().email_verified_at is None
    response = other.post(link, status=302)
    assert "/login" in response.headers["Location"]
    with db_session(app) as session:
        assert session.scalars(select(User)).one().email_verified_at is not None


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

