import pytest
from sqlalchemy import select

from portal.accounts.models import PhoneChallenge, User
from portal.messaging.models import TestInboxMessage
from tests.helpers import PageClient, db_session, inbox_codes, make_user


def signed_in(app, email="owner@example.com"):
    make_user(app, email)
    client = PageClient(app.test_client(), app)
    client.login(email)
    return client


def wrong(code):
    return f"{(int(code) + 1) % 10**6:06d}"


def test_a_correct_code_verifies_the_number(app):
    client = signed_in(app)
    client.post("/verify-phone/", {"phone": "+81 90 1234 5678"}, status=302)
    [code] = inbox_codes(app)
    client.post("/verify-phone/code", {"code": code}, status=302)
    with db_session(app) as session:
        user = session.scalars(select(User)).one()
    assert user.phone_e164 == "+819012345678" and user.phone_verified_at is not None


def test_codes_are_stored_hashed(app):
    client = signed_in(app)
    client.post("/verify-phone/", {"phone": "09012345678"}, status=302)
    [code] = inbox_codes(app)
    with db_session(app) as session:
        challenge = session.scalars(select(PhoneChallenge)).one()
    assert code not in challenge.code_hash and len(challenge.code_hash) == 64


def test_the_sixth_wrong_code_is_refused_even_when_right(app):
    client = signed_in(app)
    client.post("/verify-phone/", {"phone": "09012345678"}, status=302)
    [code] = inbox_codes(app)
    for left in (4, 3, 2, 1):
        response = client.post("/verify-phone/code", {"code": wrong(code)}, status=422)
        assert f"{left} attempts left" in response.get_data(as_text=True)
    response = client.post("/verify-phone/code", {"code": wrong(code)}, status=422)
    assert "Too many wrong codes" in response.get_data(as_text=True)
    response = client.post("/verify-phone/code", {"code": code}, status=422)
    assert "Too many wrong codes" in response.get_data(as_text=True)


def test_a_new_code_does_not_reset_the_failure_count(app, clock):
    client = signed_in(app)
    client.post("/verify-phone/", {"phone": "09012345678"}, status=302)
    [first] = inbox_codes(app)
    for _ in range(3):
        client.post("/verify-phone/code", {"code": wrong(first)}, status=422)
    clock.advance(seconds=61)
    client.post("/verify-phone/resend", status=302)
    second = inbox_codes(app)[-1]
    response = client.post("/verify-phone/code", {"code": wrong(second)}, status=422)
    assert "1 attempts left" in response.get_data(as_text=True)


def test_an_older_code_stops_working_when_a_new_one_is_sent(app, clock):
    client = signed_in(app)
    client.post("/verify-phone/", {"phone": "09012345678"}, status=302)
    [first] = inbox_codes(app)
    clock.advance(seconds=61)
    client.post("/verify-phone/resend", status=302)
    second = inbox_codes(app)[-1]
    if first != second:
        client.post("/verify-phone/code", {"code": first}, status=422)
    client.post("/verify-phone/code", {"code": second}, status=302)


def test_resending_waits_for_the_cooldown(app, clock):
    client = signed_in(app)
    client.post("/verify-phone/", {"phone": "09012345678"}, status=302)
    clock.advance(seconds=30)
    client.post("/verify-phone/resend", status=302)
    assert "Please wait 31 seconds" in client.text("/verify-phone/code")
    assert len(inbox_codes(app)) == 1
    clock.advance(seconds=31)
    client.post("/verify-phone/resend", status=302)
    assert len(inbox_codes(app)) == 2


def test_a_code_expires_after_ten_minutes(app, clock):
    client = signed_in(app)
    client.post("/verify-phone/", {"phone": "09012345678"}, status=302)
    [code] = inbox_codes(app)
    clock.advance(minutes=10, seconds=1)
    response = client.post("/verify-phone/code", {"code": code}, status=422)
    assert "That code has expired" in response.get_data(as_text=True)


def test_a_code_is_still_good_just_before_ten_minutes(app, clock):
    client = signed_in(app)
    client.post("/verify-phone/", {"phone": "09012345678"}, status=302)
    [code] = inbox_codes(app)
    clock.advance(minutes=9, seconds=59)
    client.post("/verify-phone/code", {"code": code}, status=302)


