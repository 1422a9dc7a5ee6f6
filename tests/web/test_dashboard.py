from datetime import timedelta

from sqlalchemy import insert, select

from portal.accounts.models import Membership
from portal.ledger import service
from tests.helpers import PageClient, db_session, inbox_codes, make_user
from tests.usage_rows import MESSAGES

YEN = 1000


def signed_in(app, **kwargs):
    user = make_user(app, **kwargs)
    client = PageClient(app.test_client(), app)
    client.login(user.email)
    with db_session(app) as session:
        account_id = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
    return client, account_id


def buy(app, account_id, yen, ref, paid_at):
    with db_session(app) as session:
        service.grant_purchase(session=session, account_id=account_id, amount=yen * YEN, paid_at=paid_at,
                               payment_ref=ref, now=app.config["CLOCK"]())


def test_verifying_the_phone_grants_the_trial_credit_once(app):
    client, account_id = signed_in(app)
    client.post("/verify-phone/", {"phone": "09012345678"}, status=302)
    [code] = inbox_codes(app)
    client.post("/verify-phone/code", {"code": code}, status=302)
    page = client.page("/dashboard")
    assert page.select_one("[data-testid=available]").get_text(strip=True) == "¥50"
    assert "Trial credit" in page.select_one("#statement").get_text()


def test_a_number_used_for_a_trial_elsewhere_gives_no_second_trial(app, clock):
    first, first_account = signed_in(app, email="first@example.com")
    first.post("/verify-phone/", {"phone": "09012345678"})
    first.post("/verify-phone/code", {"code": inbox_codes(app)[-1]}, status=302)
    clock.advance(minutes=11)
    first.post("/reauthenticate", {"password": "correct horse battery staple", "next": "/"})
    first.post("/verify-phone/?change=1", {"phone": "08011112222"})
    first.post("/verify-phone/code", {"code": inbox_codes(app)[-1]}, status=302)
    second, _ = signed_in(app, email="second@example.com")
    second.post("/verify-phone/", {"phone": "09012345678"}, status=302)
    second.post("/verify-phone/code", {"code": inbox_codes(app)[-1]}, status=302)
    assert second.page("/dashboard").select_one("[data-testid=available]").get_text(strip=True) == "¥0"
    assert first.page("/dashboard").select_one("[data-testid=available]").get_text(strip=True) == "¥50"


def test_the_dashboard_shows_lots_next_expiry_burn_rate_and_forecast(app, clock):
    client, account_id = signed_in(app, phone="+819012345678")
    buy(app, account_id, 1000, "pi_1", clock() - timedelta(days=80))
    with db_session(app) as session:
        service.debit(session=session, account_id=account_id, amount=70 * YEN, idempotency_key="k",
                      reason="sms", now=clock() - timedelta(days=1))
    page = client.page("/dashboard")
    assert page.select_one("[data-testid=available]").get_text(strip=True) == "¥980"
    text = " ".join(page.get_text(" ").split())
    assert "¥930 expires on Dec 7, 2026, 12:00:00 PM" in text  # 80 days ago + 90 days, in Japan time
    assert "¥10 a day" in text
    # At ¥10 a day only ¥100 of the ¥930 is used before it expires on Dec 7; the ¥50 trial then lasts 5 days.
    forecast = " ".join(page.select_one("[data-testid=forecast]").get_text(" ").split())
    assert "At this pace your credit lasts until December 12, 2026, when it runs out." in forecast
    assert "¥830 expires before this pace uses it." in forecast
    rows = page.select("table.lots tbody tr")
    assert [row.select("td")[0].get_text(strip=True) for row in rows] == ["Purchase", "Trial"]


