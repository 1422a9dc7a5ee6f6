from datetime import timedelta

from sqlalchemy import select

from portal.accounts.models import Membership
from portal.ledger import service
from tests.helpers import PageClient, db_session, inbox_codes, make_user

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
