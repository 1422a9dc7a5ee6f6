from sqlalchemy import select

from portal.accounts.models import User, UserSession
from tests.helpers import PASSWORD, PageClient, db_session, last_link, make_user


def test_signs_in_and_out(client, app):
    make_user(app)
    client.login("owner@example.com")
    assert "Welcome, owner" in client.text("/dashboard")
    client.post("/logout", status=302)
    assert client.get("/dashboard", status=302).headers["Location"].startswith("/login")


def test_an_old_session_cookie_replayed_after_log_out_is_refused(client, app):
    make_user(app)
    client.login("owner@example.com")
    cookie = client.client.get_cookie("chotto_session").value
    client.post("/logout", status=302)
    replay = app.test_client()
    replay.set_cookie("chotto_session", cookie)
    response = replay.get("/dashboard")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_the_session_cookie_changes_at_sign_in_and_the_old_one_is_worthless(client, app):
    make_user(app)
    client.get("/login")
    before = client.client.get_cookie("chotto_session").value
    client.login("owner@example.com")
    after = client.client.get_cookie("chotto_session").value
    assert before != after
    stale = app.test_client()
    stale.set_cookie("chotto_session", before)
    assert stale.get("/dashboard").status_code == 302


def test_a_second_sign_in_from_the_same_browser_ends_the_first_session(client, app):
    make_user(app)
    client.login("owner@example.com")
    first = client.client.get_cookie("chotto_session").value
    client.login("owner@example.com")
    replay = app.test_client()
    replay.set_cookie("chotto_session", first)
    assert replay.get("/dashboard").status_code == 302


def test_wrong_password_and_unknown_address_get_the_same_answer(client, app):
    make_user(app)
    wrong = client.post("/login", {"email": "owner@example.com", "password": "not the right password"}, status=422)
    unknown = client.post("/login", {"email": "nobody@example.com", "password": "not the right password"}, status=422)
    assert _body(wrong) == _body(unknown)
    assert "The e-mail address or password is not right." in _body(wrong)


def _body(response):
    import re

    # CSRF tokens carry a timestamp: two answers a second apart differ there, and only there
    body = re.sub(r'"X-CSRFToken": "[^"]+"', "", response.get_data(as_text=True))
    return re.sub(r'value="[^"]+"', "", body).replace("nobody@example.com", "owner@example.com")


def test_idle_for_61_minutes_ends_the_session(client, app, clock):
    make_user(app)
    client.login("owner@example.com")
    clock.advance(minutes=59)
    client.get("/dashboard", status=200)
    clock.advance(minutes=59)
    client.get("/dashboard", status=200)
    clock.advance(minutes=61)
    assert client.get("/dashboard", status=302).headers["Location"].startswith("/login")


def test_a_session_ends_24_hours_after_sign_in_however_active(client, app, clock):
    make_user(app)
    client.login("owner@example.com")
    for _ in range(23):
        clock.advance(minutes=59)
        client.get("/dashboard", status=200)
    clock.advance(minutes=60)
    client.get("/dashboard", status=302)


def test_throttles_after_five_failures_with_a_growing_delay(client, app, clock):
    make_user(app)
    for _ in range(5):
        client.post("/login", {"email": "owner@example.com", "password": "wrong password here!"}, status=422)
    response = client.post("/login", {"email": "owner@example.com", "password": PASSWORD}, status=422)
    assert "Try again in 1 minutes" in response.get_data(as_text=True)
    clock.advance(seconds=31)
    client.login("owner@example.com")


def test_a_correct_login_resets_the_failure_count(client, app, clock):
    make_user(app)
    for _ in range(4):
        client.post("/login", {"email": "owner@example.com", "password": "wrong password here!"}, status=422)
    client.login("owner@example.com")
    client.post("/logout")
    for _ in range(4):
        client.post("/login", {"email": "owner@example.com", "password": "wrong password here!"}, status=422)
    client.login("owner@example.com")


def test_unknown_addresses_are_throttled_exactly_like_known_ones(client, app):
    for email in ("owner@example.com", "nobody@example.com"):
        for _ in range(6):
            last = client.post("/login", {"email": email, "password": "wrong password here!"}, status=422)
        assert "Too many failed attempts" in last.get_data(as_text=True)


def test_after_100_failures_even_the_right_password_is_refused_until_a_reset(client, app, clock):
    make_user(app)
    for _ in range(100):
        client.post("/login", {"email": "owner@example.com", "password": "wrong password here!"}, status=422)
        clock.advance(hours=1, seconds=1)
    response = client.post("/login", {"email": "owner@example.com", "password": PASSWORD}, status=422)
    assert "Reset your password by e-mail to unlock" in response.get_data(as_text=True)
    client.post("/password/forgot", {"email": "owner@example.com"}, status=200)
    link = last_link(app, "owner@example.com", "/reset-password/")
    client.post(link, {"password": "a brand new long passphrase"}, status=302)
    client.login("owner@example.com", "a brand new long passphrase")


def test_rehashes_a_password_stored_with_old_parameters_at_sign_in(client, app):
    from argon2 import PasswordHasher

    user = make_user(app)
    with db_session(app) as session:
        row = session.get(User, user.id)
        row.password_hash = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
        session.commit()
    client.login("owner@example.com")
    with db_session(app) as session:
        assert session.get(User, user.id).password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_a_user_can_list_sessions_and_end_another_one(client, app):
    make_user(app)
    client.login("owner@example.com")
    other = PageClient(app.test_client(), app)
    other.login("owner@example.com")
    with db_session(app) as session:
        rows = session.scalars(select(UserSession).order_by(UserSession.id)).all()
    assert len(client.page("/profile/").select("#sessions tbody tr")) == 2
    client.post(f"/profile/sessions/{rows[1].id}/end", status=302)
    assert other.get("/dashboard", status=302).headers["Location"].startswith("/login")
    client.get("/dashboard", status=200)


def test_next_only_follows_local_paths(client, app):
    make_user(app)
    response = client.post("/login", {"email": "owner@example.com", "password": PASSWORD, "next": "//evil.example/x"})
    assert response.headers["Location"] == "/dashboard"
    client.post("/logout")
    response = client.post("/login", {"email": "owner@example.com", "password": PASSWORD, "next": "/team"})
    assert response.headers["Location"] == "/team"


def test_a_disabled_login_cannot_sign_in_and_loses_its_sessions(client, app, clock):
    user = make_user(app)
    client.login("owner@example.com")
    with db_session(app) as session:
        session.get(User, user.id).disabled_at = clock()
        session.commit()
    client.get("/dashboard", status=302)
    client.post("/login", {"email": "owner@example.com", "password": PASSWORD}, status=422)
