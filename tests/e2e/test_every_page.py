"""Every page a signed-in owner reaches, and the public ones, in a real browser at phone width
(390 × 844), on a desktop (1280 × 800) and for a few pages a tablet (768 × 1024), in English and
Japanese. Each page must not scroll sideways (the document is no wider than the viewport), use
no id twice, log no script error or CSP violation to the console, and axe-core (vendored,
injected by the test only) must find no serious or critical violation. A full-page screenshot
of each lands in test-artifacts/screenshots/<page>-<lang>-<width>.png.

One browser context per language and width visits every page in turn (one sign-in each), so the
file runs in a few minutes; the failures of all pages are listed together."""

import re
import time
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from sqlalchemy import select

from portal.accounts.models import Membership
from portal.clock import system_now
from tests.e2e.conftest import SCREENSHOTS, LiveServer, _without_aborted_requests
from portal.mail import DevMail
from tests.helpers import PASSWORD, PageClient, db_session, deliver_outbox, make_user

pytestmark = pytest.mark.xdist_group("every-page")  # one process: the portal and its data are built once

AXE = next((Path(__file__).resolve().parents[2] / "static" / "vendor").glob("axe-*.min.js")).name
SIZES = {390: {"width": 390, "height": 844}, 768: {"width": 768, "height": 1024}, 1280: {"width": 1280, "height": 800}}
LOCALES = {"en": "en-GB", "ja": "ja-JP"}
TABLET_PAGES = {"home", "menu-open", "login", "dashboard", "credentials", "team", "inbox", "invoices", "purchases", "statement", "api-docs",
                "invoice-billing"}

# What the page shows in place (the failures list names it), and how to reach it.
PUBLIC = [
    ("home", "/"),
    ("pricing", "/pricing"),
    ("legal", "/legal/commercial-transactions"),
    ("login", "/login"),
    ("signup", "/signup"),
    ("signup-errors", "signup-errors"),
    ("forgot-password", "/password/forgot"),
    ("reset-link-invalid", "/reset-password/not-a-real-token"),
    ("reset-sent", "reset-sent"),
    ("reset-form", "/reset-password/{reset_token}"),
    ("reset-errors", "reset-errors"),
    ("invitation-new", "/invitations/{invitation_new}"),
    ("invitation-new-errors", "invitation-new-errors"),
    ("invitation-sign-in", "/invitations/{invitation_existing}"),
    ("api-docs", "/api/docs"),
    ("not-found", "/no-such-page"),
    ("form-expired", "form-expired"),
]
SIGNED_IN = [
    ("dashboard", "/dashboard"),
    ("menu-open", "menu-open"),
    ("statement", "/credit/statement"),
    ("credentials", "/credentials"),
    ("credentials-manage", "credentials-manage"),
    ("credential-created", "credential-created"),
    ("callback-secret", "/credentials/{credential_id}/callback-secret"),
    ("team", "/team"),
    ("team-remove", "/team/members/{membership_id}/remove"),
    ("inbox", "/test-inbox"),
    ("buy", "/credit/buy"),
    ("buy-errors", "/credit/buy/confirm?amount=12"),
    ("confirm", "/credit/buy/confirm?amount=3000"),
    ("purchases", "/credit/purchases"),
    ("purchase", "/credit/purchases/{purchase_id}"),
    ("sandbox-checkout", "/sandbox/checkout/{checkout_id}"),
    ("invoices", "/billing/invoices"),
    ("usage-statements", "/billing/statements"),
    ("billing-profile", "/billing/profile"),
    ("invoice-billing", "/billing/invoice-billing"),
    ("profile", "/profile/"),
    ("phone", "/verify-phone/?change=1"),
    ("reauthenticate", "/reauthenticate"),
    ("check-email", "/signup/check-email"),
    ("dev-mailbox", "/dev/mailbox/"),
    ("otp-sites", "/otp-sites"),
    ("otp-site", "/otp-sites/{site_id}"),
    ("otp-settings", "/otp-sites/{site_id}/settings"),
    ("otp-activity", "/otp-sites/{site_id}/activity"),
    ("usage", "/usage"),
    ("usage-errors", "/usage?range=custom&from=2026-02-30"),
    ("usage-detail", "usage-detail"),
    ("alerts", "/alerts"),
    ("alerts-errors", "alerts-errors"),
    ("alerts-history", "/alerts/history"),
    ("alert-address-confirm", "/alerts/confirm/{alert_token}"),
    ("invitation-signed-in", "/invitations/{invitation_existing}"),
    ("too-many-requests", "/usage.csv"),  # the fixture used up the owner's exports: the 429 page
    ("phone-code", "phone-code"),  # last: it starts a change of the owner's number
]

AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations
    .filter(v => v.impact === 'serious' || v.impact === 'critical')
    .map(v => `${v.impact} ${v.id}: ${v.help} — ` + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | '));
}"""
OVERFLOW = """() => {
  const width = document.documentElement.scrollWidth;
  const wide = [...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 && getComputedStyle(e).position !== 'fixed')
    .filter(e => !e.closest('.table-wrap, pre') || e.matches('.table-wrap, pre'))
    .slice(0, 4).map(e => e.tagName.toLowerCase() + (e.className ? '.' + String(e.className).split(' ').join('.') : ''));
  return [width, wide];
}"""


def _hidden_fields(html: str, action: str) -> dict:
    form = BeautifulSoup(html, "html.parser").find("form", action=action)
    return {i["name"]: i.get("value", "") for i in form.find_all("input", type="hidden")}


@pytest.fixture(scope="module")
def portal(database_url):
    """One portal for the whole file, with an owner whose account has something on every page:
    a paid purchase and its receipt, a pending one, credentials, a developer and an invitation,
    test messages in the inbox and lines in the statement; the links of an invitation to a new
    person, of one to a person who has a login, of a password reset and of an alert address.
    Rate limits are on, generous for signing in (each language and width signs in) and down
    to one export a day, which the fixture uses, so /usage.csv shows the 429 page."""
    limits = {"RATELIMIT_ENABLED": True, "LOGIN_RATE_LIMIT": "1000 per minute", "SIGNUP_RATE_LIMIT": "1000 per minute",
              "USAGE_EXPORT_RATE_LIMIT": "1 per day"}
    with LiveServer(database_url, **limits) as server:
        app = server.app
        make_user(app, "owner@example.com", name="Olivia Owner", phone="+819012345678")
        developer = make_user(app, "dev@example.com", name="Daisuke Developer")
        make_user(app, "kenji@example.com", name="Kenji Existing")
        client = PageClient(app.test_client(), app)
        client.login("owner@example.com")
        with db_session(app) as session:
            owner_id = session.scalars(select(Membership.user_id).where(Membership.role == "owner")).first()
            account_id = session.scalars(select(Membership.account_id).where(Membership.user_id == owner_id)).one()
            session.add(Membership(account_id=account_id, user_id=developer.id, role="developer", created_at=system_now()))
            session.commit()
            membership_id = session.scalars(select(Membership.id).where(Membership.user_id == developer.id,
                                                                      Membership.account_id == account_id)).one()
        client.post("/team/invitations", {"email": "finance@example.com", "role": "billing"}, status=302)
        client.post("/team/invitations", {"email": "kenji@example.com", "role": "developer"}, status=302)
        client.get("/usage.csv", status=200)  # the day's one export
        PageClient(app.test_client(), app).post("/password/forgot", {"email": "owner@example.com"}, status=200)
        client.post("/billing/profile", {"legal_name": "Example KK", "postal_code": "150-0001",
                                         "address": "1-2-3 Jingumae, Shibuya-ku, Tokyo", "billing_email": "finance@example.com",
                                         "tax_residency": "JP", "registration_number": ""}, status=302)
        ids = {"membership_id": membership_id}
        for amount, pay in ((1000, True), (5000, False)):
            confirm = client.get(f"/credit/buy/confirm?amount={amount}").get_data(as_text=True)
            checkout = client.post("/credit/buy/confirm", _hidden_fields(confirm, "/credit/buy/confirm"))
            assert checkout.status_code in (302, 303), checkout.get_data(as_text=True)[:500]
            location = "/" + checkout.headers["Location"].split("/", 3)[-1] if "://" in checkout.headers["Location"] else checkout.headers["Location"]
            ids["checkout_id"] = location.rstrip("/").split("/")[-1]
            page = client.get(location).get_data(as_text=True)
            ids["purchase_id"] = re.search(r'/credit/purchases/([\w-]+)"', page).group(1)
            if pay:
                action = f"/sandbox/checkout/{ids['checkout_id']}"
                client.post(action, {**_hidden_fields(page, action), "action": "pay"})
        client.post("/credentials", {"name": "production web", "mode": "live", "scopes": ["sms", "read"],
                                     "networks": "203.0.113.0/24", "monthly_cap": "5000"}, status=200)
        dashboard = client.get("/dashboard").get_data(as_text=True)
        client.post("/dashboard/test-sms", _hidden_fields(dashboard, "/dashboard/test-sms"))
        deliver_outbox(app)
        listing = client.get("/credentials").get_data(as_text=True)
        ids["credential_id"] = re.search(r'/credentials/(\d+)/callback-secret', listing).group(1)
        registered = client.post("/otp-sites", {"website": "https://shop.example.com", "display_name": "Example Shop"})
        ids["site_id"] = registered.headers["Location"].rstrip("/").split("/")[-1]
        client.post("/alerts/channels", {"email": "y", "webhook_url": "http://127.0.0.1:9/chotto-alerts",
                                         "expiry_warnings": "y", "run_out": "y", "run_out_days": "7"}, status=200)  # its secret shown
        client.post("/alerts/test", {}, status=303)  # refused by the closed port: a failing row in the history
        client.post("/alerts/addresses", {"address": "ops@example.com"}, status=303)
        deliver_outbox(app)
        for key, to, path in (("alert_token", "ops@example.com", "/alerts/confirm/"),
                              ("invitation_new", "finance@example.com", "/invitations/"),
                              ("invitation_existing", "kenji@example.com", "/invitations/"),
                              ("reset_token", "owner@example.com", "/reset-password/")):
            ids[key] = _link_token(app, to, path)
        _invoice_billing(app, account_id)
        server.ids = ids
        yield server


def _link_token(app, to: str, path: str) -> str:
    """The token of the link to `path` in the last mail to `to` (the worker thread may still be
    sending it)."""
    for _attempt in range(100):
        with db_session(app) as session:
            bodies = session.scalars(select(DevMail.text_body).where(DevMail.recipient == to)
                                     .order_by(DevMail.id.desc())).all()
        found = next((m.group(1) for body in bodies if (m := re.search(re.escape(path) + r"([\w.-]+)", body))), None)
        if found:
            return found
        deliver_outbox(app)
        time.sleep(0.1)
    raise AssertionError(f"no mail to {to} with a link to {path}")


def _invoice_billing(app, account_id: int) -> None:
    """The account becomes a company with a credit line (approved by the command) and last
    month's invoice: the dashboard shows the line, the invoices page the monthly invoice."""
    from datetime import timedelta

    from portal.accounts.models import Account
    from portal.ledger import service as ledger
    from portal.postpay import rules

    with db_session(app) as session:
        session.get(Account, account_id).kind = "company"
        session.commit()
    runner = app.test_cli_runner()
    assert runner.invoke(args=["postpay", "approve", "owner@example.com", "--limit", "100000",
                               "--terms", "Contract K-2026-015"]).exit_code == 0
    month = rules.last_closable(system_now())
    with db_session(app) as session:  # last month's usage, beyond the prepaid credit
        ledger.debit(session=session, account_id=account_id, amount=3_200_000, idempotency_key="every-page-usage",
                     reason="SMS every page", now=month.ends_at - timedelta(days=10))
    assert runner.invoke(args=["postpay", "close-month", "--month", str(month)]).exit_code == 0


