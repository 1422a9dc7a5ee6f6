"""A developer creates a test credential in the browser, copies the token shown once, and
the API answers with it; the list then shows only the token's prefix and last four."""

import requests
from playwright.sync_api import expect

from tests.helpers import PASSWORD, make_user


def test_create_a_test_credential_copy_the_token_and_call_the_api(browser, live_server, screenshot, console_errors):
    make_user(live_server.app, "dev@example.com", name="Dana Developer", phone="+819012345678")
    context = browser.new_context(locale="en-GB", base_url=live_server.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = console_errors(context.new_page())
    page.goto("/login")
    page.get_by_label("E-mail address").fill("dev@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="API credentials").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("API credentials")
    page.get_by_label("Name").fill("staging server")
    screenshot(page, "credentials-new")
    page.get_by_role("button", name="Create credential").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("staging server is ready")
    token = page.get_by_test_id("token").inner_text()
    sid = page.get_by_test_id("sid").inner_text()
    assert token.startswith("chotto_test_")
    page.locator("button[data-copy='#token']").click()
    expect(page.locator("button[data-copy='#token']")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == token
    screenshot(page, "credentials-token-shown-once")

    answer = requests.post(f"{live_server.url}/sms/messages/", auth=(sid, token),
                           data={"recipient": "+819012345678", "sender": "Chotto", "message": "Hello from the test"})
    assert answer.status_code == 201, answer.text

    page.get_by_role("button", name="Done: back to credentials").click()
    row = page.get_by_test_id(f"credential-{sid}")
    expect(row).to_contain_text(f"chotto_test_…{token[-4:]}")
    assert token not in page.content()
    page.get_by_role("link", name="Test inbox").click()
    expect(page.locator("#inbox-messages")).to_contain_text("Hello from the test", timeout=10_000)
    screenshot(page, "test-inbox-api-message")
    page.get_by_role("link", name="API credentials").click()
    screenshot(page, "credentials-list")

    page.get_by_text("Manage").click()
    page.get_by_text("Revoke…").click()  # a second step: nothing is revoked by a single click
    page.get_by_role("button", name="Revoke now").click()
    expect(page.locator(".flash-success")).to_contain_text("staging server is revoked")
    assert requests.get(f"{live_server.url}/you/credits/", auth=(sid, token)).status_code == 401
