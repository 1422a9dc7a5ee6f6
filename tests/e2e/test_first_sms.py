"""Issue 11's "first SMS" path, timed as a new visitor would go through it: the landing page, sign
up, the e-mail link, the SMS code, "send a test SMS" on the dashboard, the message visible in
place; then the same message sent by pasting the curl sample of a new credential into a shell.
The times are printed, never asserted (they measure this machine as much as the portal).
Screenshots of the dashboard and of the page that shows a new token, at 390 and 1280 px wide."""

import re
import subprocess
import time
from contextlib import contextmanager

import pytest
from playwright.sync_api import expect

from tests.e2e.test_onboarding import TEXT, _wait_for_mail

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
DONE = {"en": "It arrived in the test inbox.", "ja": "テスト受信箱に届きました。"}
HELLO = {"en": "Hello from Chotto", "ja": "Chottoからこんにちは"}


class Stopwatch:
    """Split times since the start, for the printed report; screenshots are not counted."""

    def __init__(self):
        self.start = time.monotonic()
        self.splits: list[tuple[str, float]] = []

    def split(self, step: str) -> None:
        self.splits.append((step, time.monotonic() - self.start))

    @contextmanager
    def paused(self):
        stopped = time.monotonic()
        yield
        self.start += time.monotonic() - stopped

    def report(self, title: str) -> str:
        """Each step's own time and the time since the landing page."""
        lines, before = [f"{title} (step, since the landing page):"], 0.0
        for step, seconds in self.splits:
            lines.append(f"  {seconds - before:6.2f} s {seconds:6.2f} s  {step}")
            before = seconds
        return "\n".join(lines)


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_a_visitor_sends_a_first_sms_from_the_dashboard_and_from_a_pasted_curl_sample(
        browser, live_server, screenshot, console_errors, capsys, lang):
    t = TEXT[lang]
    context = browser.new_context(locale="ja-JP" if lang == "ja" else "en-GB", base_url=live_server.url,
                                  viewport=DESKTOP)
    page = console_errors(context.new_page())
    watch = Stopwatch()

    page.goto("/")
    page.locator("main a[href='/signup']").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(t["signup"])
    page.get_by_label(t["name"]).fill("佐藤 花子" if lang == "ja" else "Hana Sato")
    page.get_by_label(t["email"]).fill(f"first-{lang}@example.com")
    page.get_by_label(t["password"]).fill("correct horse battery staple")
    page.get_by_label(t["individual"]).check()
    page.get_by_role("button", name=t["create"]).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(t["check"])
    watch.split("landing page → signed up")

    mail = console_errors(context.new_page())
    mail.goto("/dev/mailbox/")
    assert _wait_for_mail(mail, t["mail"]), "the verification mail never arrived"
    mail.get_by_role("link", name=t["mail"]).first.click()
    link = re.search(r"http://127\.0\.0\.1:\d+/verify-email/\S+", mail.locator("pre.mail-text").inner_text()).group(0)
    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_have_text(t["phone"])
    watch.split("e-mail link opened")

    page.get_by_label(t["mobile"]).fill("090-1234-5678")
    page.get_by_role("button", name=t["send"]).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(t["code"])
    inbox = console_errors(context.new_page())
    inbox.goto("/test-inbox")
    code_sms = inbox.locator("#inbox-messages .message-body").first
    expect(code_sms).to_contain_text("Chotto", timeout=15_000)
    page.get_by_label(t["code_label"]).fill(re.search(r"\d{6}", code_sms.inner_text()).group(0))
    page.get_by_role("button", name=t["verify"], exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(t["welcome"])
    watch.split("SMS code entered: on the dashboard")

    page.locator("#first-sms button[type=submit]").click()
    expect(page.get_by_test_id("first-sms")).to_contain_text(DONE[lang], timeout=15_000)
    expect(page.get_by_test_id("arrived-sms")).to_contain_text("Chotto")
    watch.split("\"send a test SMS\" → message visible on the dashboard")
    expect(page.get_by_test_id("checklist").locator("li.done").nth(2)).to_be_visible()  # ticked in place
    with watch.paused():
        shoot(page, screenshot, f"first-sms-dashboard-{lang}")

    page.locator("header a[href='/credentials']").first.click()
    page.locator("input[name=name]").fill("laptop")
    page.locator("form[action='/credentials'] button[type=submit]").click()
    curl = page.get_by_test_id("sample-curl")
    expect(curl).to_contain_text(page.get_by_test_id("token").inner_text())
    pasted = subprocess.run(["bash", "-c", curl.inner_text()], capture_output=True, text=True, timeout=60)
    assert pasted.returncode == 0 and "msgid" in pasted.stdout, (pasted.stdout, pasted.stderr)
    with watch.paused():
        shoot(page, screenshot, f"first-sms-credential-created-{lang}")
    inbox.reload()
    expect(inbox.locator("#inbox-messages .message-body").first).to_have_text(HELLO[lang], timeout=15_000)
    watch.split("curl sample of a new credential pasted → message in the test inbox")

    with capsys.disabled():
        print("\n" + watch.report(f"first SMS, {lang}, {live_server.app.config['DATABASE_URL'].split(':')[0]}"))
    context.close()


def shoot(page, screenshot, name: str) -> None:
    """At phone and desktop width; the page is left at desktop width."""
    for size in (PHONE, DESKTOP):
        page.set_viewport_size(size)
        screenshot(page, f"{name}-{size['width']}")
