"""Issue 13's browser test: an owner sets a ¥40 low-balance threshold, the account's own code
sends SMS through the customer API until the ¥50 trial credit falls below it, and the portal's
worker (running beside the live server, as `portal worker` does) delivers the notice: it appears
in the development mailbox and in the alert history. Then a webhook on a local server gets a
signed test, whose result appears in place. Screenshots of the settings, the dashboard
and the history in both languages, at phone width (390 px) and on a desktop."""

import base64
import json
import re
import urllib.request

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from portal.accounts.models import Membership
from tests.api.conftest import new_key
from tests.helpers import PASSWORD, db_session, make_user
from tests.hooks import HookServer, signed_by

PHONE_NUMBER = "+819012345678"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
TEXT = {
    "en": {"save": "Save the thresholds", "saved": "The thresholds are saved.", "below": "Your balance is below ¥40.",
           "low": "Low balance", "email": "Mail", "delivered": "Delivered", "channels": "Save the channels",
           "test": "Send a test alert"},
    "ja": {"save": "しきい値を保存する", "saved": "しきい値を保存しました。", "below": "残高が¥40を下回っています。",
           "low": "残高不足", "email": "メール", "delivered": "配信済み", "channels": "通知方法を保存する",
           "test": "テスト用のアラートを送る"},
}


def send_sms(url: str, key) -> int:
    body = json.dumps({"recipient": PHONE_NUMBER, "sender": "Chotto", "message": "Your order has shipped"}).encode()
    auth = base64.b64encode(f"{key.sid}:{key.token}".encode()).decode()
    request = urllib.request.Request(f"{url}/sms/messages/", data=body, method="POST", headers={
        "Authorization": f"Basic {auth}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.status


def shoot(page, screenshot, name: str) -> None:
    """At phone and desktop width; the page is left at desktop width."""
    for size in (PHONE, DESKTOP):
        page.set_viewport_size(size)
        screenshot(page, f"{name}-{size['width']}")


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_a_40_yen_threshold_crossed_by_api_sms_reaches_the_mailbox_and_the_history(
        browser, live_server, screenshot, console_errors, lang):
    t = TEXT[lang]
    app = live_server.app
    user = make_user(app, "owner@example.com", name="Olivia Owner", phone=PHONE_NUMBER, language=lang)
    with db_session(app) as session:
        account_id = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
    key = new_key(app, account_id, user.id)  # a live credential: the trial credit pays, to the own number only

    context = browser.new_context(locale="ja-JP" if lang == "ja" else "en-GB", base_url=live_server.url,
                                  viewport=DESKTOP)
    page = console_errors(context.new_page())
    page.goto("/login")
    page.locator("input[name=email]").fill("owner@example.com")
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url("**/dashboard")
    expect(page.get_by_test_id("available")).to_have_text("¥50")

    page.locator("header .nav-links a[href='/credit/purchases']").click()
    page.locator("nav.subnav a[href='/alerts']").click()
    page.locator("input[name=threshold_1]").fill("40")
    page.get_by_role("button", name=t["save"]).click()
    expect(page.locator(".flash-success")).to_have_text(t["saved"])
    expect(page.locator("input[name=threshold_1]")).to_have_value("40")
    shoot(page, screenshot, f"alerts-settings-{lang}")

    for _ in range(2):  # ¥10 each: ¥50 → ¥40 (still at the threshold) → ¥30 (below it)
        assert send_sms(live_server.url, key) == 201

    page.goto("/dashboard")
    expect(page.get_by_test_id("available")).to_have_text("¥30")
    expect(page.get_by_test_id("alert-line")).to_contain_text(t["below"])
    shoot(page, screenshot, f"alerts-dashboard-{lang}")

    mailbox = console_errors(context.new_page())
    mailbox.goto("/dev/mailbox/")
    mail = mailbox.get_by_role("link", name=re.compile("¥40"))
    for _ in range(50):  # the worker thread delivers within a second or two
        if mail.count():
            break
        mailbox.wait_for_timeout(200)
        mailbox.reload()
    expect(mail).to_have_count(1)
    expect(mailbox.locator("tbody tr").filter(has=mail)).to_contain_text("owner@example.com")
    mail.click()
    expect(mailbox.locator("pre.mail-text")).to_contain_text("¥30")
    shoot(mailbox, screenshot, f"alerts-mail-{lang}")

    page.goto("/alerts/history")
    row = page.locator("table.alert-history tbody tr").first
    expect(row.locator("td[data-label]").nth(1)).to_have_text(t["low"])
    expect(row.locator("td[data-label]").nth(2)).to_have_text("owner@example.com")
    expect(row.locator("td[data-label]").nth(3)).to_have_text(t["email"])
    expect(row.locator("td[data-label]").nth(4)).to_contain_text(t["delivered"])
    expect(page.locator("table.alert-history tbody tr")).to_have_count(1)  # one crossing, one notice
    shoot(page, screenshot, f"alerts-history-{lang}")

    with HookServer() as hook:  # "send a test" to a webhook: the result appears in place
        page.goto("/alerts")
        page.locator("input[name=webhook_url]").fill(f"http://127.0.0.1:{hook.port}/chotto-alerts")
        page.get_by_role("button", name=t["channels"]).click()
        secret = page.get_by_test_id("webhook-secret").locator("code").inner_text()
        page.get_by_role("button", name=t["test"]).click()
        expect(page.get_by_test_id("test-result")).to_contain_text(t["delivered"], timeout=15_000)
        assert len(hook.received) == 1 and signed_by(hook.received[0], secret)
    page.get_by_test_id("test-result").scroll_into_view_if_needed()
    shoot(page, screenshot, f"alerts-webhook-test-{lang}")
    context.close()
