"""The OTP sites pages: owners and developers register a website, prove its ownership against
a local server, change its settings (every wrong one named), try it with a test code that
lands in the test inbox, and read its log, statistics and blocked requests. Billing members
are refused, another account's site does not exist, and every form needs its CSRF token."""

import re

import pytest
from bs4 import BeautifulSoup
from sqlalchemy import select

from portal.accounts.models import Membership
from portal.credentials.models import Credential
from portal.otp.models import BlockReason, OtpBlocked, OtpCode, OtpSite
from portal.mail import DevMail
from tests.helpers import PageClient, db_session, deliver_outbox, make_user
from tests.wellknown import TokenSite

HTMX = {"HX-Request": "true"}
PHONE = "+819012345678"


def signed_in(app, email="owner@example.com", phone=PHONE, role=None, account_of=None):
    """A person signed in; with `role`, a member of `account_of`'s account working in it."""
    user = make_user(app, email=email, phone=phone)
    client = PageClient(app.test_client(), app)
    client.login(email)
    with db_session(app) as session:
        own = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
        if role is None:
            return client, own
        session.add(Membership(account_id=account_of, user_id=user.id, role=role, created_at=app.config["CLOCK"]()))
        session.commit()
    client.post(f"/profile/account/{account_of}", {}, status=302)
    return client, account_of


def register(client, website="localhost", name="") -> int:
    response = client.post("/otp-sites", {"website": website, "display_name": name}, status=303)
    return int(re.search(r"/otp-sites/(\d+)$", response.headers["Location"]).group(1))


def text(element) -> str:
    return " ".join(element.get_text(" ").split())


def site_row(app, site_id) -> OtpSite:
    with db_session(app) as session:
        return session.get(OtpSite, site_id)


def settings_of(client, site_id) -> dict:
    """The settings form's values as the page shows them."""
    page = client.page(f"/otp-sites/{site_id}/settings")
    form = page.select_one("form.otp-settings")
    values = {field["name"]: field.get("value", "") for field in form.select("input[name]")
              if field.get("type") not in ("radio", "checkbox") and field["name"] != "csrf_token"}
    values |= {area["name"]: area.get_text() for area in form.select("textarea")}
    values |= {select_["name"]: select_.select_one("option[selected]")["value"] for select_ in form.select("select")}
    values["fallback"] = form.select_one("input[name=fallback][checked]")["value"]
    return values


# -- who may see the pages ---------------------------------------------------------------------------


def test_owners_and_developers_see_the_link_and_the_pages_and_billing_members_are_refused(app):
    owner, account_id = signed_in(app)
    assert owner.page("/dashboard").select_one("header a[href='/otp-sites']")
    site_id = register(owner, "https://shop.example.com/login", "Shop")
    developer, _ = signed_in(app, "dev@example.com", phone="+819011112222", role="developer", account_of=account_id)
    assert "Shop" in developer.text("/otp-sites")
    developer.get(f"/otp-sites/{site_id}")
    billing, _ = signed_in(app, "money@example.com", phone="+819033334444", role="billing", account_of=account_id)
    assert not billing.page("/dashboard").select_one("header a[href='/otp-sites']")
    for path in ("/otp-sites", f"/otp-sites/{site_id}", f"/otp-sites/{site_id}/settings", f"/otp-sites/{site_id}/activity"):
        billing.get(path, status=403)
    assert billing.post("/otp-sites", {"website": "other.example.com"}).status_code == 403
    assert billing.post(f"/otp-sites/{site_id}/check").status_code == 403
    assert billing.post(f"/otp-sites/{site_id}/try").status_code == 403


def test_a_signed_out_visitor_is_sent_to_the_login_page(app):
    response = PageClient(app.test_client(), app).get("/otp-sites", status=302)
    assert "/login" in response.headers["Location"]