def _visit(page, name: str, path: str, ids: dict, lang: str):
    """Opens the page `name`; most are a plain address, a few are reached by acting on a page."""
    if name == "signup-errors":
        page.goto("/signup")
        page.locator("input[name=email]").fill("not an address")
        page.locator("main form button[type=submit]").click()
    elif name == "form-expired":
        page.goto("/password/forgot")
        page.locator("main input[name=csrf_token]").evaluate("input => input.value = 'stale'")
        page.locator("input[name=email]").fill("someone@example.com")
        page.locator("main form button[type=submit]").click()
    elif name == "menu-open":  # below 1024 px the site navigation is a menu; opened from the keyboard
        page.goto("/dashboard")
        page.locator("details.nav-menu > summary").focus()
        page.keyboard.press("Enter")
        assert page.locator("details.nav-menu").get_attribute("open") is not None
    elif name == "credentials-manage":
        page.goto("/credentials")
        page.locator("details.credential-actions > summary").first.click()
        page.locator("details.confirm-revoke > summary").first.click()
    elif name == "credential-created":
        page.goto("/credentials")
        page.locator("input[name=name]").fill(f"nightly batch {lang}")
        page.locator("input[name=mode][value=test]").check()
        page.locator("form[action='/credentials'] button[type=submit]").click()
    elif name == "phone-code":  # the code page, reached by asking for a code to a new number
        page.goto("/verify-phone/?change=1")
        width = page.viewport_size["width"]
        page.locator("input[name=phone]").fill(f"+819055{width:04d}{'01' if lang == 'en' else '02'}")
        page.locator("main form button[type=submit]").first.click()
        page.wait_for_load_state("load")
        assert page.locator("input[name=code]").count() == 1, "the code page did not open"
    elif name == "usage-detail":  # the dashboard's test SMS, opened from the usage history
        page.goto("/usage")
        page.locator("[data-testid=usage-rows] tbody tr a").first.click()
    elif name == "reset-sent":  # an address without a login: the same page, and no link dies
        page.goto("/password/forgot")
        page.locator("input[name=email]").fill("nobody@example.com")
        page.locator("main form button[type=submit]").click()
    elif name == "reset-errors":  # a password too short: named on the form, the link still good
        page.goto(f"/reset-password/{ids['reset_token']}")
        page.locator("input[name=password]").fill("short")
        page.locator("main form button[type=submit]").click()
    elif name == "invitation-new-errors":
        page.goto(f"/invitations/{ids['invitation_new']}")
        page.locator("input[name=name]").fill("Fumiko Finance")
        page.locator("input[name=password]").fill("short")
        page.locator("main form button[type=submit]").click()
    elif name == "alerts-errors":
        page.goto("/alerts")
        page.locator("input[name=threshold_1]").fill("a lot")
        page.locator("form[action='/alerts/thresholds'] button[type=submit]").click()
    else:
        page.goto(path.format(**ids))
    page.wait_for_load_state("load")