def test_a_number_verified_by_another_login_cannot_be_verified_again(app):
    make_user(app, "first@example.com", phone="+819012345678")
    client = signed_in(app, "second@example.com")
    response = client.post("/verify-phone/", {"phone": "090-1234-5678"}, status=422)
    assert "already verified by another Chotto login" in response.get_data(as_text=True)
    assert inbox_codes(app) == []


def test_an_invalid_or_landline_number_is_refused_with_a_message(app):
    client = signed_in(app)
    for number in ("+8108012345678", "03-1234-5678", "12345", "not a number"):
        response = client.post("/verify-phone/", {"phone": number}, status=422)
        assert "Enter a mobile number that can receive SMS" in response.get_data(as_text=True), number


def test_the_code_lands_in_the_test_inbox_of_the_account(app):
    client = signed_in(app)
    client.post("/verify-phone/", {"phone": "09012345678"}, status=302)
    [code] = inbox_codes(app)
    page = client.page("/test-inbox")
    assert code in page.select_one("#inbox-messages").get_text()
    other = signed_in(app, "stranger@example.com")
    assert code not in other.text("/test-inbox")


def test_changing_a_verified_number_asks_for_the_password_again(app, clock):
    make_user(app, phone="+819012345678")
    client = PageClient(app.test_client(), app)
    client.login("owner@example.com")
    clock.advance(minutes=11)
    response = client.get("/verify-phone/?change=1", status=302)
    assert response.headers["Location"].startswith("/reauthenticate")
    client.post("/reauthenticate", {"password": "correct horse battery staple", "next": "/verify-phone/?change=1"}, status=302)
    client.get("/verify-phone/?change=1", status=200)