def test_the_balance_panel_refreshes_itself(app):
    client, _ = signed_in(app, phone="+819012345678")
    panel = client.page("/dashboard").select_one("#balance")
    assert panel["hx-get"] == "/dashboard" and "every 30s" in panel["hx-trigger"]
    fragment = client.get("/dashboard", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert fragment.lstrip().startswith('<section id="balance"') and "<html" not in fragment


def test_the_statement_is_paginated(app, clock):
    client, account_id = signed_in(app, phone="+819012345678")
    buy(app, account_id, 1000, "pi_1", clock())
    with db_session(app) as session:
        for i in range(25):
            service.debit(session=session, account_id=account_id, amount=YEN, idempotency_key=f"k{i}", reason="sms", now=clock())
    first = client.page("/credit/statement")
    assert len(first.select("#statement tbody tr")) == 20 and "Page 1 of 2" in first.get_text()
    second = client.page("/credit/statement?page=2")
    assert len(second.select("#statement tbody tr")) == 7
    fragment = client.get("/credit/statement?page=2", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert fragment.lstrip().startswith('<section id="statement"')
    assert len(client.page("/credit/statement?page=99").select("#statement tbody tr")) == 7


def test_amounts_are_formatted_in_one_place(app):
    with app.app_context():
        yen = app.jinja_env.filters["yen"]
        assert [yen(v) for v in (0, 1000, 1_234_000, 1500, 10, -3000)] == ["¥0", "¥1", "¥1,234", "¥1.5", "¥0.01", "-¥3"]


def test_without_usage_the_forecast_says_the_credit_lasts_until_it_expires(app, clock):
    client, _ = signed_in(app, phone="+819012345678")
    forecast = " ".join(client.page("/dashboard").select_one("[data-testid=forecast]").get_text(" ").split())
    assert "No usage in the last 7 days." in forecast
    assert "Without usage, your credit lasts until February 25, 2027, when it expires." in forecast  # the trial's 90 days


def test_the_burn_rate_is_shown_in_whole_yen(app, clock):
    client, account_id = signed_in(app, phone="+819012345678")
    buy(app, account_id, 500, "pi_1", clock())
    with db_session(app) as session:  # ¥73.5 in a week is ¥10.5 a day
        service.debit(session=session, account_id=account_id, amount=73_500, idempotency_key="k", reason="sms",
                      now=clock() - timedelta(days=2))
    forecast = " ".join(client.page("/dashboard").select_one("[data-testid=forecast]").get_text(" ").split())
    assert "¥11 a day" in forecast and "¥10.5" not in forecast
    assert "when it runs out." in forecast


def _statement_lines(client, path="/credit/statement"):
    rows = client.page(path).select("#statement tbody tr")
    return [[" ".join(cell.get_text(" ").split()) for cell in row.select("td")[1:]] for row in rows]


def test_a_call_is_one_statement_line_for_what_it_cost_once_settled(app, clock):
    from tests.api.conftest import fund, new_key
    from tests.helpers import deliver_outbox

    client, account_id = signed_in(app, phone="+819012345678")
    with db_session(app) as session:
        user_id = session.scalars(select(Membership.user_id).where(Membership.account_id == account_id)).one()
    fund(app, account_id, 1000)
    key = new_key(app, account_id, user_id)
    call = {"caller": "+81312345678", "recipient": "+819012345678", "tts_message": "Hello", "tts_lang": "en"}
    assert client.client.post("/voice/simple/playbacks/", data=call, headers=key.headers).status_code == 201
    clock.advance(minutes=1)
    assert _statement_lines(client)[0] == ["Voice call in progress (credit set aside)", "-¥50", "¥1,000"]

    deliver_outbox(app)
    clock.advance(minutes=1)
    lines = _statement_lines(client)
    assert lines == [["Voice call", "-¥10", "¥1,040"], ["Credit added", "+¥1,000", "¥1,050"], ["Trial credit", "+¥50", "¥50"]]
    assert _statement_lines(client, "/dashboard") == lines


def test_the_statement_pages_count_a_call_as_one_line(app, clock):
    client, account_id = signed_in(app, phone="+819012345678")
    buy(app, account_id, 1000, "pi_1", clock())
    with db_session(app) as session:
        for i in range(9):
            held = service.hold(session=session, account_id=account_id, amount=50 * YEN, idempotency_key=f"call:{i}",
                                reason=f"call {i}", now=clock())
            service.settle(session=session, hold_id=held.id, charged=10 * YEN, now=clock())
        service.hold(session=session, account_id=account_id, amount=80 * YEN, idempotency_key="dispute",
                     reason="dispute dp_1 on purchase", now=clock())
    page = client.page("/credit/statement")
    assert "Page 1 of" not in page.get_text() and len(page.select("#statement tbody tr")) == 12
    labels = [line[0] for line in _statement_lines(client)]
    assert labels.count("Voice call") == 9 and labels[0] == "Credit set aside"  # a hold of no call stays as it is


def test_demo_usage_shows_on_the_dashboard_as_on_the_usage_pages_last_7_days(app, clock):
    """Demo rows are usage only (no ledger debit): the dashboard's usage figures come from the
    usage history, as /usage does, and the forecast says no credit was spent."""
    client, _ = signed_in(app, phone="+819012345678", email="demo@example.com")
    result = app.test_cli_runner().invoke(args=["demo", "seed", "demo@example.com", "--usage", "3000", "--seed", "7"])
    assert result.exit_code == 0, result.output
    usage = client.page("/usage?range=7d")
    count, cost = (usage.select_one(f"[data-testid=total-{name}]").get_text(strip=True) for name in ("count", "cost"))
    assert int(count.replace(",", "")) > 1
    page = client.page("/dashboard")
    assert page.select_one("[data-testid=recent-usage]").get_text(strip=True) == (
        f"{count} messages, calls and codes: {cost}")
    assert page.select_one("[data-testid=recent-usage] a")["href"] == "/usage?range=7d"
    forecast = " ".join(page.select_one("[data-testid=forecast]").get_text(" ").split())
    assert "No usage in the last 7 days." not in forecast
    assert "No credit was spent in the last 7 days: your credit lasts until February 25, 2027, when it expires." in (
        forecast)


def test_the_dashboards_usage_counts_a_test_message_that_cost_nothing(app, clock):
    client, account_id = signed_in(app, phone="+819012345678")
    with db_session(app) as session:
        session.execute(insert(MESSAGES).values(
            msgid="m" + "0" * 31, account_id=account_id, credential_id=None, mode="test", product="sms",
            sender="Chotto", recipient="+819012345678", country="JP", body="hi", encoding="GSM-7", segments=1, cost=0,
            status="DELIVERED", tags="", created_at=clock() - timedelta(days=6), updated_at=clock()))
        session.commit()
    page = client.page("/dashboard")
    assert page.select_one("[data-testid=recent-usage]").get_text(strip=True) == "1 message, call or code: ¥0"
