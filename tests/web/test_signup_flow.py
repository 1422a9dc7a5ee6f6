from sqlalchemy import func, select
from portal.accounts.models import Account, Membership, SignUpAttempt, User
from tests.helpers import PASSWORD, PageClient, db_session, inbox_codes, last_link, mails_to, make_user

SIGNUP = {
    "name": "Hana Sato",
    "email": "hana@example.com",
    "password": PASSWORD,
    "account_kind": "individual",
    "account_name": "",
    "tax_residency": "JP",
    "language": "en",
}


def test_walks_from_sign_up_through_email_and_phone_to_the_dashboard(client, app):
    response = client.post("/signup", SIGNUP, status=302)
    assert response.headers["Location"].endswith("/signup/check-email")
    assert "hana@example.com" in client.text("/signup/check-email")

    link = last_link(app, "hana@example.com", "/verify-email/")
    response = client.get(link, status=302)
    assert response.headers["Location"].endswith("/verify-phone/")

    client.post("/verify-phone/", {"phone": "090-1234-5678"}, status=302)
    [code] = inbox_codes(app)
    assert "090-1234-5678" in client.text("/test-inbox")
    response = client.post("/verify-phone/code", {"code": code}, status=302)
    assert response.headers["Location"].endswith("/dashboard")
    page = client.text("/dashboard")
    assert "Welcome, Hana Sato" in page
    assert "Mobile number verified: 090-1234-5678" in page


def test_sign_up_creates_an_account_with_its_owner_when_the_link_is_opened(client, app):
    client.post("/signup", SIGNUP | {"account_kind": "company", "account_name": "Sato Shoji KK"}, status=302)
    with db_session(app) as session:
        assert session.scalar(select(func.count()).select_from(User)) == 0
    client.get(last_link(app, "hana@example.com", "/verify-email/"), status=302)
    with db_session(app) as session:
        user = session.scalars(select(User)).one()
        membership = session.scalars(select(Membership)).one()
        account = session.get(Account, membership.account_id)
    assert (account.name, account.kind, account.tax_residency) == ("Sato Shoji KK", "company", "JP")
    assert (membership.user_id, membership.role) == (user.id, "owner")
    assert (user.name, user.email_verified_at is not None) == ("Hana Sato", True)


def test_a_company_needs_its_name(client):
    response = client.post("/signup", SIGNUP | {"account_kind": "company"}, status=422)
    assert "Enter the company or organisation name." in response.get_data(as_text=True)


def test_refuses_a_fourteen_character_password_with_the_reason(client, app):
    response = client.post("/signup", SIGNUP | {"password": "walnut harbor9"}, status=422)
    assert "Use at least 15 characters" in response.get_data(as_text=True)
    with db_session(app) as session:
        assert session.scalar(select(func.count()).select_from(SignUpAttempt)) == 0
    client.post("/signup", SIGNUP | {"password": "walnut harbor97"}, status=302)


def test_answers_the_same_for_a_known_address_and_mails_it_a_notice_instead_of_a_link(client, app):
    make_user(app, "hana@example.com")
    known = client.post("/signup", SIGNUP, status=302)
    known_page = client.text("/signup/check-email")
    new = client.post("/signup", SIGNUP | {"email": "new@example.com"}, status=302)
    assert known.headers["Location"] == new.headers["Location"]
    assert known_page == client.text("/signup/check-email").replace("new@example.com", "hana@example.com")
    with db_session(app) as session:
        assert session.scalar(select(func.count()).select_from(User)) == 1
    assert [m.subject for m in mails_to(app, "hana@example.com")] == ["[Chotto] You already have a login"]
    assert [m.subject for m in mails_to(app, "new@example.com")] == ["[Chotto] Confirm your e-mail address"]


def test_an_email_link_works_once(client, app):
    client.post("/signup", SIGNUP, status=302)
    link = last_link(app, "hana@example.com", "/verify-email/")
    client.get(link, status=302)
    assert "This link cannot be used" in client.text(link, status=410)


def test_an_email_link_expires_after_24_hours(client, app, clock):
    client.post("/signup", SIGNUP, status=302)
    link = last_link(app, "hana@example.com", "/verify-email/")
    clock.advance(hours=24)
    client.get(link, status=410)


def test_a_verification_link_opened_in_another_browser_asks_for_the_sign_up_password(client, app):
    client.post("/signup", SIGNUP, status=302)
    link = last_link(app, "hana@example.com", "/verify-email/")
    other = PageClient(app.test_client(), app)
    assert "Enter the password you chose when you signed up" in other.text(link)
    with db_session(app) as session:
        assert session.scalar(select(func.count()).select_from(User)) == 0

    response = other.post(link, {"password": PASSWORD}, status=302)

    assert response.headers["Location"].endswith("/verify-phone/")
    with db_session(app) as session:
        assert session.scalars(select(User)).one().email_verified_at is not None


def test_a_sign_up_gives_no_login_before_the_link_is_opened(client, app):
    client.post("/signup", SIGNUP, status=302)
    client.post("/login", {"email": "hana@example.com", "password": PASSWORD}, status=422)


def test_pages_for_verified_users_wait_for_the_email(client, app):
    make_user(app, "hana@example.com", verified=False)
    client.login("hana@example.com")
    response = client.get("/dashboard", status=302)
    assert response.headers["Location"].endswith("/signup/check-email")
    client.post("/signup/resend", status=302)
    client.get(last_link(app, "hana@example.com", "/verify-email/"), status=302)
    client.get("/dashboard", status=200)
