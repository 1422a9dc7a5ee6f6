"""The pages issue 9 added or changed, looked at in a real browser at phone and desktop width in
both languages: the callback signing secret shown on demand, the member-removal confirmation,
the page a visitor sees while the database is down, and a sign-up link opened on another device."""

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from portal import db
from portal.accounts.models import Membership
from portal.clock import system_now
from portal.credentials import service as credentials
from portal.credentials.models import CallbackSecret
from tests.e2e.test_team import width_below_header
from tests.helpers import PASSWORD, db_session, make_user

TEXT = {
    "en": {"locale": "en-GB", "sign_in": "Sign in", "show": "Show the callback signing secret",
           "finish": "Finish creating my login", "welcome": "Verify your mobile number",
           "remove": "Remove Daisuke Developer",
           "unavailable": "The service is briefly unavailable"},
    "ja": {"locale": "ja-JP", "sign_in": "ログイン", "show": "コールバック署名用シークレットを表示",
           "finish": "作成を完了する", "welcome": "携帯電話番号を確認する",
           "remove": "Daisuke Developerさんを削除", "unavailable": "ただいまサービスを一時的にご利用いただけません"},
}
WIDTHS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 800}}


def _owner_with_a_developer(app, language):
    owner = make_user(app, "owner@example.com", name="Olivia Owner", language=language)
    developer = make_user(app, "dev@example.com", name="Daisuke Developer", language=language)
    with db_session(app) as session:
        account_id = session.scalars(select(Membership.account_id).where(Membership.user_id == owner.id)).one()
        session.add(Membership(account_id=account_id, user_id=developer.id, role="developer", created_at=system_now()))
        session.commit()
        credential, _ = credentials.create(session=session, account_id=account_id, user_id=developer.id,
                                           name="nightly-export", mode="live", scopes=["sms", "read"], networks=[],
                                           monthly_cap=None, now=system_now())
    return credential.id


def _signed_in(browser, live_server, console_errors, language, viewport):
    context = browser.new_context(locale=TEXT[language]["locale"], base_url=live_server.url, viewport=viewport)
    page = console_errors(context.new_page())
    page.goto("/login")
    page.locator("input[name=email]").fill("owner@example.com")
    page.locator("input[name=password]").fill(PASSWORD)
    page.get_by_role("button", name=TEXT[language]["sign_in"]).click()
    page.wait_for_url("**/dashboard")
    return context, page


@pytest.mark.parametrize("language", ["en", "ja"])
def test_the_callback_secret_the_removal_step_and_the_outage_page_read_well_on_a_phone_and_a_desktop(
        browser, live_server, screenshot, console_errors, language):
    app = live_server.app
    credential_id = _owner_with_a_developer(app, language)
    with db_session(app) as session:
        secret = session.scalars(select(CallbackSecret.secret).where(CallbackSecret.credential_id == credential_id)).one()
    words = TEXT[language]
    for width, viewport in WIDTHS.items():
        context, page = _signed_in(browser, live_server, console_errors, language, viewport)
        page.goto("/credentials")
        assert secret not in page.content()
        page.locator("main details summary").first.click()
        page.get_by_role("button", name=words["show"]).first.click()
        expect(page.get_by_test_id("callback-secret")).to_have_text(secret)
        assert width_below_header(page) <= viewport["width"], "the secret page scrolls sideways"
        screenshot(page, f"callback-secret-{language}-{width}")

        page.goto("/team")
        page.get_by_role("button", name=words["remove"]).click()
        expect(page.get_by_role("checkbox")).to_have_count(1)
        assert width_below_header(page) <= viewport["width"], "the removal step scrolls sideways"
        screenshot(page, f"team-remove-member-{language}-{width}")
        if width == "phone":
            _while_the_database_is_down(app, context, words, language, screenshot)
        context.close()


def _while_the_database_is_down(app, context, words, language, screenshot):
    """A page of its own: the browser reports the 503 itself as a console error."""
    page = context.new_page()
    healthy = app.extensions["portal.engine"]
    app.extensions["portal.engine"] = broken = db.make_engine("sqlite:////nonexistent-folder/portal.sqlite3")
    try:
        response = page.goto("/dashboard")
        assert response.status == 503 and int(response.headers["retry-after"]) >= 1
        expect(page.get_by_role("heading", level=1)).to_contain_text(words["unavailable"])
        assert width_below_header(page) <= 390
        screenshot(page, f"database-unavailable-{language}-phone")
    finally:
        app.extensions["portal.engine"] = healthy
        broken.dispose()


@pytest.mark.parametrize("language", ["en", "ja"])
def test_a_sign_up_link_opened_on_a_phone_asks_for_the_password_chosen_at_sign_up(
        browser, live_server, screenshot, console_errors, language):
    import re

    from tests.helpers import PASSWORD, PageClient

    words = TEXT[language]
    laptop = PageClient(live_server.app.test_client(), live_server.app)
    laptop.post("/signup", {"name": "Hana Sato", "email": "hana@example.com", "password": PASSWORD,
                            "account_kind": "individual", "account_name": "", "tax_residency": "JP",
                            "language": language}, status=302)
    link = re.search(r"/verify-email/\S+", _first_mail(live_server.app, "hana@example.com").text_body).group(0)
    context = browser.new_context(locale=words["locale"], base_url=live_server.url, viewport=WIDTHS["phone"])
    phone = console_errors(context.new_page())
    phone.goto(link)
    assert width_below_header(phone) <= 390
    screenshot(phone, f"signup-link-other-device-{language}-phone")
    phone.locator("input[name=password]").fill(PASSWORD)
    phone.get_by_role("button", name=words["finish"]).click()
    expect(phone.get_by_role("heading", level=1)).to_have_text(words["welcome"])
    context.close()


def _first_mail(app, address):
    """The live server's own worker may be the one delivering it: wait for it, boundedly."""
    import time

    from tests.helpers import mails_to

    for _ in range(100):
        if mails := mails_to(app, address):
            return mails[0]
        time.sleep(0.1)
    raise AssertionError(f"no mail reached {address}")