def test_another_accounts_site_is_not_found(app):
    owner, _ = signed_in(app)
    site_id = register(owner, "shop.example.com")
    stranger, _ = signed_in(app, "other@example.com", phone="+819055556666")
    for path in (f"/otp-sites/{site_id}", f"/otp-sites/{site_id}/settings", f"/otp-sites/{site_id}/activity",
                 f"/otp-sites/{site_id}/preview?template=%7Bcode%7D"):
        stranger.get(path, status=404)
    assert stranger.post(f"/otp-sites/{site_id}/check").status_code == 404
    assert stranger.post(f"/otp-sites/{site_id}/settings", settings_of(owner, site_id)).status_code == 404
    assert stranger.post(f"/otp-sites/{site_id}/try").status_code == 404
    assert stranger.post(f"/otp-sites/{site_id}/resume").status_code == 404
    assert site_row(app, site_id).display_name == "shop.example.com"


def test_every_form_needs_its_csrf_token(app):
    owner, _ = signed_in(app)
    site_id = register(owner)
    for path, data in [("/otp-sites", {"website": "b.example.com"}), (f"/otp-sites/{site_id}/check", {}),
                       (f"/otp-sites/{site_id}/settings", settings_of(owner, site_id)),
                       (f"/otp-sites/{site_id}/try", {}), (f"/otp-sites/{site_id}/resume", {}),
                       (f"/otp-sites/{site_id}/try/verify", {"msgid": "0" * 32, "code": "123456"})]:
        assert owner.post(path, data, csrf=False).status_code == 400, path
    assert [site.domain for site in [site_row(app, site_id)]] == ["localhost"]


# -- registering -----------------------------------------------------------------------------------


def test_a_site_is_registered_from_its_address_and_a_second_one_of_the_same_domain_is_refused(app):
    owner, _ = signed_in(app)
    site_id = register(owner, "https://Shop.Example.com/login", "My shop")
    page = owner.page(f"/otp-sites/{site_id}")
    assert text(page.select_one("h1")) == "My shop"
    assert "Ownership not proven" in text(page)
    assert page.select_one("[data-testid=token-url]").get_text() == "http://shop.example.com/.well-known/chotto-verification.txt"
    assert page.select_one("[data-testid=ownership-token]").get_text() == site_row(app, site_id).ownership_token
    again = owner.post("/otp-sites", {"website": "shop.example.com"}, status=422)
    assert "A website with this domain already exists." in text(BeautifulSoup(again.get_data(as_text=True), "html.parser"))
    bad = owner.post("/otp-sites", {"website": "not a website"}, status=422)
    assert "Enter the address of a website, such as https://example.com." in bad.get_data(as_text=True)


# -- ownership ------------------------------------------------------------------------------------


def test_check_now_proves_the_site_then_says_what_went_wrong_once_the_file_is_gone(app):
    owner, _ = signed_in(app)
    site_id = register(owner)
    token = site_row(app, site_id).ownership_token
    with TokenSite(body=token + "\n") as served:
        app.config["OTP_OWNERSHIP_PORT"] = served.port
        url = f"http://localhost:{served.port}/.well-known/chotto-verification.txt"
        fragment = owner.post(f"/otp-sites/{site_id}/check", headers=HTMX, status=200).get_data(as_text=True)
        assert "<html" not in fragment
        result = text(BeautifulSoup(fragment, "html.parser").select_one("[data-testid=check-result]"))
        assert "Ownership proven" in result and url in result
        assert site_row(app, site_id).proven_at is not None
        assert "Ownership proven" in owner.text("/otp-sites")

        served.body = "somebody-else's-token"
        page = BeautifulSoup(owner.post(f"/otp-sites/{site_id}/check", status=200).get_data(as_text=True), "html.parser")
        assert "does not hold this site's token" in text(page.select_one("[data-testid=check-result]"))
        assert page.title  # without htmx: the whole page
        assert site_row(app, site_id).proven_at is None

        served.body = None
        result = owner.post(f"/otp-sites/{site_id}/check", headers=HTMX).get_data(as_text=True)
        assert "The file was not found: the site answered with HTTP status 404." in result
    result = owner.post(f"/otp-sites/{site_id}/check", headers=HTMX).get_data(as_text=True)
    assert "The site could not be reached" in result and url in result


