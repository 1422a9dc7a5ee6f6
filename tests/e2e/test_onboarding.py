"""A visitor signs up, proves the e-mail and the mobile number, and lands on the dashboard."""

import re

import pytest
from playwright.sync_api import expect

TEXT = {
    "en": {
        "signup": "Create your Chotto account", "create": "Create account", "check": "Check your e-mail",
        "mail": "[Chotto] Confirm your e-mail address", "phone": "Verify your mobile number",
        "send": "Send the code", "code": "Enter the code", "verify": "Verify", "welcome": "Welcome, ",
        "verified": "Mobile number verified: 090-1234-5678", "individual": "Myself (individual)",
        "name": "Your name", "email": "E-mail address", "password": "Password", "mobile": "Mobile number",
        "code_label": "6-digit code",
    },
    "ja": {
        "signup": "Chottoアカウントを作成", "create": "アカウントを作成", "check": "メールをご確認ください",
        "mail": "[Chotto] メールアドレスのご確認", "phone": "携帯電話番号を確認する",
        "send": "認証コードを送信", "code": "認証コードを入力", "verify": "認証する", "welcome": "ようこそ",
        "verified": "携帯電話番号の確認完了：090-1234-5678", "individual": "個人（ご本人）", "name": "お名前",
        "email": "メールアドレス", "password": "パスワード", "mobile": "携帯電話番号", "code_label": "6桁の認証コード",
    },
}


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_a_visitor_signs_up_and_reaches_the_dashboard(browser, live_server, screenshot, console_errors, lang):
    t = TEXT[lang]
    context = browser.new_context(locale="ja-JP" if lang == "ja" else "en-GB", base_url=live_server.url)
    page = console_errors(context.new_page())
    page.goto("/signup")
    expect(page.get_by_role("heading", level=1)).to_contain_text(t["signup"])
    screenshot(page, f"signup-{lang}")
    page.get_by_label(t["name"]).fill("佐藤 花子" if lang == "ja" else "Hana Sato")
    page.get_by_label(t["email"]).fill(f"hana-{lang}@example.com")
    page.get_by_label(t["password"]).fill("correct horse battery staple")
    page.get_by_label(t["individual"]).check()
    page.get_by_role("button", name=t["create"]).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(t["check"])
    screenshot(page, f"check-email-{lang}")

    page.goto("/dev/mailbox/")
    assert _wait_for_mail(page, t["mail"]), "the verification mail never arrived"
    page.get_by_role("link", name=t["mail"]).first.click()
    link = re.search(r"http://127\.0\.0\.1:\d+/verify-email/\S+", page.locator("pre.mail-text").inner_text()).group(0)
    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_have_text(t["phone"])
    screenshot(page, f"verify-phone-{lang}")
    page.get_by_label(t["mobile"]).fill("090-1234-5678")
    page.get_by_role("button", name=t["send"]).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(t["code"])
    screenshot(page, f"enter-code-{lang}")

    inbox = console_errors(context.new_page())
    inbox.goto("/test-inbox")
    message = inbox.locator("#inbox-messages .message-body").first
    expect(message).to_contain_text("Chotto", timeout=15000)  # the panel polls until the SMS lands
    screenshot(inbox, f"test-inbox-{lang}")
    code = re.search(r"\d{6}", message.inner_text()).group(0)

    page.get_by_label(t["code_label"]).fill(code)
    page.get_by_role("button", name=t["verify"], exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(t["welcome"])
    expect(page.locator("main")).to_contain_text(t["verified"])
    expect(page.get_by_test_id("available")).to_have_text("¥50")  # the trial credit
    screenshot(page, f"dashboard-{lang}")
    context.close()


def _wait_for_mail(page, subject: str) -> bool:
    for _ in range(50):
        if page.get_by_role("link", name=subject).count():
            return True
        page.wait_for_timeout(200)
        page.reload()
    return False
