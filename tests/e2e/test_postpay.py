"""Issue 15's browser test: a company's owner applies for invoice billing in the portal, the
operator approves it by the command, the account's own code sends beyond its prepaid credit
through the customer API (the line pays the rest), the month closes (the command, with the
portal's clock past midnight Japan time on the 1st), and the invoice appears beside the receipts
and downloads as a PDF. Screenshots in both languages at phone width (390 px) and on a desktop."""

import base64
import json
import threading
import urllib.request
from datetime import datetime

import pytest
from playwright.sync_api import expect
from werkzeug.serving import make_server

from portal.clock import JST, FrozenClock
from tests.conftest import START, make_app
from tests.e2e.conftest import LiveServer
from tests.api.conftest import fund, new_key
from tests.helpers import PASSWORD
from tests.postpay.helpers import cli, company

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
EMAIL = "owner@kaisha.example"
TEXT = {
    "en": {"apply": "Send the application", "reviewed": "Your application is being reviewed.", "unpaid": "Unpaid"},
    "ja": {"apply": "申請する", "reviewed": "申請を審査しています。", "unpaid": "未払い"},
}


class ClockedServer(LiveServer):
    """The live portal with a clock the test moves (the month must end for it to close)."""

    def __init__(self, database_url: str, clock: FrozenClock):
        holder = {}
        self.server = make_server("127.0.0.1", 0, lambda environ, start: holder["app"](environ, start), threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.app = holder["app"] = make_app(database_url, BASE_URL=self.url, ENV="development", CLOCK=clock)
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.server.serve_forever, daemon=True),
                        threading.Thread(target=self._work, daemon=True)]


def send_sms(url: str, key, status=201) -> int:
    body = json.dumps({"recipient": "+818012345678", "sender": "Kaisha", "message": "Your order has shipped"}).encode()
    auth = base64.b64encode(f"{key.sid}:{key.token}".encode()).decode()
    request = urllib.request.Request(f"{url}/sms/messages/", data=body, method="POST", headers={
        "Authorization": f"Basic {auth}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as refused:
        return refused.code


def shoot(page, screenshot, name: str) -> None:
    for size in (PHONE, DESKTOP):
        page.set_viewport_size(size)
        screenshot(page, f"{name}-{size['width']}")


def sign_in(page):
    page.goto("/login")
    page.locator("input[name=email]").fill(EMAIL)
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url("**/dashboard")


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_apply_approve_send_beyond_prepaid_close_the_month_and_download_the_invoice(
        browser, database_url, screenshot, console_errors, lang, tmp_path):
    t = TEXT[lang]
    clock = FrozenClock(START)
    with ClockedServer(database_url, clock) as server:
        app = server.app
        user, account_id = company(app, language=lang)
        fund(app, account_id, 20, ref="prepaid")
        context = browser.new_context(locale="ja-JP" if lang == "ja" else "en-GB", base_url=server.url,
                                      viewport=DESKTOP, accept_downloads=True)
        page = console_errors(context.new_page())
        sign_in(page)
        page.goto("/billing/invoice-billing")
        shoot(page, screenshot, f"postpay-apply-{lang}")
        page.locator("input[name=legal_name]").fill("株式会社カイシャ" if lang == "ja" else "Kaisha KK")
        page.locator("input[name=address]").fill("東京都千代田区丸の内1-1-1")
        page.locator("input[name=contact_name]").fill("経理 花子" if lang == "ja" else "Hanako Keiri")
        page.locator("input[name=contact_email]").fill("keiri@kaisha.example")
        page.locator("input[name=expected_monthly_yen]").fill("50,000")
        page.get_by_role("button", name=t["apply"]).click()
        expect(page.get_by_test_id("applied")).to_contain_text(t["reviewed"])
        shoot(page, screenshot, f"postpay-applied-{lang}")

        approved = cli(app, "postpay", "approve", EMAIL, "--limit", 1000, "--terms", "K-2026-015")
        assert approved.exit_code == 0, approved.output
        key = new_key(app, account_id, user.id)
        for _ in range(5):  # ¥10 each: ¥20 of prepaid credit, then ¥30 on the line
            assert send_sms(server.url, key) == 201
        page.goto("/billing/invoice-billing")
        expect(page.get_by_test_id("line-used")).to_have_text("¥30")
        expect(page.get_by_test_id("line-available")).to_have_text("¥970")
        shoot(page, screenshot, f"postpay-approved-{lang}")
        page.goto("/dashboard")
        expect(page.get_by_test_id("available")).to_have_text("¥970")
        shoot(page, screenshot, f"postpay-dashboard-{lang}")

        clock.at = datetime(2026, 12, 1, 0, 10, tzinfo=JST)  # after midnight Japan time on the 1st
        closed = cli(app, "postpay", "close-month")
        assert closed.exit_code == 0 and "2026-11 closed: 1 invoices" in closed.output, closed.output
        sign_in(page)  # days passed on the portal's clock: the session has timed out
        page.goto("/billing/invoices")
        number = f"P202611-{account_id:06d}"
        link = page.get_by_test_id(f"download-{number}")
        expect(link).to_be_visible()
        expect(page.locator("#documents")).to_contain_text("¥33")  # ¥30 + ¥3 tax
        expect(page.get_by_test_id(f"monthly-{number}")).to_contain_text(t["unpaid"])
        shoot(page, screenshot, f"postpay-invoices-{lang}")
        with page.expect_download() as download:
            link.click()
        saved = tmp_path / "invoice.pdf"
        download.value.save_as(saved)
        assert saved.read_bytes().startswith(b"%PDF") and number in download.value.suggested_filename
        context.close()
