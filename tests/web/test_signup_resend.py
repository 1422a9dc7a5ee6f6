# ruff: noqa: F811 -- fixtures imported from another test module are redefined as test parameters
"""The check-your-mail page mails the sign-up link again: the link of the same pending
sign-up, replacing the one mailed before; rate-limited per address and per IP; the same
answer, and the same work, whether or not the address has a pending sign-up or a login."""

from sqlalchemy import func, select

from portal.accounts.models import User
from tests.helpers import PASSWORD, PageClient, db_session, deliver_outbox, last_link, mails_to, make_user
from tests.web.test_enumeration import measure, same_page, without_tokens, writes  # noqa: F401 (a fixture)

SIGNUP = {"name": "Hana Sato", "email": "hana@example.com", "password": PASSWORD, "account_kind": "individual",
          "account_name": "", "tax_residency": "JP", "language": "en"}
CHECK_EMAIL = "/signup/check-email"


def test_the_page_offers_to_send_the_link_again_to_the_address_signed_up_with(client):
    client.post("/signup", SIGNUP, status=302)
    page = client.page(CHECK_EMAIL)
    form = page.select_one(f"form[action='{CHECK_EMAIL}']")
    assert form.select_one("input[name=email]")["value"] == "hana@example.com"
    assert form.select_one("button").get_text(strip=True) == "Send the link again"


def test_the_resent_link_completes_the_same_sign_up_and_the_earlier_link_stops_working(client, app, clock):
    client.post("/signup", SIGNUP, status=302)
    first = last_link(app, "hana@example.com", "/verify-email/")
    clock.advance(hours=23)
    response = client.post(CHECK_EMAIL, {"email": "hana@example.com"}, status=302)
    assert response.headers["Location"] == CHECK_EMAIL
    assert "If a sign-up with hana@example.com is waiting for its link, we sent a new one." in client.text(CHECK_EMAIL)
    second = last_link(app, "hana@example.com", "/verify-email/")
    assert second != first
    client.get(first, status=410)
    clock.advance(hours=2)  # valid for a day from the resend
    response = client.get(second, status=302)  # the browser that signed up: the same pending sign-up
    assert response.headers["Location"].endswith("/verify-phone/")
    with db_session(app) as session:
        assert session.scalars(select(User.name)).all() == ["Hana Sato"]


def test_resending_answers_and_works_the_same_for_a_pending_sign_up_a_login_and_an_unknown_address(app, measure):
    make_user(app, "known@example.com")
    PageClient(app.test_client(), app).post("/signup", SIGNUP, status=302)
    deliver_outbox(app)
    works, pages = {}, {}
    for email in ("hana@example.com", "known@example.com", "nobody@example.com"):
        client = PageClient(app.test_client(), app)
        data = {"email": email, "csrf_token": client.csrf_token()}
        with measure() as work:
            work.response = client.client.post(CHECK_EMAIL, data=data)
        works[email] = work
        pages[email] = client.get(CHECK_EMAIL)
    pending = works["hana@example.com"]
    for email in ("known@example.com", "nobody@example.com"):
        same_page(pending, works[email], "hana@example.com", email)
        assert writes(works[email]) == writes(pending) and works[email].statements == pending.statements
        assert works[email].hashing == pending.hashing
        assert without_tokens(pages[email]).replace(email, "X") == \
            without_tokens(pages["hana@example.com"]).replace("hana@example.com", "X")
    assert [m.subject for m in mails_to(app, "known@example.com")] == []
    assert mails_to(app, "nobody@example.com") == []
    assert len(mails_to(app, "hana@example.com")) == 2


def test_resending_mails_an_address_three_times_an_hour_with_the_same_answer(app, clock):
    PageClient(app.test_client(), app).post("/signup", SIGNUP, status=302)  # the first of the hour's three mails
    deliver_outbox(app)
    answers = set()
    for i in range(3):
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = f"198.51.100.{i}"  # whatever the IP
        answers.add(PageClient(client, app).post(CHECK_EMAIL, {"email": "hana@example.com"}, status=302).headers["Location"])
        deliver_outbox(app)  # as the worker does at once: a link replaced before its mail left is not mailed
    assert answers == {CHECK_EMAIL}
    assert len(mails_to(app, "hana@example.com")) == 3
    clock.advance(hours=1)
    PageClient(app.test_client(), app).post(CHECK_EMAIL, {"email": "hana@example.com"}, status=302)
    assert len(mails_to(app, "hana@example.com")) == 4


def test_resending_is_rate_limited_per_ip_and_the_page_keeps_the_address(app_with):
    app = app_with(RATELIMIT_ENABLED=True, SIGNUP_RATE_LIMIT="2 per minute")
    client = PageClient(app.test_client(), app)
    for email in ("a@example.com", "b@example.com"):
        client.post(CHECK_EMAIL, {"email": email}, status=302)
    response = client.post(CHECK_EMAIL, {"email": "c@example.com"}, status=429)
    assert "Try again after" in response.get_data(as_text=True)
    assert client.page(CHECK_EMAIL).select_one("input[name=email]")["value"] == "c@example.com"


def test_a_signed_in_login_without_a_proved_address_still_resends_its_own_link(client, app):
    make_user(app, "hana@example.com", verified=False)
    client.login("hana@example.com")
    page = client.page(CHECK_EMAIL)
    assert page.select_one("form[action='/signup/resend']") is not None and page.select_one("input[name=email]") is None
    client.post("/signup/resend", status=302)
    client.get(last_link(app, "hana@example.com", "/verify-email/"), status=302)
    with db_session(app) as session:
        assert session.scalar(select(func.count()).select_from(User).where(User.email_verified_at.is_not(None))) == 1
