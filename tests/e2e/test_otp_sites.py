"""An owner registers a website, proves its ownership against a local web server, changes the
code lifetime and the message template (the preview follows as they type), then uses "Try it":
the code lands in the test inbox, is typed back and verified, and the statistics count it.
Screenshots of every OTP page at 390 and 1280 px wide, none wider than the window."""

import re

from playwright.sync_api import expect

from tests.helpers import PASSWORD, make_user
from tests.wellknown import TokenSite

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


def shoot(page, screenshot, name: str) -> None:
    """At phone and desktop width, checking that nothing overflows the phone's width."""
    for size in (PHONE, DESKTOP):
        page.set_viewport_size(size)
        page.wait_for_function("width => window.innerWidth === width", arg=size["width"])  # resized, laid out anew
        if size is PHONE:
            width = page.evaluate("document.documentElement.scrollWidth")
            wide = page.evaluate("""() => [...document.querySelectorAll('body *')]
                .filter(e => e.getBoundingClientRect().right > innerWidth + 1)
                .map(e => e.tagName + '.' + e.className + '#' + e.id).slice(-5)""")
            assert width <= PHONE["width"], f"{name} is {width} px wide at 390 px: {wide}"
        screenshot(page, f"{name}-{size['width']}")


def test_register_prove_configure_and_try_an_otp_site(browser, live_server, screenshot, console_errors):
    make_user(live_server.app, "owner@example.com", name="Owen Owner", phone="+819012345678")
    context = browser.new_context(locale="en-GB", base_url=live_server.url, viewport=DESKTOP)
    page = console_errors(context.new_page())
    page.goto("/login")
    page.get_by_label("E-mail address").fill("owner@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    page.locator("header").get_by_role("link", name="OTP sites").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("OTP sites")
    page.get_by_label("Website").fill("http://localhost/login")
    page.get_by_label("Display name (optional)").fill("Shop")
    page.get_by_role("button", name="Register the website").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Shop")
    expect(page.locator(".status-unproven")).to_be_visible()

    with TokenSite() as served:
        live_server.app.config["OTP_OWNERSHIP_PORT"] = served.port
        page.reload()
        expect(page.get_by_test_id("token-url")).to_have_text(
            f"http://localhost:{served.port}/.well-known/chotto-verification.txt")
        page.get_by_role("button", name="Check now").click()
        expect(page.get_by_test_id("check-result")).to_contain_text("The file was not found")
        served.body = page.get_by_test_id("ownership-token").inner_text()
        page.get_by_role("button", name="Check now").click()
        expect(page.get_by_test_id("check-result")).to_contain_text("Ownership proven")
        expect(page.get_by_test_id("check-result")).to_contain_text(f"localhost:{served.port}")
    page.reload()
    expect(page.locator("hgroup .status-proven")).to_be_visible()

    page.get_by_role("link", name="Settings").click()
    page.wait_for_load_state()  # htmx binds the live preview on DOMContentLoaded: typing before that is not sent
    page.get_by_label("Message language").select_option("en")
    page.get_by_label("Code lifetime").fill("10")
    page.get_by_label("Message template").fill("{site}: your code is {code}. Valid for {minutes} minutes.")
    expect(page.get_by_test_id("preview-text")).to_have_text("Shop: your code is 123456. Valid for 10 minutes.")
    expect(page.get_by_test_id("preview-count")).to_contain_text("1 segment")
    shoot(page, screenshot, "otp-settings")
    page.get_by_role("button", name="Save the settings").click()
    expect(page.locator(".flash-success")).to_contain_text("The settings of Shop are saved")
    expect(page.get_by_label("Code lifetime")).to_have_value("10")

    page.get_by_role("link", name="Ownership and Try it").click()
    page.get_by_role("button", name="Send a code to 090-1234-5678").click()
    panel = page.get_by_test_id("try-it")
    expect(panel).to_contain_text("Code requested for •••••••••5678")
    expect(panel).to_contain_text("The SMS arrived in the test inbox.", timeout=15_000)

    inbox = console_errors(context.new_page())
    inbox.goto("/test-inbox")
    sms = inbox.locator("#inbox-messages .message-body").first
    expect(sms).to_contain_text("Shop: your code is", timeout=15_000)
    assert "Valid for 10 minutes." in sms.inner_text()
    code = re.search(r"\b(\d{6})\b", sms.inner_text()).group(1)

    page.get_by_label("The code from the SMS").fill(code)
    page.get_by_role("button", name="Verify the code").click()
    expect(page.get_by_test_id("try-verified")).to_contain_text("Verified.")
    shoot(page, screenshot, "otp-site-try-it")

    page.get_by_role("link", name="Log and statistics").click()
    page.get_by_role("link", name="Test", exact=True).click()
    day = page.get_by_test_id("otp-days").locator("tbody tr").first.locator("td")
    expect(day.nth(1)).to_have_text("1")  # requests
    expect(day.nth(2)).to_have_text("1")  # delivered
    expect(day.nth(3)).to_have_text("1")  # verified
    expect(day.nth(4)).to_have_text("100%")
    expect(page.get_by_test_id("otp-log")).to_contain_text("Verified")
    shoot(page, screenshot, "otp-site-activity")

    page.locator("header").get_by_role("link", name="OTP sites").click()
    expect(page.get_by_test_id("site-localhost")).to_contain_text("Ownership proven")
    shoot(page, screenshot, "otp-sites")
    context.close()
