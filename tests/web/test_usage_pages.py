"""The usage pages: owners, developers and billing members read the usage history (filters in
place with htmx, a full page otherwise, a clear message for a bad filter), one item's detail
(the whole number for owners and developers, masked for billing, another account's item does
not exist), the CSV of the same filters, and the monthly statement as a page and a PDF
(owners and billing members only). The usage itself is sent through the customer API, on a
frozen clock: two messages in November, one in December (Japan time)."""

from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
from bs4 import BeautifulSoup
from sqlalchemy import insert, select

from portal.accounts.models import Membership
from portal.credentials.models import Credential
from tests.api.conftest import fund, new_key
from tests.helpers import PageClient, db_session, make_user
from tests.usage_rows import CALLS

HTMX = {"HX-Request": "true"}
NUMBER = "+819012345678"


def signed_in(app, email, *, role=None, account_id=None, language="en"):
    """A person signed in; with `role`, a member of `account_id` working in it."""
    user = make_user(app, email=email, language=language)
    client = PageClient(app.test_client(), app)
    client.login(email)
    if role is not None:
        with db_session(app) as session:
            session.add(Membership(account_id=account_id, user_id=user.id, role=role, created_at=app.config["CLOCK"]()))
            session.commit()
        client.post(f"/profile/account/{account_id}", {}, status=302)
    return client, user


def account_of(app, user) -> int:
    with db_session(app) as session:
        return session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()


