"""Issue 14's browser test: an owner whose account sent SMS through two API credentials in
November and December filters the usage history by credential and by month. The totals and the
chart change in place (htmx), the address follows; that address opened in a new page shows the
same view; the CSV of the view downloads. Without JavaScript the same filters work as a plain
form. Screenshots of the history, an item and the monthly statement in both languages at phone
width (390 px) and on a desktop (1280 px).

The live server's clock is frozen (its config is read on every request) so that the usage can
be sent on chosen days: 27 November and 2 December 2026, noon in Japan."""

import re
from datetime import datetime, timezone

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from portal.accounts.models import Membership
from portal.clock import FrozenClock
from tests.api.conftest import fund, new_key
from tests.helpers import PASSWORD, db_session, make_user

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
NOVEMBER_27 = datetime(2026, 11, 27, 3, 0, tzinfo=timezone.utc)
TEXT = {
    "en": {"november": "November 27, 2026", "period": "November 1, 2026 to November 30, 2026", "show": "Show",
           "statement": "Statement for November 2026"},
    "ja": {"november": "2026年11月27日", "period": "2026年11月1日～2026年11月30日", "show": "表示する",
           "statement": "2026年11月分のご利用明細"},
}


def send(app, key, tags=""):
    response = app.test_client().post("/sms/messages/", data={
        "recipient": "+819012345678", "sender": "Chotto", "message": "Your parcel is on its way", "tags": tags},
        headers=key.headers)
    assert response.status_code == 201, response.get_json()


def shoot(page, screenshot, name: str) -> None:
    """At phone and desktop width; the page is left at desktop width."""
    for size in (PHONE, DESKTOP):
        page.set_viewport_size(size)
        screenshot(page, f"{name}-{size['width']}")


def figures(page) -> tuple[str, str, str]:
    return (page.get_by_test_id("total-count").inner_text(), page.get_by_test_id("total-cost").inner_text(),
            page.locator("[data-testid=daily-chart] svg").inner_html())


@pytest.fixture
def usage(live_server):
    """Two credentials' SMS: "web shop" twice and "batch" once on 27 November, "batch" twice and
    "web shop" once on 2 December."""
    app = live_server.app
    clock = app.config["CLOCK"] = FrozenClock(NOVEMBER_27)
    user = make_user(app, "owner@example.com", name="Olivia Owner", phone="+819012345678")
    with db_session(app) as session:
        account_id = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
    fund(app, account_id, 1000)
    shop, batch = (new_key(app, account_id, user.id, name=name) for name in ("web shop", "batch"))
    for key, tags in ((shop, "キャンペーン"), (shop, ""), (batch, "")):
        send(app, key, tags)
    clock.advance(days=5)
    for key in (batch, batch, shop):
        send(app, key)
    return live_server


def signed_in(browser, server, lang, **options):
    context = browser.new_context(locale="ja-JP" if lang == "ja" else "en-GB", base_url=server.url, viewport=DESKTOP,
                                  accept_downloads=True, **options)
    page = context.new_page()
    page.goto("/login")
    page.locator("input[name=email]").fill("owner@example.com")
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url("**/dashboard")
    if lang == "ja":
        page.locator("footer button[lang=ja]").click()
        page.wait_for_load_state("load")
    return context, page


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_filtering_by_credential_and_month_changes_the_view_in_place_and_the_address_keeps_it(
        browser, usage, screenshot, console_errors, lang):
    t = TEXT[lang]
    context, page = signed_in(browser, usage, lang)
    console_errors(page)
    page.locator("header .nav-links a[href='/usage']").click()
    page.wait_for_load_state()  # htmx binds the filters on DOMContentLoaded: a change before that is a plain one
    expect(page.get_by_test_id("total-count")).to_have_text("3")  # this month: 1 and 2 December
    expect(page.get_by_test_id("total-cost")).to_have_text("¥30")
    this_month = figures(page)

    page.locator("select[name=credential_id]").select_option(label="batch")
    page.wait_for_url(re.compile(r"credential_id=\d+"))
    expect(page.get_by_test_id("total-count")).to_have_text("2")
    page.locator("select[name=range]").select_option("last-month")
    page.wait_for_url(re.compile(r"range=last-month"))
    expect(page.get_by_test_id("total-count")).to_have_text("1")
    expect(page.get_by_test_id("period")).to_have_text(t["period"])
    bars = page.locator("[data-testid=daily-chart] rect.bar")
    expect(bars).to_have_count(1)
    expect(bars.locator("title")).to_contain_text(t["november"])
    november = figures(page)
    assert november != this_month and november[2] != this_month[2]  # the chart was drawn again
    query = page.url.split("?", 1)[1]
    assert set(dict(pair.split("=") for pair in query.split("&"))) == {"range", "credential_id"}  # no empty fields

    bookmarked = console_errors(context.new_page())
    bookmarked.goto(page.url)
    assert figures(bookmarked) == november
    expect(bookmarked.locator("select[name=range]")).to_have_value("last-month")
    expect(bookmarked.locator("select[name=credential_id] option:checked")).to_have_text("batch")
    bookmarked.close()

    with page.expect_download() as downloading:
        page.get_by_test_id("download-csv").click()
    download = downloading.value
    assert download.suggested_filename == "chotto-usage-2026-11-01_2026-11-30.csv"
    body = open(download.path(), "rb").read()
    assert body.startswith(b"\xef\xbb\xbf") and len(body.decode("utf-8-sig").splitlines()) == 2
    shoot(page, screenshot, f"usage-filtered-{lang}")

    page.locator("select[name=credential_id]").select_option("")
    page.wait_for_url(re.compile(r"^(?!.*credential_id)"))
    expect(page.get_by_test_id("total-count")).to_have_text("3")
    shoot(page, screenshot, f"usage-{lang}")
    page.locator("[data-testid=usage-rows] tbody tr a").last.click()
    expect(page.get_by_test_id("recipient")).to_have_text("090-1234-5678")
    shoot(page, screenshot, f"usage-detail-{lang}")
    page.goto("/billing/statements?month=2026-11")
    expect(page.get_by_test_id("statement-month")).to_have_text(t["statement"])
    expect(page.get_by_test_id("statement-total")).to_have_text("¥30")
    shoot(page, screenshot, f"usage-statement-{lang}")
    context.close()


def test_the_filters_work_without_javascript(browser, usage, console_errors):
    context, page = signed_in(browser, usage, "en", java_script_enabled=False)
    page.goto("/usage")
    page.locator("select[name=range]").select_option("last-month")
    page.locator("select[name=credential_id]").select_option(label="web shop")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r"range=last-month"))
    expect(page.get_by_test_id("total-count")).to_have_text("2")
    expect(page.get_by_test_id("total-cost")).to_have_text("¥20")
    expect(page.locator("select[name=credential_id] option:checked")).to_have_text("web shop")
    context.close()
