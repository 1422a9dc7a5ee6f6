"""Input is never lost: after a validation error, a rate limit, an expired form or a session
that ended, the page shows again what the person typed (never a password), and the way on."""

import re

import pytest
from bs4 import BeautifulSoup

from tests.helpers import PASSWORD, PageClient, make_user

SIGNUP = {"name": "Hana Sato", "email": "hana@example.com", "password": "walnut harbor9", "account_kind": "company",
          "account_name": "Sato Shoji KK", "tax_residency": "overseas", "language": "ja"}
PROFILE = {"legal_name": "Example KK", "postal_code": "100-0001", "address": "1-1 Chiyoda, Tokyo",
           "billing_email": "finance@example.com", "tax_residency": "JP", "registration_number": "T123"}


def values(html: str) -> dict[str, str]:
    """What each field of the page shows: text inputs' values, checked radios, selected options."""
    soup = BeautifulSoup(html, "html.parser")
    shown = {}
    for field in soup.select("input[name], textarea[name], select[name]"):
        name = field["name"]
        if field.name == "textarea":
            shown[name] = re.sub(r"^\r?\n", "", field.get_text())  # HTML drops the newline after <textarea>
        elif field.name == "select":
            chosen = field.select_one("option[selected]")
            shown[name] = chosen["value"] if chosen else None
        elif field.get("type") in ("radio", "checkbox"):
            if field.has_attr("checked"):
                shown[name] = field["value"]
        else:
            shown.setdefault(name, field.get("value"))
    return shown


def signed_in(app, email="owner@example.com", **kwargs):
    make_user(app, email, **kwargs)
    client = PageClient(app.test_client(), app)
    client.login(email)
    return client


def no_password_shown(html: str) -> None:
    assert PASSWORD not in html and "walnut harbor9" not in html
    for field in BeautifulSoup(html, "html.parser").select("input[type=password]"):
        assert not field.get("value"), field


# -- validation errors ---------------------------------------------------------------------------


def test_sign_up_refused_shows_everything_typed_but_the_password(client):
    response = client.post("/signup", SIGNUP, status=422)
    html = response.get_data(as_text=True)
    shown = values(html)
    assert {k: shown.get(k) for k in ("name", "email", "account_kind", "account_name", "tax_residency", "language")} == \
        {k: v for k, v in SIGNUP.items() if k != "password"}
    no_password_shown(html)


def test_log_in_refused_keeps_the_address_not_the_password(app, client):
    make_user(app)
    response = client.post("/login", {"email": "owner@example.com", "password": "wrong " + PASSWORD, "next": "/team"},
                           status=422)
    shown = values(response.get_data(as_text=True))
    assert (shown["email"], shown["next"]) == ("owner@example.com", "/team") and not shown.get("password")


@pytest.mark.parametrize("path, data, kept", [
    ("/password/forgot", {"email": "hana@example"}, {"email": "hana@example"}),
    ("/profile/", {"name": "x" * 101, "language": "ja"}, {"name": "x" * 101, "language": "ja"}),
    ("/billing/profile", PROFILE, PROFILE),
    ("/team/invitations", {"email": "new member@example", "role": "billing"}, {"email": "new member@example", "role": "billing"}),
    ("/credentials", {"name": "web server", "mode": "live", "networks": "10.0.0.1\n203.0.113.0/24", "expires": "90",
                      "monthly_cap": "5000"},
     {"name": "web server", "mode": "live", "networks": "10.0.0.1\n203.0.113.0/24", "expires": "90", "monthly_cap": "5000"}),
    ("/verify-phone/", {"phone": "090-1234-567"}, {"phone": "090-1234-567"}),
])
def test_every_signed_in_form_refused_shows_what_was_typed(app, path, data, kept):
    client = signed_in(app)
    response = client.post(path, data)
    assert response.status_code in (200, 422), response.status_code
    shown = values(response.get_data(as_text=True))
    assert {name: shown.get(name) for name in kept} == kept


def test_a_refused_amount_is_shown_as_typed(app):
    client = signed_in(app)
    client.post("/billing/profile", PROFILE | {"registration_number": ""}, status=302)
    page = client.get("/credit/buy/confirm?amount=999", status=422)
    assert values(page.get_data(as_text=True))["amount"] == "999"


def test_a_refused_new_password_is_never_shown_again(app):
    client = signed_in(app)
    response = client.post("/profile/password", {"current_password": PASSWORD, "new_password": "short"}, status=422)
    no_password_shown(response.get_data(as_text=True))
    assert "short" not in values(response.get_data(as_text=True)).values()


# -- a rate limit ----------------------------------------------------------------------------------


def test_the_rate_limit_page_says_when_to_retry_and_the_form_comes_back_filled(app_with):
    app = app_with(RATELIMIT_ENABLED=True, SIGNUP_RATE_LIMIT="1 per hour")
    client = PageClient(app.test_client(), app)
    client.post("/signup", SIGNUP, status=422)
    response = client.post("/signup", SIGNUP | {"name": "Hana Sato (second try)"}, status=429)
    assert int(response.headers["Retry-After"]) > 3500
    page = BeautifulSoup(response.get_data(as_text=True), "html.parser")
    text = " ".join(page.get_text(" ").split())
    assert re.search(r"Try again after 1?[0-9]:[0-5][0-9] [AP]M Japan time \(in 60 minutes\)\.", text), text
    assert "What you typed is kept (except passwords)" in text
    carry_on = page.select_one("[data-testid=carry-on]")["href"]
    assert carry_on == "/signup"
    html = client.get(carry_on).get_data(as_text=True)
    assert values(html)["name"] == "Hana Sato (second try)" and values(html)["account_name"] == "Sato Shoji KK"
    no_password_shown(html)
    assert not values(client.get("/signup").get_data(as_text=True))["name"]  # once only


