"""Buying credit in a real browser with the sandbox gateway: billing details, the final
confirmation, the sandbox checkout, a status panel that updates itself, the dashboard, and
the receipt PDF read back."""

import io

import pypdfium2
import pytest
from playwright.sync_api import expect
from pypdf import PdfReader

from tests.e2e.conftest import SCREENSHOTS
from tests.helpers import PASSWORD, make_user


@pytest.mark.pdf
def test_buying_1000_yen_with_the_sandbox_credits_the_account_and_issues_a_receipt(
    browser, live_server, screenshot, console_errors
):
    make_user(live_server.app, "owner@example.com", name="Olivia Owner", phone="+819012345678")
    context = browser.new_context(locale="en-GB", base_url=live_server.url, accept_downloads=True)
    page = console_errors(context.new_page())
    page.goto("/login")
    page.get_by_label("E-mail address").fill("owner@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("available")).to_have_text("¥50")

    page.get_by_role("button", name="Buy credit").click()
    screenshot(page, "buy-credit")
    page.get_by_role("button", name="¥1,000").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Billing details")
    page.get_by_label("Legal name").fill("Example KK")
    page.get_by_label("Postal code").fill("100-0001")
    page.get_by_label("Address").fill("1-1 Chiyoda, Chiyoda-ku, Tokyo")
    page.get_by_label("Billing e-mail").fill("finance@example.com")
    screenshot(page, "billing-profile")
    page.get_by_role("button", name="Save billing details").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm your purchase")
    expect(page.get_by_test_id("credit")).to_have_text("¥1,000")
    expect(page.get_by_test_id("tax")).to_have_text("¥100")
    expect(page.get_by_test_id("total")).to_have_text("¥1,100")
    expect(page.locator("main")).to_contain_text("Valid for 90 days from payment.")
    screenshot(page, "purchase-confirmation")
    page.get_by_role("button", name="Pay ¥1,100").click()

    expect(page.locator(".sandbox-banner")).to_contain_text("no real money")
    screenshot(page, "sandbox-checkout")
    checkout_url = page.url
    page.get_by_role("link", name="Back to the purchase").click()
    expect(page.get_by_test_id("status")).to_have_text("Waiting for payment")
    screenshot(page, "purchase-waiting")

    payer = console_errors(context.new_page())  # the payer finishes in another tab
    payer.goto(checkout_url)
    payer.get_by_role("button", name="Pay by card").click()
    expect(payer.get_by_test_id("status")).to_have_text("Credited")

    expect(page.get_by_test_id("status")).to_have_text("Credited", timeout=10_000)  # the panel polled itself
    screenshot(page, "purchase-credited")
    page.get_by_role("button", name="Go to the dashboard").click()
    expect(page.get_by_test_id("available")).to_have_text("¥1,050")

    page.get_by_role("link", name="Credit and billing").click()
    page.get_by_role("link", name="Receipts and invoices").click()
    screenshot(page, "invoices")
    with page.expect_download() as download_info:
        page.get_by_test_id("download-INV-00000001").click()
    pdf = open(download_info.value.path(), "rb").read()
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)
    for expected in ("T7123456789012", "¥1,000", "10%", "¥100", "¥1,100", "Example KK"):
        assert expected in text, expected
    rendered = pypdfium2.PdfDocument(pdf)[0].render(scale=1.5).to_pil()
    rendered.save(SCREENSHOTS / "receipt-INV-00000001.png")

    page.goto("/credit/buy/confirm?amount=3000")
    page.get_by_role("button", name="日本語").click()  # the footer's language switch
    expect(page.get_by_role("heading", level=1)).to_have_text("ご購入内容の確認")
    expect(page.get_by_test_id("total")).to_have_text("¥3,300")
    expect(page.locator("main")).to_contain_text("お支払いから90日間有効です。")
    screenshot(page, "purchase-confirmation-ja")
    page.goto("/credentials")
    screenshot(page, "credentials-ja")


def test_the_back_button_after_paying_shows_the_purchase_and_never_a_second_checkout(
    browser, live_server, console_errors
):
    from sqlalchemy import func, select

    from portal.billing.models import SandboxPayment
    from tests.helpers import db_session

    make_user(live_server.app, "owner@example.com", name="Olivia Owner")
    context = browser.new_context(locale="en-GB", base_url=live_server.url)
    page = console_errors(context.new_page())
    page.goto("/login")
    page.get_by_label("E-mail address").fill("owner@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto("/billing/profile")
    page.get_by_label("Legal name").fill("Example KK")
    page.get_by_label("Postal code").fill("100-0001")
    page.get_by_label("Address").fill("1-1 Chiyoda, Chiyoda-ku, Tokyo")
    page.get_by_label("Billing e-mail").fill("finance@example.com")
    page.get_by_role("button", name="Save billing details").click()
    page.get_by_role("button", name="¥1,000").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm your purchase")
    page.get_by_role("button", name="Pay ¥1,100").click()
    page.get_by_role("button", name="Pay by card").click()
    expect(page.get_by_test_id("status")).to_have_text("Credited")

    page.go_back()  # the sandbox checkout
    page.go_back()  # the confirmation screen, fetched again (no-store)
    expect(page.locator("main")).to_contain_text("You already confirmed this purchase, so no second payment was started.")
    expect(page.get_by_test_id("status")).to_have_text("Credited")
    with db_session(live_server.app) as session:
        assert session.scalar(select(func.count()).select_from(SandboxPayment)) == 1
    context.close()