def test_a_site_that_loses_its_proof_tells_the_owners_by_mail(app):
    owner, _ = signed_in(app)
    site_id = register(owner)
    token = site_row(app, site_id).ownership_token
    with TokenSite(body=token) as served:
        app.config["OTP_OWNERSHIP_PORT"] = served.port
        owner.post(f"/otp-sites/{site_id}/check", status=200)
        served.body = "changed"
        owner.post(f"/otp-sites/{site_id}/check", status=200)
    deliver_outbox(app)
    with db_session(app) as session:
        subjects = list(session.scalars(select(DevMail.subject).where(DevMail.recipient == "owner@example.com")))
    assert "[Chotto] The ownership of localhost is no longer proven" in subjects


# -- settings -------------------------------------------------------------------------------------


def test_the_settings_are_saved_and_shown_again(app):
    owner, _ = signed_in(app)
    site_id = register(owner)
    values = settings_of(owner, site_id) | {
        "display_name": "Shop", "template_language": "en", "template": "{site}: your code is {code} ({minutes} min)",
        "lifetime_minutes": "10", "code_length": "8", "fallback": "after_delay", "fallback_seconds": "45",
        "allowed_countries": "jp, us", "per_ip_limit": "100", "callback_url": "https://shop.example.com/otp-events"}
    response = owner.post(f"/otp-sites/{site_id}/settings", values, status=303)
    assert response.headers["Location"].endswith(f"/otp-sites/{site_id}/settings")
    site = site_row(app, site_id)
    assert (site.display_name, site.template_language, site.lifetime_minutes, site.code_length, site.fallback,
            site.fallback_seconds, site.countries, site.per_ip_limit, site.callback_url) == (
        "Shop", "en", 10, 8, "after_delay", 45, ("JP", "US"), 100, "https://shop.example.com/otp-events")
    shown = settings_of(owner, site_id)
    assert shown["template"].strip() == "{site}: your code is {code} ({minutes} min)"
    assert shown["allowed_countries"] == "JP, US" and shown["fallback"] == "after_delay"


def test_every_wrong_setting_is_named_beside_its_field(app):
    owner, _ = signed_in(app)
    site_id = register(owner)
    values = settings_of(owner, site_id) | {"template": "Hello from {site}", "lifetime_minutes": "31",
                                            "max_attempts": "0", "code_length": "nine", "per_number_limit": "6"}
    page = BeautifulSoup(owner.post(f"/otp-sites/{site_id}/settings", values, status=422).get_data(as_text=True),
                         "html.parser")
    errors = {small["id"].removesuffix("-error"): text(small) for small in page.select("small.field-error")}
    assert errors["template"] == "The template must contain {code}."
    for name in ("lifetime_minutes", "max_attempts", "code_length", "per_number_limit"):
        assert errors[name] == "This value is outside the allowed range.", name
    assert page.select_one("#lifetime_minutes")["aria-invalid"] == "true"
    assert site_row(app, site_id).lifetime_minutes == 5  # nothing saved

    too_long = settings_of(owner, site_id) | {"template_language": "ja", "template": "認証コード{code}" + "あ" * 70}
    page = BeautifulSoup(owner.post(f"/otp-sites/{site_id}/settings", too_long, status=422).get_data(as_text=True),
                         "html.parser")
    assert "must fit in one SMS segment" in text(page.select_one("#template-error"))
    bad_callback = settings_of(owner, site_id) | {"callback_url": "ftp://example.com/x"}
    assert "Enter an http:// or https:// address." in owner.post(
        f"/otp-sites/{site_id}/settings", bad_callback, status=422).get_data(as_text=True)