def test_the_rate_limit_page_speaks_the_page_language(app_with):
    app = app_with(RATELIMIT_ENABLED=True, SIGNUP_RATE_LIMIT="1 per hour")
    client = PageClient(app.test_client(), app)
    client.post("/language/ja", {}, status=302)
    client.post("/signup", SIGNUP, status=422)
    text = " ".join(client.post("/signup", SIGNUP, status=429).get_data(as_text=True).split())
    assert re.search(r"1?[0-9]:[0-5][0-9]以降にもう一度お試しください（あと60分）。", text), text
    assert "Japan time" not in text and "minutes" not in text


# -- an expired form -------------------------------------------------------------------------------


def test_an_expired_form_keeps_what_was_typed_for_its_page(client):
    response = client.post("/signup", SIGNUP, csrf=False, status=400)
    page = BeautifulSoup(response.get_data(as_text=True), "html.parser")
    assert "This form has expired" in page.get_text()
    assert page.select_one("[data-testid=carry-on]")["href"] == "/signup"
    html = client.get("/signup").get_data(as_text=True)
    assert values(html)["email"] == "hana@example.com" and values(html)["tax_residency"] == "overseas"
    no_password_shown(html)


def test_a_form_sent_after_signing_out_comes_back_filled_after_signing_in(app):
    client = signed_in(app)
    token = client.csrf_token()
    client.post("/logout", status=302)  # in another tab
    response = client.post("/billing/profile", PROFILE | {"csrf_token": token}, csrf=False, status=400)
    carry_on = BeautifulSoup(response.get_data(as_text=True), "html.parser").select_one("[data-testid=carry-on]")["href"]
    response = client.get(carry_on, status=302)
    assert response.headers["Location"] == "/login?next=%2Fbilling%2Fprofile"
    response = client.post("/login", {"email": "owner@example.com", "password": PASSWORD, "next": "/billing/profile"},
                           status=302)
    assert response.headers["Location"] == "/billing/profile"
    shown = values(client.get("/billing/profile").get_data(as_text=True))
    assert {name: shown.get(name) for name in PROFILE} == PROFILE


def test_a_form_sent_after_the_session_timed_out_comes_back_filled_for_the_same_person_only(app, clock):
    client = signed_in(app)
    make_user(app, "colleague@example.com")
    token = client.csrf_token()
    clock.advance(minutes=61)
    response = client.post("/team/invitations", {"email": "new@example.com", "role": "billing", "csrf_token": token},
                           csrf=False, status=302)
    assert response.headers["Location"] == "/login?next=%2Fteam%2Finvitations"
    login = client.text("/login?next=/team")
    assert "Your session has ended. Sign in again to continue: what you typed is kept." in login
    client.post("/login", {"email": "colleague@example.com", "password": PASSWORD}, status=302)
    assert not values(client.get("/team").get_data(as_text=True)).get("email")  # someone else on this browser
    response = client.post("/login", {"email": "owner@example.com", "password": PASSWORD, "next": "/team/invitations"},
                           status=302)
    assert client.get(response.headers["Location"], status=302).headers["Location"] == "/team"
    shown = values(client.get("/team").get_data(as_text=True))
    assert (shown["email"], shown["role"]) == ("new@example.com", "billing")


def test_a_form_sent_with_a_stale_sign_in_is_filled_again_after_the_password_prompt(app, clock):
    client = signed_in(app)
    clock.advance(minutes=11)
    response = client.post("/credentials", {"name": "batch job", "mode": "test", "scopes": ["sms"], "expires": "30"},
                           status=302)
    assert response.headers["Location"].startswith("/reauthenticate")
    response = client.post("/reauthenticate", {"password": PASSWORD, "next": "/credentials"}, status=302)
    shown = values(client.get(response.headers["Location"]).get_data(as_text=True))
    assert (shown["name"], shown["mode"], shown["expires"]) == ("batch job", "test", "30")


def test_kept_input_is_bounded_and_never_holds_secrets(client):
    client.post("/signup", SIGNUP | {"name": "n" * 1500, "account_name": "a" * 1000}, csrf=False, status=400)
    with client.client.session_transaction() as session:
        kept = session["kept_input"]
    names = [name for name, _ in kept["fields"]]
    assert "account_name" not in names and {"name", "email", "language"} <= set(names)  # what does not fit is dropped
    assert "password" not in names and "csrf_token" not in names
    assert kept["path"] == "/signup"


def test_no_link_token_is_kept_in_the_session(client):
    client.post("/invitations/" + "t" * 43, {"name": "Hana Sato", "language": "ja", "password": PASSWORD}, csrf=False,
                status=400)
    with client.client.session_transaction() as session:
        assert "kept_input" not in session
