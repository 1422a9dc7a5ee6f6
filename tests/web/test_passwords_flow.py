from sqlalchemy import select

from portal.accounts.models import UserSession
from tests.helpers import PASSWORD, PageClient, db_session, last_link, make_user, mails_to


def test_reset_links_use_the_base_url_even_with_a_forged_host(client, app):
    make_user(app)
    client.client.environ_base["HTTP_HOST"] = "evil.example"
    client.post("/password/forgot", {"email": "owner@example.com"}, status=200)
    body = mails_to(app, "owner@example.com")[-1].text_body
    assert "https://portal.chotto.test/reset-password/" in body
    assert "evil.example" not in body


def test_forgot_password_answers_the_same_for_unknown_addresses(client, app):
    make_user(app)
    known = client.post("/password/forgot", {"email": "owner@example.com"}, status=200).get_data(as_text=True)
    unknown = client.post("/password/forgot", {"email": "nobody@example.com"}, status=200).get_data(as_text=True)
    strip = lambda html: html.replace("owner@example.com", "X").replace("nobody@example.com", "X")  # noqa: E731
    assert strip(known) == strip(unknown)
    assert mails_to(app, "nobody@example.com") == []


def test_a_reset_link_works_once_does_not_sign_in_and_ends_every_session(client, app):
    make_user(app)
    other = PageClient(app.test_client(), app)
    other.login("owner@example.com")
    client.post("/password/forgot", {"email": "owner@example.com"})
    link = last_link(app, "owner@example.com", "/reset-password/")
    response = client.post(link, {"password": "a brand new long passphrase"}, status=302)
    assert response.headers["Location"].startswith("/login")
    client.get("/dashboard", status=302)
    other.get("/dashboard", status=302)
    client.get(link, status=410)
    assert mails_to(app, "owner@example.com")[-1].subject == "Your Chotto password was changed"


def test_a_reset_link_expires_after_60_minutes(client, app, clock):
    make_user(app)
    client.post("/password/forgot", {"email": "owner@example.com"})
    link = last_link(app, "owner@example.com", "/reset-password/")
    clock.advance(minutes=59, seconds=59)
    client.get(link, status=200)
    clock.advance(seconds=1)
    client.get(link, status=410)


def test_reset_pages_send_no_referrer(client, app):
    make_user(app)
    client.post("/password/forgot", {"email": "owner@example.com"})
    link = last_link(app, "owner@example.com", "/reset-password/")
    assert client.get(link).headers["Referrer-Policy"] == "no-referrer"


def test_changing_the_password_needs_the_current_one_mails_a_notice_and_can_end_other_sessions(client, app):
    make_user(app)
    client.login("owner@example.com")
    other = PageClient(app.test_client(), app)
    other.login("owner@example.com")
    wrong = client.post(
        "/profile/password", {"current_password": "not my password at all", "new_password": "another long passphrase"}, status=422
    )
    assert "That is not your current password." in wrong.get_data(as_text=True)
    client.post(
        "/profile/password",
        {"current_password": PASSWORD, "new_password": "another long passphrase", "end_other_sessions": "y"},
        status=302,
    )
    assert mails_to(app, "owner@example.com")[-1].subject == "Your Chotto password was changed"
    client.get("/dashboard", status=200)
    other.get("/dashboard", status=302)
    assert "Sign out of all other sessions" in client.text("/profile/")


def test_changing_the_password_can_keep_other_sessions(client, app):
    make_user(app)
    client.login("owner@example.com")
    other = PageClient(app.test_client(), app)
    other.login("owner@example.com")
    client.post("/profile/password", {"current_password": PASSWORD, "new_password": "another long passphrase"}, status=302)
    other.get("/dashboard", status=200)
    with db_session(app) as session:
        assert all(row.ended_at is None for row in session.scalars(select(UserSession)))


def test_a_refused_new_password_does_not_use_up_the_reset_link(client, app):
    make_user(app)
    client.post("/password/forgot", {"email": "owner@example.com"})
    link = last_link(app, "owner@example.com", "/reset-password/")
    response = client.post(link, {"password": "too short"}, status=200)
    assert "Use at least 15 characters" in response.get_data(as_text=True)
    client.post(link, {"password": "a brand new long passphrase"}, status=302)


def test_confirming_the_password_gives_the_session_a_new_token(client, app, clock):
    make_user(app)
    client.login("owner@example.com")
    before = client.client.get_cookie("chotto_session").value
    clock.advance(minutes=11)
    client.post("/reauthenticate", {"password": PASSWORD, "next": "/profile/"}, status=302)
    assert client.client.get_cookie("chotto_session").value != before
    client.get("/dashboard", status=200)
    stale = app.test_client()
    stale.set_cookie("chotto_session", before)
    assert stale.get("/dashboard").status_code == 302