DUPLICATE_IDS = """() => {
  const ids = [...document.querySelectorAll('[id]')].map(e => e.id);
  return [...new Set(ids.filter((id, i) => ids.indexOf(id) !== i))];
}"""
ERROR_STATUS = "Failed to load resource: the server responded with a status of"  # the error pages' own status


def _check(page, name: str, lang: str, width: int, console: list[str]) -> list[str]:
    problems = []
    if duplicates := page.evaluate(DUPLICATE_IDS):
        problems.append(f"{name}: ids used twice: {duplicates}")
    problems += [f"{name}: console: {error}" for error in _without_aborted_requests(console)
                 if not error.startswith(ERROR_STATUS)]
    console.clear()
    scroll_width, wide = page.evaluate(OVERFLOW)
    if scroll_width > width:
        problems.append(f"{name}: {scroll_width} px wide at {width} px ({', '.join(wide)})")
    html = page.content()
    if '="None"' in html:
        problems.append(f"{name}: attributes reading None: {re.findall(r'<[^<>]*=.None.[^<>]*>', html)[:3]}")
    if page.locator("[autofocus]").count() > 1:
        problems.append(f"{name}: {page.locator('[autofocus]').count()} fields ask for the focus")
    page.add_script_tag(url=f"/static/vendor/{AXE}")
    problems += [f"{name}: {violation}" for violation in page.evaluate(AXE_RUN)]
    page.screenshot(path=str(SCREENSHOTS / f"{name}-{lang}-{width}.png"), full_page=True)
    return problems


def _sign_in(page, lang):
    page.goto("/login")
    page.locator("input[name=email]").fill("owner@example.com")
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url("**/dashboard")
    _in_language(page, lang)


def _in_language(page, lang):
    """The footer's language switch, when the page is not already in `lang` (a visitor's browser
    asks for Japanese; the owner's own setting is English)."""
    if page.locator("html").get_attribute("lang") != lang:
        page.locator(f"footer button[lang={lang}]").click()
        page.wait_for_load_state("load")


@pytest.mark.parametrize("width", [390, 1280, 768])
@pytest.mark.parametrize("lang", ["en", "ja"])
def test_every_page_fits_the_screen_and_passes_axe(browser, portal, lang, width):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(locale=LOCALES[lang], base_url=portal.url, viewport=SIZES[width])
    page = context.new_page()
    console = []  # script errors and CSP violations, per page
    page.on("console", lambda message: console.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: console.append(str(error)))
    problems = []
    try:
        for signed_in, pages in ((False, PUBLIC), (True, SIGNED_IN)):
            if signed_in:
                _sign_in(page, lang)
            else:
                page.goto("/")
                _in_language(page, lang)
            for name, path in pages:
                if (width == 768 and name not in TABLET_PAGES) or (width >= 1024 and name == "menu-open"):
                    continue
                _visit(page, name, path, portal.ids, lang)
                assert page.locator("html").get_attribute("lang") == lang, f"{name} is not in {lang}"
                problems += _check(page, name, lang, width, console)
    finally:
        context.close()
    assert not problems, f"{len(problems)} problems at {width} px in {lang}:\n" + "\n".join(problems)