def test_the_preview_fills_the_template_in_and_counts_its_segments(app):
    owner, _ = signed_in(app)
    site_id = register(owner, name="Shop")
    response = owner.get(f"/otp-sites/{site_id}/preview", headers=HTMX, query_string={
        "template": "{site}: {code} ({minutes} min)", "display_name": "Shop", "code_length": "4",
        "lifetime_minutes": "7"})
    preview = BeautifulSoup(response.get_data(as_text=True), "html.parser")
    assert "<html" not in response.get_data(as_text=True)
    assert text(preview.select_one("[data-testid=preview-text]")) == "Shop: 1234 (7 min)"
    assert text(preview.select_one("[data-testid=preview-count]")) == "18 characters, 1 segment (GSM-7)"
    long = owner.page(f"/otp-sites/{site_id}/preview", headers=HTMX, query_string={
        "template": "{code} " + "長" * 80, "display_name": "Shop", "code_length": "6", "lifetime_minutes": "5"})
    assert "2 segments (UCS-2)" in text(long.select_one("[data-testid=preview-count]"))
    assert "must fit in one SMS segment" in text(long.select_one("[data-testid=preview-problem]"))


# -- Try it, the log and the statistics --------------------------------------------------------------


def test_try_it_sends_a_test_code_to_ones_own_number_and_verifies_it(app):
    owner, account_id = signed_in(app)
    site_id = register(owner, name="Shop")
    panel = BeautifulSoup(owner.post(f"/otp-sites/{site_id}/try", headers=HTMX, status=200).get_data(as_text=True),
                          "html.parser").select_one("[data-testid=try-it]")
    with db_session(app) as session:
        [code] = session.scalars(select(OtpCode)).all()
        credential = session.get(Credential, code.credential_id)
    assert (code.mode, code.phone_number, credential.mode) == ("test", PHONE, "test")
    assert "otp" in credential.scope_list and "sms" in credential.scope_list
    assert "every 1s" in panel["hx-trigger"] and "•••••••••5678" in text(panel)
    assert PHONE not in text(panel)

    deliver_outbox(app)
    panel = owner.page(f"/otp-sites/{site_id}/try/{code.msgid}", headers=HTMX).select_one("[data-testid=try-it]")
    assert not panel.has_attr("hx-trigger")
    sms = text(panel.select_one("[data-testid=try-sms]"))
    typed = re.search(r"\d{6}", sms).group(0)
    wrong = "000000" if typed != "000000" else "111111"
    refused = owner.post(f"/otp-sites/{site_id}/try/verify", {"msgid": code.msgid, "code": wrong}, headers=HTMX)
    assert "The code is wrong. Attempts left: 4." in text(BeautifulSoup(refused.get_data(as_text=True), "html.parser"))
    done = owner.post(f"/otp-sites/{site_id}/try/verify", {"msgid": code.msgid, "code": typed}, headers=HTMX)
    assert "Verified." in text(BeautifulSoup(done.get_data(as_text=True), "html.parser"))

    activity = owner.page(f"/otp-sites/{site_id}/activity?mode=test")
    day = [text(cell) for cell in activity.select("[data-testid=otp-days] tbody tr")[0].select("td")]
    assert day[1:] == ["1", "1", "1", "100%", "0", "0", "¥0"]
    assert "Verified" in text(activity.select_one("[data-testid=otp-log]"))
    assert PHONE not in str(activity)
    assert "No requests in the last 30 days." in owner.text(f"/otp-sites/{site_id}/activity")  # live is apart


def test_try_it_follows_only_the_sites_own_test_codes(app):
    owner, _ = signed_in(app)
    first, second = register(owner, "a.example.com"), register(owner, "b.example.com")
    owner.post(f"/otp-sites/{first}/try", headers=HTMX, status=200)
    with db_session(app) as session:
        [code] = session.scalars(select(OtpCode)).all()
    owner.get(f"/otp-sites/{first}/try/{code.msgid}", headers=HTMX, status=200)
    owner.get(f"/otp-sites/{second}/try/{code.msgid}", headers=HTMX, status=404)


def test_try_it_says_when_the_number_must_wait(app):
    owner, _ = signed_in(app)
    site_id = register(owner)
    owner.post(f"/otp-sites/{site_id}/try", headers=HTMX, status=200)
    again = owner.post(f"/otp-sites/{site_id}/try", headers=HTMX, status=200).get_data(as_text=True)
    assert "A code was sent to this number a moment ago." in again


