import re

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
    def strip(html):  # CSRF tokens carry a timestamp: two answers a second apart differ there, and only there
        html = re.sub(r'"X-CSRFToken": "[^"]+"|name="csrf_token" value="[^"]+"', "", html)
        return html.replace("owner@example.com", "X").replace("nobody@example.com", "X")

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
    assert mails_to(app, "owner@example.com")[-1].subject == "[Chotto] Your password was changed"


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
    assert mails_to(app, "owner@example.com")[-1].subject == "[Chotto] Your password was changed"
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


WRONG = "not my password at all"


def fail_reauthentication(client, times):
    for _ in range(times):
        client.post("/reauthenticate", {"password": WRONG, "next": "/profile/"}, status=422)


def fail_password_change(client, times):
    for _ in range(times):
        client.post("/profile/password", {"current_password": WRONG, "new_password": "another long passphrase"}, status=422)


def test_failed_re_authentications_throttle_log_in(client, app):
    make_user(app)
    client.login("owner@example.com")
    fail_reauthentication(client, 5)
    response = PageClient(app.test_client(), app).post("/login", {"email": "owner@example.com", "password": PASSWORD}, status=422)
    assert "Too many failed attempts. Try again in 1 minutes." in response.get_data(as_text=True)


def test_failed_log_ins_throttle_re_authentication(client, app, clock):
    make_user(app)
    client.login("owner@example.com")
    for _ in range(5):
        PageClient(app.test_client(), app).post("/login", {"email": "owner@example.com", "password": WRONG}, status=422)
    response = client.post("/reauthenticate", {"password": PASSWORD, "next": "/profile/"}, status=422)
    assert "Too many failed attempts. Try again in 1 minutes." in response.get_data(as_text=True)
    clock.advance(seconds=31)
    client.post("/reauthenticate", {"password": PASSWORD, "next": "/profile/"}, status=302)


def test_failed_password_changes_throttle_log_in(client, app):
    make_user(app)
    client.login("owner@example.com")
    fail_password_change(client, 5)
    response = PageClient(app.test_client(), app).post("/login", {"email": "owner@example.com", "password": PASSWORD}, status=422)
    assert "Too many failed attempts" in response.get_data(as_text=True)


def test_failed_log_ins_throttle_password_change(client, app):
    make_user(app)
    client.login("owner@example.com")
    for _ in range(5):
        PageClient(app.test_client(), app).post("/login", {"email": "owner@example.com", "password": WRONG}, status=422)
    response = client.post(
        "/profile/password", {"current_password": PASSWORD, "new_password": "another long passphrase"}, status=422
    )
    assert "Too many failed attempts" in response.get_data(as_text=True)
    PageClient(app.test_client(), app).post("/login", {"email": "owner@example.com", "password": "another long passphrase"}, status=422)


def test_the_hundredth_failure_of_a_re_authentication_locks_log_in_until_a_reset(client, app, clock):
    from portal.accounts.models import LoginThrottle
    from portal.accounts.throttle import HARD_CAP, email_key

    make_user(app)
    client.login("owner@example.com")
    with db_session(app) as session:
        session.add(LoginThrottle(email_hash=email_key("owner@example.com"), failures=HARD_CAP - 1, last_failure_at=clock()))
        session.commit()
    fail_reauthentication(client, 1)
    response = PageClient(app.test_client(), app).post("/login", {"email": "owner@example.com", "password": PASSWORD}, status=422)
    assert "Reset your password by e-mail to unlock" in response.get_data(as_text=True)
    response = client.post("/reauthenticate", {"password": PASSWORD, "next": "/profile/"}, status=422)
    assert "Reset your password by e-mail to unlock" in response.get_data(as_text=True)


def test_a_right_re_authentication_clears_the_failure_count(client, app):
    make_user(app)
    client.login("owner@example.com")
    fail_reauthentication(client, 4)
    client.post("/reauthenticate", {"password": PASSWORD, "next": "/profile/"}, status=302)
    fail_reauthentication(client, 4)
    PageClient(app.test_client(), app).login("owner@example.com")


def test_issuing_a_reset_link_kills_the_earlier_ones(client, app):
    make_user(app)
    client.post("/password/forgot", {"email": "owner@example.com"})
    first = last_link(app, "owner@example.com", "/reset-password/")
    client.post("/password/forgot", {"email": "owner@example.com"})
    second = last_link(app, "owner@example.com", "/reset-password/")
    assert first != second
    client.get(first, status=410)
    client.get(second, status=200)


def test_using_a_reset_link_kills_every_other_one(client, app, clock):
    from portal.accounts import tokens
    from portal.accounts.auth import RESET_TTL
    from portal.accounts.models import OneTimeToken, User

    make_user(app)
    client.post("/password/forgot", {"email": "owner@example.com"})
    link = last_link(app, "owner@example.com", "/reset-password/")
    other, other_hash = tokens.new_token()  # issued at the same moment by another worker
    with db_session(app) as session:
        user = session.scalars(select(User)).one()
        session.add(OneTimeToken(purpose="reset_password", user_id=user.id, token_hash=other_hash, created_at=clock(),
                                 expires_at=clock() + RESET_TTL))
        session.commit()
    client.get(f"/reset-password/{other}", status=200)
    client.post(link, {"password": "a brand new long passphrase"}, status=302)
    client.get(f"/reset-password/{other}", status=410)


def test_changing_the_password_kills_every_reset_link(client, app):
    make_user(app)
    client.post("/password/forgot", {"email": "owner@example.com"})
    link = last_link(app, "owner@example.com", "/reset-password/")
    client.login("owner@example.com")
    client.post("/profile/password", {"current_password": PASSWORD, "new_password": "another long passphrase"}, status=302)
    client.get(link, status=410)


def test_authentication_events_are_logged_without_secrets(client, app, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="portal.auth")
    make_user(app)
    client.post("/login", {"email": "owner@example.com", "password": WRONG}, status=422)
    client.login("owner@example.com")
    fail_reauthentication(client, 1)
    client.post("/reauthenticate", {"password": PASSWORD, "next": "/profile/"}, status=302)
    fail_password_change(client, 1)
    client.post("/profile/password", {"current_password": PASSWORD, "new_password": "another long passphrase"}, status=302)
    client.post("/password/forgot", {"email": "owner@example.com"})
    link = last_link(app, "owner@example.com", "/reset-password/")
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "portal.auth")
    for event in ("login failed", "login succeeded", "re-authentication failed", "re-authenticated",
                  "password change refused", "password changed", "password reset requested", "reset link issued"):
        assert event in logged, event
    for secret in (PASSWORD, WRONG, "another long passphrase", link.rsplit("/", 1)[1], "owner@example.com"):
        assert secret not in logged, secret