def send(app, key, message="Your parcel is on its way", tags=""):
    response = app.test_client().post("/sms/messages/", data={"recipient": NUMBER, "sender": "Chotto", "message": message,
                                                              "tags": tags}, headers=key.headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()[0]["msgid"]


@pytest.fixture
def usage(app, clock):
    """An owner whose account sent two SMS on 27 November through "web shop" (one of them two
    segments long) and one on 3 December through "batch" (Japan time)."""
    user = make_user(app, email="owner@example.com")
    account_id = account_of(app, user)
    fund(app, account_id, 1000)
    shop = new_key(app, account_id, user.id, name="web shop")
    batch = new_key(app, account_id, user.id, name="batch")
    refs = {"first": send(app, shop, tags="キャンペーン"), "long": send(app, shop, "x" * 200)}
    clock.advance(days=6)  # 3 December, 12:00 in Japan
    refs["december"] = send(app, batch, tags="=SUM(A1)")
    owner = PageClient(app.test_client(), app)
    owner.login("owner@example.com")
    return owner, account_id, refs


def text(soup) -> str:
    return " ".join(soup.get_text(" ").split())


# -- who may read it ---------------------------------------------------------------------------------


def test_owners_developers_and_billing_members_read_the_usage_and_find_it_in_the_navigation(app, usage):
    owner, account_id, _ = usage
    developer, _ = signed_in(app, "dev@example.com", role="developer", account_id=account_id)
    billing, _ = signed_in(app, "money@example.com", role="billing", account_id=account_id)
    for client in (owner, developer, billing):
        page = client.page("/usage?range=today")
        assert page.select_one("header .nav-links a[aria-current=page]")["href"] == "/usage"
        assert page.select_one("[data-testid=total-count]").get_text(strip=True) == "1"


def test_the_usage_needs_a_signed_in_member(app, usage):
    response = app.test_client().get("/usage")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_only_owners_and_billing_members_read_the_monthly_statement(app, usage):
    _, account_id, _ = usage
    developer, _ = signed_in(app, "dev@example.com", role="developer", account_id=account_id)
    developer.get("/billing/statements", status=403)
    developer.get("/billing/statements/2026-11.pdf", status=403)
    assert not developer.page("/usage").select("a[href='/billing/statements']")


# -- the page and its filters ----------------------------------------------------------------------


def test_this_month_is_shown_by_default_with_totals_chart_breakdown_and_rows(app, usage):
    owner, _, refs = usage
    page = owner.page("/usage")
    assert text(page.select_one("[data-testid=period]")) == "December 1, 2026 to December 3, 2026"
    assert page.select_one("[data-testid=total-count]").get_text(strip=True) == "1"
    assert page.select_one("[data-testid=total-cost]").get_text(strip=True) == "¥10"
    svg = page.select_one("[data-testid=daily-chart] svg")
    assert svg["role"] == "img" and svg.title and svg.desc
    assert len(page.select("[data-testid=chart-table] tbody tr")) == 3  # every day of the range, empty ones too
    assert "batch" in text(page.select_one("[data-testid=by-credential]"))
    rows = page.select("[data-testid=usage-rows] tbody tr")
    assert len(rows) == 1 and refs["december"] in rows[0].a["href"]


def test_a_month_and_a_credential_change_the_totals_and_the_chart(app, usage):
    owner, account_id, _ = usage
    november = owner.page("/usage?range=last-month")
    assert november.select_one("[data-testid=total-count]").get_text(strip=True) == "2"
    assert november.select_one("[data-testid=total-cost]").get_text(strip=True) == "¥30"  # 1 + 2 segments
    assert len(november.select("[data-testid=chart-table] tbody tr")) == 30
    bars = november.select("[data-testid=daily-chart] rect.bar")
    assert len(bars) == 1 and "November 27, 2026" in bars[0].title.get_text()
    credential = next(option["value"] for option in november.select("select[name=credential_id] option")
                      if option.get_text(strip=True) == "batch")
    batch = owner.page(f"/usage?range=last-month&credential_id={credential}")
    assert batch.select_one("[data-testid=total-count]").get_text(strip=True) == "0"
    assert not batch.select("[data-testid=daily-chart] rect.bar")
    assert batch.select_one("[data-testid=no-usage]")
    assert batch.select_one(f"select[name=credential_id] option[value='{credential}']").has_attr("selected")


def test_an_htmx_filter_gets_only_the_results_and_the_address_keeps_the_filters(app, usage):
    owner, _, _ = usage
    response = owner.get("/usage?range=last-month&product=sms&credential_id=&tag=", headers=HTMX)
    fragment = BeautifulSoup(response.get_data(as_text=True), "html.parser")
    assert fragment.find("html") is None and fragment.find("form", attrs={"data-usage-filters": True}) is None
    assert fragment.select_one("section#results [data-testid=total-count]").get_text(strip=True) == "2"
    assert "HX-Request" in response.headers["Vary"]
    form = owner.page("/usage").select_one("form[data-usage-filters]")
    assert form["hx-get"] == "/usage" and form["hx-target"] == "#results" and form["hx-push-url"] == "true"
    assert form["method"] == "get" and form.select_one("button[type=submit]")  # works without JavaScript
    csv_link = fragment.select_one("[data-testid=download-csv]")["href"]
    assert parse_qs(urlsplit(csv_link).query) == {"range": ["last-month"], "product": ["sms"]}


def test_a_history_restore_gets_the_full_page_with_its_filters_chosen(app, usage):
    owner, _, _ = usage
    restore = owner.page("/usage?range=last-month", headers=HTMX | {"HX-History-Restore-Request": "true"})
    assert restore.title and restore.select_one("form[data-usage-filters]")
    assert restore.select_one("select[name=range] option[value=last-month]").has_attr("selected")


@pytest.mark.parametrize("query, message", [
    ("range=custom&from=27.11.2026", "From (custom): Enter a date such as 2026-11-27."),
    ("range=custom&from=2026-12-03&to=2026-12-01", "To (custom): The last day comes before the first."),
    ("range=custom&from=2026-12-01&to=2026-12-31", "To (custom): The last day is in the future."),
    ("range=custom&from=2024-01-01&to=2024-01-31", "From (custom): Usage is kept for 13 months: start on 2025-11-03 or later."),
    ("range=fortnight", "Period: Choose a period."),
    ("credential_id=first", "API credential: Choose one of the listed values."),
    ("after=not-a-cursor", "Pages: This page link is not valid: start from the first page."),
])
def test_a_bad_filter_is_named_on_the_page_not_a_server_error(app, usage, query, message):
    owner, _, _ = usage
    page = owner.page(f"/usage?{query}", status=400)
    assert text(page.select_one("[data-testid=filter-error]")) == message
    assert page.select_one("form[data-usage-filters]")  # the form is there to put it right
    fragment = owner.get(f"/usage?{query}", headers=HTMX)  # htmx swaps in 2xx answers only
    assert message in " ".join(BeautifulSoup(fragment.get_data(as_text=True), "html.parser").get_text(" ").split())


def test_the_bad_filter_message_is_japanese_on_a_japanese_page(app, usage):
    _, account_id, _ = usage
    japanese, _ = signed_in(app, "ja@example.com", role="owner", account_id=account_id, language="ja")
    page = japanese.page("/usage?range=custom&from=2026-12-03&to=2026-12-01", status=400)
    assert text(page.select_one("[data-testid=filter-error]")) == "終了日（期間指定）：終了日が開始日より前になっています。"


def test_older_rows_are_reached_by_the_cursor_and_the_first_page_by_the_newest_link(app, usage, clock):
    owner, account_id, _ = usage
    with db_session(app) as session:
        user_id = session.scalars(select(Membership.user_id).where(Membership.account_id == account_id)).first()
    key = new_key(app, account_id, user_id, name="bulk")
    for _ in range(50):
        send(app, key)
    first = owner.page("/usage")
    assert len(first.select("[data-testid=usage-rows] tbody tr")) == 50 and not first.select("[data-testid=newest]")
    older = first.select_one("[data-testid=older]")
    assert older["hx-push-url"] == "true" and older["hx-target"] == "#results"
    second = owner.page(older["href"])
    assert len(second.select("[data-testid=usage-rows] tbody tr")) == 1
    assert not second.select("[data-testid=older]")
    assert parse_qs(urlsplit(second.select_one("[data-testid=newest]")["href"]).query) == {"range": ["this-month"]}


# -- one item ---------------------------------------------------------------------------------------


def test_owners_and_developers_see_the_whole_number_and_billing_members_the_last_four_digits(app, usage):
    owner, account_id, refs = usage
    billing, _ = signed_in(app, "money@example.com", role="billing", account_id=account_id)
    developer, _ = signed_in(app, "dev@example.com", role="developer", account_id=account_id)
    path = f"/usage/sms/{refs['first']}"
    for client in (owner, developer):
        page = client.page(path)
        assert page.select_one("[data-testid=recipient]").get_text(strip=True) == "090-1234-5678"
        assert page.select_one("[data-testid=body]").get_text(strip=True) == "Your parcel is on its way"
    page = billing.page(path)
    assert page.select_one("[data-testid=recipient]").get_text(strip=True) == "•••••••••5678"
    assert not page.select("[data-testid=body]") and "5678" in text(page) and "1234" not in text(page)
    assert "キャンペーン" in text(page) and page.select("[data-testid=timeline] li")
    assert page.select_one("[data-testid=cost]").get_text(strip=True).startswith("¥10")


def test_the_list_masks_numbers_for_everyone(app, usage):
    owner, _, _ = usage
    cell = owner.page("/usage?range=last-month").select_one("[data-testid=usage-rows] tbody tr code")
    assert cell.get_text(strip=True) == "•••••••••5678"


def test_another_accounts_item_does_not_exist(app, usage):
    owner, _, refs = usage
    stranger, _ = signed_in(app, "stranger@example.com")
    stranger.get(f"/usage/sms/{refs['first']}", status=404)
    stranger.get("/usage/letter/123", status=404)
    owner.get(f"/usage/otp/{refs['first']}", status=404)  # an SMS has one address, under its own kind
    owner.get(f"/usage/voice/{refs['first']}", status=404)


def test_the_detail_links_back_to_the_filtered_list(app, usage):
    owner, _, refs = usage
    row = owner.page("/usage?range=last-month&product=sms").select_one("[data-testid=usage-rows] tbody tr a")
    back = owner.page(row["href"]).select_one("main p a")["href"]
    assert back == "/usage?range=last-month&product=sms"
    assert owner.page(f"/usage/sms/{refs['first']}?back=https://evil.example/").select_one("main p a")["href"] == "/usage"


# -- the CSV -----------------------------------------------------------------------------------------


def test_the_csv_streams_the_filtered_rows_with_a_bom_and_the_ranges_file_name(app, usage):
    owner, _, _ = usage
    response = owner.client.get("/usage.csv?range=last-month")
    assert response.status_code == 200 and response.is_streamed
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == 'attachment; filename="chotto-usage-2026-11-01_2026-11-30.csv"'
    body = response.get_data()
    assert body.startswith(b"\xef\xbb\xbf")
    lines = body.decode("utf-8-sig").splitlines()
    assert len(lines) == 3 and "キャンペーン" in body.decode("utf-8-sig")


def test_the_csv_of_this_month_neutralises_a_formula_in_a_tag(app, usage):
    owner, _, _ = usage
    body = owner.client.get("/usage.csv?range=this-month").get_data().decode("utf-8-sig")
    assert len(body.splitlines()) == 2 and "'=SUM(A1)" in body


def test_a_bad_filter_gets_no_csv(app, usage):
    owner, _, _ = usage
    assert owner.client.get("/usage.csv?range=custom&from=nope").status_code == 400


# -- the monthly statement -----------------------------------------------------------------------


def test_the_statement_lists_each_product_and_credential_and_sums_them(app, usage):
    owner, _, _ = usage
    page = owner.page("/billing/statements?month=2026-11")
    assert text(page.select_one("[data-testid=statement-month]")) == "Statement for November 2026"
    lines = [text(row) for row in page.select("[data-testid=statement-lines] tbody tr")]
    assert lines == ["SMS web shop 2 3 segments ¥30"]
    assert page.select_one("[data-testid=statement-total]").get_text(strip=True) == "¥30"
    assert page.select_one("nav.subnav a[aria-current=page]")["href"] == "/billing/statements"
    assert page.select_one("[data-testid=statement-pdf]")["href"] == "/billing/statements/2026-11.pdf"


def test_the_statement_opens_on_this_month_and_offers_the_13_months_kept(app, usage):
    owner, _, _ = usage
    page = owner.page("/billing/statements")
    months = [option["value"] for option in page.select("select[name=month] option")]
    assert months[0] == "2026-12" and months[-1] == "2025-12" and len(months) == 13
    assert text(page.select_one("[data-testid=statement-lines] tbody tr")) == "SMS batch 1 1 segment ¥10"


def test_a_month_outside_the_kept_ones_is_named_not_a_server_error(app, usage):
    owner, _, _ = usage
    page = owner.page("/billing/statements?month=2020-13", status=400)
    assert text(page.select_one("[data-testid=month-error]")) == "Choose a month between 2025-12 and 2026-12."
    owner.get("/billing/statements/2027-01.pdf", status=404)


def test_billing_members_see_the_statement_in_japanese(app, usage):
    _, account_id, _ = usage
    billing, _ = signed_in(app, "money@example.com", role="billing", account_id=account_id, language="ja")
    page = billing.page("/billing/statements?month=2026-11")
    assert text(page.select_one("[data-testid=statement-month]")) == "2026年11月分のご利用明細"
    assert text(page.select_one("[data-testid=statement-lines] tbody tr")) == "SMS web shop 2 3セグメント ¥30"


@pytest.mark.pdf
def test_the_statement_pdf_is_a_pdf_in_either_language(app, usage):
    owner, _, _ = usage
    japanese = owner.client.get("/billing/statements/2026-11.pdf")
    assert japanese.status_code == 200 and japanese.headers["Content-Type"] == "application/pdf"
    assert japanese.get_data().startswith(b"%PDF-")
    assert japanese.headers["Content-Disposition"] == 'attachment; filename="chotto-statement-2026-11.pdf"'
    english = owner.client.get("/billing/statements/2026-11.pdf?lang=en")
    assert english.headers["Content-Disposition"] == 'attachment; filename="chotto-statement-2026-11-en.pdf"'
    assert english.get_data() != japanese.get_data()
    owner.get("/billing/statements/2026-11.pdf?lang=fr", status=404)


def test_an_otp_messages_text_is_never_shown_as_it_holds_the_code_until_the_carrier_has_it(app, usage):
    from sqlalchemy import insert

    from portal.messaging.api_models import Message

    owner, account_id, refs = usage
    with db_session(app) as session:
        credential_id = session.scalar(select(Message.credential_id).where(Message.msgid == refs["first"]))
        session.execute(insert(Message.__table__).values(
            msgid="a" * 32, account_id=account_id, credential_id=credential_id, mode="live", product="otp",
            sender="Chotto", recipient=NUMBER, country="JP", body="Your code for shop.example.com is 307459.",
            encoding="GSM-7", segments=1, cost=3000, status="QUEUED", tags="", created_at=app.config["CLOCK"](),
            updated_at=app.config["CLOCK"]()))
        session.commit()
    assert "307459" not in owner.text("/usage/otp/" + "a" * 32)
    assert "Your parcel is on its way" in owner.text(f"/usage/sms/{refs['first']}")  # an SMS's own text is shown


def test_exports_are_limited_per_person(app_with):
    app = app_with(RATELIMIT_ENABLED=True, USAGE_EXPORT_RATE_LIMIT="2 per hour")
    make_user(app, email="finance@example.com")
    client = PageClient(app.test_client(), app)
    client.login("finance@example.com")
    statuses = [client.client.get("/usage.csv?range=today").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def _calls(app, account_id, credential_name, *durations_and_statuses):
    """Live voice calls on 20 November (Japan time) through the named credential: (seconds, status)."""
    with db_session(app) as session:
        credential_id = session.scalars(select(Credential.id).where(Credential.account_id == account_id,
                                                                    Credential.name == credential_name)).one()
        for number, (seconds, status) in enumerate(durations_and_statuses):
            session.execute(insert(CALLS).values(
                callid=f"c{credential_id}{number:030d}", account_id=account_id, credential_id=credential_id,
                mode="live", product="voice", caller="0312345678", recipient=NUMBER, country="JP", unit_price=10_000,
                status=status, duration=seconds, cost=-(-seconds // 60) * 10_000, tags="",
                created_at=datetime(2026, 11, 20, 3, number, tzinfo=timezone.utc),
                ended_at=datetime(2026, 11, 20, 3, number, 30, tzinfo=timezone.utc)))  # a statement counts ended calls
        session.commit()


@pytest.mark.parametrize("language, expected, statuses", [
    ("en", ["SMS web shop 2 3 segments ¥30", "Voice call batch 2 2 calls not answered or not placed (no charge) ¥0",
            "Voice call web shop 3 3 minutes, 1 call not answered or not placed (no charge) ¥30"],
     ["Answered", "Call failed", "Not answered", "Not answered", "Answered"]),
    ("ja", ["SMS web shop 2 3セグメント ¥30", "音声通話 batch 2 未応答・未発信2件（料金なし） ¥0",
            "音声通話 web shop 3 3分、未応答・未発信1件（料金なし） ¥30"],
     ["応答あり", "発信失敗", "応答なし", "応答なし", "応答あり"]),
])
def test_calls_not_answered_read_as_such_on_the_statement_and_in_the_list(app, usage, language, expected, statuses):
    """A call not answered, or that could not be placed (FAILED), costs nothing: the statement
    counts it with the calls and says "not answered or not placed" instead of a bare "0 minutes
    ¥0"; the list's status reads "Not answered" for one that rang out, "Call failed" for one
    that could not be placed."""
    _, account_id, _ = usage
    _calls(app, account_id, "web shop", (61, "ANSWERED"), (0, "ANSWERED"), (30, "ANSWERED"))
    _calls(app, account_id, "batch", (0, "ANSWERED"), (0, "FAILED"))
    billing, _ = signed_in(app, "money@example.com", role="billing", account_id=account_id, language=language)
    page = billing.page("/billing/statements?month=2026-11")
    assert [text(row) for row in page.select("[data-testid=statement-lines] tbody tr")] == expected
    listed = billing.page("/usage?range=custom&from=2026-11-20&to=2026-11-20")
    assert [text(row.select("td")[5]) for row in listed.select("[data-testid=usage-rows] tbody tr")] == statuses