def test_blocked_requests_are_listed_with_their_reason_and_an_owner_lifts_a_pause(app, clock):
    owner, account_id = signed_in(app)
    site_id = register(owner)
    with db_session(app) as session:
        site = session.get(OtpSite, site_id)
        site.paused_at = clock()
        session.add(OtpBlocked(site_id=site_id, account_id=account_id, mode="live", phone_number="+819087654321",
                               reason=BlockReason.PAUSED, created_at=clock()))
        session.add(OtpBlocked(site_id=site_id, account_id=account_id, mode="live", phone_number="+14155550123",
                               reason=BlockReason.COUNTRY, created_at=clock()))
        session.commit()
    developer, _ = signed_in(app, "dev@example.com", phone="+819011112222", role="developer", account_of=account_id)
    page = developer.page(f"/otp-sites/{site_id}/activity")
    blocked = text(page.select_one("[data-testid=otp-blocked]"))
    assert "This site does not send codes to that country." in blocked and "•••••••4321" in blocked
    assert "+819087654321" not in str(page)
    assert "Only an owner of the account can lift the pause." in text(page.select_one("[data-testid=paused]"))
    assert developer.post(f"/otp-sites/{site_id}/resume").status_code == 403

    with db_session(app) as session:
        country, paused = (row.id for row in session.scalars(select(OtpBlocked).where(
            OtpBlocked.reason.in_([BlockReason.COUNTRY, BlockReason.PAUSED])).order_by(OtpBlocked.reason)))
    page = owner.page(f"/otp-sites/{site_id}/activity")
    assert len(page.select("[data-testid=otp-blocked] form")) == 1  # a country block is lifted by the settings
    refused = owner.post(f"/otp-sites/{site_id}/blocked/{country}/lift", status=303)
    assert "change the allowed countries" in owner.text(refused.headers["Location"])
    assert developer.post(f"/otp-sites/{site_id}/blocked/{paused}/lift").status_code == 403
    stranger, _ = signed_in(app, "other@example.com", phone="+819055556666")
    assert stranger.post(f"/otp-sites/{site_id}/blocked/{paused}/lift").status_code == 404

    response = owner.post(f"/otp-sites/{site_id}/resume", status=303)
    assert response.headers["Location"].endswith(f"/otp-sites/{site_id}/activity")
    assert site_row(app, site_id).paused_at is None
    page = owner.page(f"/otp-sites/{site_id}/activity")
    assert not page.select_one("[data-testid=paused]") and "Lifted" in text(page.select_one("[data-testid=otp-blocked]"))


def test_an_owner_lifts_a_number_limit_block(app, clock):
    owner, account_id = signed_in(app)
    site_id = register(owner)
    with db_session(app) as session:
        block = OtpBlocked(site_id=site_id, account_id=account_id, mode="live", phone_number="+819087654321",
                           reason=BlockReason.NUMBER_LIMIT, created_at=clock())
        session.add(block)
        session.commit()
        block_id = block.id
    response = owner.post(f"/otp-sites/{site_id}/blocked/{block_id}/lift", status=303)
    page = owner.page(response.headers["Location"])
    assert "The block is lifted" in text(page.select_one(".flash-success"))
    assert "Lifted" in text(page.select_one("[data-testid=otp-blocked]"))
    assert not page.select("[data-testid=otp-blocked] form")


@pytest.mark.parametrize("path, shown", [("/otp-sites", "ウェブサイトを登録する"), ("/otp-sites/{id}", "今すぐ確認する"),
                                         ("/otp-sites/{id}/settings", "メッセージのテンプレート"),
                                         ("/otp-sites/{id}/activity", "ブロックされたリクエスト")])
def test_the_pages_are_in_japanese_too(app, path, shown):
    owner, _ = signed_in(app)
    site_id = register(owner)
    owner.post("/language/ja", {"next": "/otp-sites"})
    page = owner.text(path.format(id=site_id))
    assert shown in page and "OTPサイト" in page