def test_the_test_inbox_panel_refreshes_itself_as_a_fragment(app):
    client = signed_in(app)
    page = client.page("/test-inbox")
    panel = page.select_one("#inbox-messages")
    assert panel["hx-get"] == "/test-inbox" and panel["hx-trigger"] == "every 3s"
    client.post("/verify-phone/", {"phone": "09012345678"}, status=302)
    inbox_codes(app)
    fragment = client.get("/test-inbox", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert fragment.lstrip().startswith('<section id="inbox-messages"') and "<html" not in fragment
    restore = client.get("/test-inbox", headers={"HX-Request": "true", "HX-History-Restore-Request": "true"})
    assert "<html" in restore.get_data(as_text=True)


def test_switching_numbers_keeps_the_failure_count(app, clock):
    client = signed_in(app)
    client.post("/verify-phone/", {"phone": "09012345678"}, status=302)
    [first] = inbox_codes(app)
    for _ in range(4):
        client.post("/verify-phone/code", {"code": wrong(first)}, status=422)
    clock.advance(seconds=61)
    client.post("/verify-phone/", {"phone": "08011112222"}, status=302)
    second = inbox_codes(app)[-1]
    response = client.post("/verify-phone/code", {"code": wrong(second)}, status=422)
    assert "Too many wrong codes" in response.get_data(as_text=True)
    clock.advance(seconds=61)
    response = client.post("/verify-phone/", {"phone": "07011112222"}, status=422)
    assert "Too many wrong codes" in response.get_data(as_text=True)
    clock.advance(hours=1)
    client.post("/verify-phone/", {"phone": "07011112222"}, status=302)


def test_at_most_ten_codes_a_day_whatever_the_number_then_the_page_says_when(app, clock):
    client = signed_in(app)
    for index in range(10):
        client.post("/verify-phone/", {"phone": f"0901111{index:04d}"}, status=302)
        clock.advance(minutes=40)  # never more than two codes an hour: the limit is the day's
    response = client.post("/verify-phone/", {"phone": "09011119999"}, status=422)
    text = " ".join(response.get_data(as_text=True).split())
    assert "You have been sent as many codes as we send in a day." in text
    assert "Try again after 11/28/26, 12:00 PM Japan time (in 18 hours)." in text  # the first code plus a day
    assert 'value="09011119999"' in text
    client.post("/verify-phone/resend", status=302)
    assert "as many codes as we send in a day" in client.text("/verify-phone/code")
    assert len(inbox_codes(app)) == 10
    clock.advance(hours=17, minutes=20)
    client.login("owner@example.com")  # the session timed out meanwhile
    client.post("/verify-phone/", {"phone": "09011119999"}, status=302)


def test_the_code_page_shows_the_number_the_code_went_to(app):
    client = signed_in(app)
    client.post("/verify-phone/", {"phone": "+819012345678"}, status=302)
    page = client.page("/verify-phone/code")
    assert "The code went to 090-1234-5678." in page.get_text(" ")
    assert page.select_one("form input[name=phone]")["value"] == "090-1234-5678"
    assert client.page("/verify-phone/").select_one("input[name=phone]")["value"] == "090-1234-5678"


def test_a_mistyped_number_is_corrected_at_once_and_the_cooldown_is_per_number(app, clock):
    client = signed_in(app)
    client.post("/verify-phone/", {"phone": "090-1234-5679"}, status=302)  # a typo
    clock.advance(seconds=5)
    client.post("/verify-phone/", {"phone": "090-1234-5678"}, status=302)  # corrected from the code page
    assert "The code went to 090-1234-5678." in client.text("/verify-phone/code")
    first, second = inbox_codes(app)
    with db_session(app) as session:
        sent_to = session.scalars(select(PhoneChallenge.phone_e164).order_by(PhoneChallenge.id)).all()
    assert sent_to == ["+819012345679", "+819012345678"]
    client.post("/verify-phone/resend", status=302)  # the corrected number's own cooldown
    assert "Please wait 61 seconds" in client.text("/verify-phone/code")
    response = client.post("/verify-phone/", {"phone": "090-1234-5679"}, status=422)  # back to the typo too soon
    assert "Please wait 56 seconds" in response.get_data(as_text=True)
    assert response.get_data(as_text=True).count('value="090-1234-5679"') == 1  # what was typed is kept
    client.post("/verify-phone/code", {"code": second}, status=302)
    with db_session(app) as session:
        assert session.scalars(select(User.phone_e164)).one() == "+819012345678"


def test_a_correction_on_a_number_change_keeps_asking_for_the_change(app):
    make_user(app, phone="+819012345678")
    client = PageClient(app.test_client(), app)
    client.login("owner@example.com")
    client.post("/verify-phone/?change=1", {"phone": "080-1111-2223"}, status=302)
    form = client.page("/verify-phone/code").select_one("section form")
    assert form["action"] == "/verify-phone/?change=1"
    client.post(form["action"], {"phone": "080-1111-2222"}, status=302)
    assert "The code went to 080-1111-2222." in client.text("/verify-phone/code")


@pytest.mark.parametrize("language, wanted, unwanted", [
    ("ja", "Chotto：認証コードは", "verification code"),
    ("en", "Chotto: your verification code is", "認証"),
])
def test_the_code_sms_is_in_the_users_language_only(app, language, wanted, unwanted):
    make_user(app, language=language)
    client = PageClient(app.test_client(), app)
    client.login("owner@example.com")
    client.post("/verify-phone/", {"phone": "09012345678"}, status=302)
    [code] = inbox_codes(app)
    with db_session(app) as session:
        [body] = session.scalars(select(TestInboxMessage.body)).all()
    assert wanted in body and code in body and unwanted not in body
    assert "/" not in body


def test_in_production_no_page_shows_a_verification_code(app_with):
    from tests.web.test_security import PRODUCTION

    app = app_with(**PRODUCTION, MAILER=_Discard())
    make_user(app)
    browser = app.test_client()
    browser.environ_base.update({"wsgi.url_scheme": "https", "HTTP_HOST": "portal.chotto.test"})
    client = PageClient(browser, app)
    client.login("owner@example.com")
    client.post("/verify-phone/", {"phone": "09012345678"}, status=302)
    [code] = inbox_codes(app)
    assert code not in client.text("/test-inbox")


class _Discard:
    def send(self, *, session, payload, now, deadline=None):
        pass
