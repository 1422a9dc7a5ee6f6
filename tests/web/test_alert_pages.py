"""The balance alert pages: owners and billing members set the thresholds, the recipients (an
extra address receives nothing until it confirms by the mailed link) and the channels, send a
test to a webhook on a local server and watch its result in place, and read the history of what
was sent. Developers are refused, another account's settings and notices are never shown, every
mistake is named with the input kept, and every form needs its CSRF token."""

import hashlib
import json
import re

import pytest
from bs4 import BeautifulSoup
from sqlalchemy import select

from portal.accounts.models import Membership
from portal.alerts.models import AlertAddress, Notice
from portal.ledger import service as ledger
from portal.mail import DevMail
from portal.outbox import OutboxMessage
from tests.api.conftest import fund
from tests.helpers import PageClient, db_session, deliver_outbox, make_user
from tests.hooks import HookServer, signed_by

HTMX = {"HX-Request": "true"}
PHONE = "+819012345678"


def signed_in(app, email="owner@example.com", phone=PHONE, role=None, account_of=None):
    """A person signed in; with `role`, a member of `account_of`'s account working in it."""
    user = make_user(app, email=email, phone=phone, name=email.split("@")[0].title())
    client = PageClient(app.test_client(), app)
    client.login(email)
    with db_session(app) as session:
        own = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
        if role is None:
            return client, own
        session.add(Membership(account_id=account_of, user_id=user.id, role=role, created_at=app.config["CLOCK"]()))
        session.commit()
    client.post(f"/profile/account/{account_of}", {}, status=302)
    return client, account_of


def text(element) -> str:
    return " ".join(element.get_text(" ").split())


def set_thresholds(client, *amounts, status=303):
    values = dict(zip(("threshold_1", "threshold_2", "threshold_3"), [str(a) for a in amounts]))
    return client.post("/alerts/thresholds", values, status=status)


def channels(client, **values):
    form = {"email": "y", "webhook_url": "", "expiry_warnings": "y", "run_out": "y", "run_out_days": "7"} | values
    return client.post("/alerts/channels", {k: v for k, v in form.items() if v is not None})


def debit(app, account_id, yen, key):
    with db_session(app) as session:
        ledger.debit(session=session, account_id=account_id, amount=yen * 1000, idempotency_key=key, reason="usage",
                     now=app.config["CLOCK"]())


# -- who may see the pages ----------------------------------------------------------------------------


def test_owners_and_billing_members_reach_the_pages_from_the_billing_navigation(app):
    owner, account_id = signed_in(app)
    billing, _ = signed_in(app, "finance@example.com", phone=None, role="billing", account_of=account_id)
    for client in (owner, billing):
        purchases = client.page("/credit/purchases")
        assert purchases.select_one("nav.subnav a[href='/alerts']")
        page = client.page("/alerts")
        assert text(page.select_one("h1")) == "Balance alerts"
        assert page.select_one("nav.subnav a[href='/alerts'][aria-current=page]")
        assert client.page("/alerts/history").select_one("h1")


def test_developers_are_refused_every_alert_page_and_form(app):
    owner, account_id = signed_in(app)
    developer, _ = signed_in(app, "dev@example.com", phone=None, role="developer", account_of=account_id)
    assert not developer.page("/dashboard").select_one("a[href='/alerts']")
    for path in ("/alerts", "/alerts/history", "/alerts/test/abc"):
        developer.get(path, status=403)
    for path in ("/alerts/thresholds", "/alerts/recipients", "/alerts/addresses", "/alerts/channels",
                 "/alerts/webhook-secret", "/alerts/test", "/alerts/addresses/1/remove"):
        assert developer.post(path, {"threshold_1": "5"}).status_code == 403, path
    assert "¥5" not in owner.text("/alerts")


def test_a_new_account_starts_with_one_threshold_of_100_yen_and_the_expiry_warnings_on(app):
    owner, _ = signed_in(app)
    page = owner.page("/alerts")
    assert page.select_one("input[name=threshold_1]")["value"] == "100"
    assert page.select_one("input[name=threshold_2]").get("value", "") == ""
    assert page.select_one("input[name=expiry_warnings]").has_attr("checked")
    assert page.select_one("input[name=email]").has_attr("checked")
    assert not page.select_one("input[name=sms]").has_attr("checked")
    assert page.select_one("input[name=run_out_days]")["value"] == "7"
    assert "charged like any SMS" in text(page.select_one("#sms-hint"))


def test_another_accounts_settings_notices_and_addresses_are_never_shown_or_touched(app):
    owner, account_id = signed_in(app)
    set_thresholds(owner, 777)
    owner.post("/alerts/addresses", {"address": "ops@example.com"}, status=303)
    fund(app, account_id, 1000)
    set_thresholds(owner, 777)
    debit(app, account_id, 500, "cross")
    deliver_outbox(app)
    with db_session(app) as session:
        notice_id = session.scalars(select(Notice.uuid)).first()
        address_id = session.scalars(select(AlertAddress.id)).one()

    stranger, _ = signed_in(app, "other@example.com", phone="+819098765432")
    for path in ("/alerts", "/alerts/history", "/dashboard"):
        seen = stranger.text(path)
        assert "777" not in seen and "ops@example.com" not in seen and "owner@example.com" not in seen, path
    stranger.get(f"/alerts/test/{notice_id}", status=404)
    stranger.post(f"/alerts/addresses/{address_id}/remove", {}, status=303)
    assert "ops@example.com" in owner.text("/alerts")


# -- thresholds ---------------------------------------------------------------------------------------


def test_thresholds_are_saved_in_yen_and_the_dashboard_says_which_is_crossed(app):
    owner, account_id = signed_in(app)
    fund(app, account_id, 1000)
    set_thresholds(owner, "¥2,000", "500", "300円")
    page = owner.page("/alerts")
    assert [page.select_one(f"input[name=threshold_{n}]")["value"] for n in (1, 2, 3)] == ["2000", "500", "300"]
    states = text(page.select_one("[data-testid=threshold-states]"))
    assert "¥2,000 — balance below it" in states and "¥500 — balance above it" in states
    line = text(owner.page("/dashboard").select_one("[data-testid=alert-line]"))
    assert "Low-balance alerts at ¥2,000, ¥500, ¥300." in line and "Your balance is below ¥2,000." in line
    set_thresholds(owner)
    assert "No low-balance alert is set." in text(owner.page("/dashboard").select_one("[data-testid=alert-line]"))


@pytest.mark.parametrize("values, field, message", [
    (("abc",), "threshold_1", "Enter a whole number of yen, for example 1000."),
    (("1.5",), "threshold_1", "Enter a whole number of yen, for example 1000."),
    (("0",), "threshold_1", "Enter an amount from ¥1 to ¥1,000,000."),
    (("2000000",), "threshold_1", "Enter an amount from ¥1 to ¥1,000,000."),
    (("500", "¥500"), "threshold_2", "This threshold is already set above."),
])
def test_a_wrong_threshold_is_named_beside_its_field_and_what_was_typed_is_kept(app, values, field, message):
    owner, _ = signed_in(app)
    response = set_thresholds(owner, *values, status=422)
    page = BeautifulSoup(response.get_data(as_text=True), "html.parser")
    assert text(page.select_one(f"#{field}-error")) == message
    assert page.select_one(f"input[name={field}]")["aria-invalid"] == "true"
    assert page.select_one(f"input[name={field}]").has_attr("autofocus")
    assert page.select_one("input[name=threshold_1]")["value"] == values[0]
    assert "¥100 — balance" in text(page)  # nothing was saved


# -- recipients and the extra address's confirmation ------------------------------------------------


def test_members_can_be_chosen_and_at_least_one_recipient_is_required(app):
    owner, account_id = signed_in(app)
    signed_in(app, "finance@example.com", phone=None, role="billing", account_of=account_id)
    page = owner.page("/alerts")
    assert page.select_one("input[name=all_members]").has_attr("checked")
    boxes = page.select("input[name=member_ids]")
    assert len(boxes) == 2
    refused = owner.post("/alerts/recipients", {}, status=422)
    assert "Choose at least one member" in text(BeautifulSoup(refused.get_data(as_text=True), "html.parser"))
    finance_id = [box["value"] for box in boxes if "Finance" in text(box.parent)][0]
    owner.post("/alerts/recipients", {"member_ids": finance_id}, status=303)
    page = owner.page("/alerts")
    assert not page.select_one("input[name=all_members]").has_attr("checked")
    assert [box["value"] for box in page.select("input[name=member_ids][checked]")] == [finance_id]


def test_an_extra_address_receives_a_link_and_nothing_else_until_it_confirms(app):
    owner, account_id = signed_in(app)
    owner.post("/alerts/addresses", {"address": "ops@example.com"}, status=303)
    assert "ops@example.com — waiting for confirmation" in owner.text("/alerts")
    deliver_outbox(app)
    with db_session(app) as session:
        (mail,) = session.scalars(select(DevMail).where(DevMail.recipient == "ops@example.com")).all()
    link = re.search(r"https://portal\.chotto\.test(/alerts/confirm/\S+)", mail.text_body).group(1)

    fund(app, account_id, 1000)
    set_thresholds(owner, 600)
    debit(app, account_id, 500, "before-confirming")
    deliver_outbox(app)
    with db_session(app) as session:
        assert session.scalars(select(DevMail).where(DevMail.recipient == "ops@example.com")).all() == [mail]

    visitor = PageClient(app.test_client(), app)
    asked = visitor.page(link)
    assert "ops@example.com" in text(asked) and "Receive the alerts at this address" in text(asked)
    assert "waiting for confirmation" in owner.text("/alerts")  # opening the link changed nothing
    confirmed = visitor.post(link, status=200)
    assert "Confirmed: ops@example.com receives the balance alerts" in text(
        BeautifulSoup(confirmed.get_data(as_text=True), "html.parser"))
    assert "ops@example.com — confirmed" in owner.text("/alerts")
    visitor.get(link, status=410)
    visitor.get("/alerts/confirm/not-a-token", status=410)


def test_the_database_holds_only_the_hash_of_the_confirmation_token(app):
    """Neither the address's row nor the outbox (before or after the mail leaves) holds the
    link's token: the worker issues it as it sends the mail and stores its SHA-256."""
    owner, _ = signed_in(app)
    owner.post("/alerts/addresses", {"address": "ops@example.com"}, status=303)
    with db_session(app) as session:
        before = session.scalars(select(AlertAddress.token_hash)).one()
        queued = session.scalars(select(OutboxMessage.payload)).all()
    assert not any("/alerts/confirm/" in payload and "{token}" not in payload for payload in queued)
    deliver_outbox(app)
    with db_session(app) as session:
        (mail,) = session.scalars(select(DevMail).where(DevMail.recipient == "ops@example.com")).all()
        row = session.scalars(select(AlertAddress)).one()
        sent = session.scalars(select(OutboxMessage.payload)).all()
    token = re.search(r"/alerts/confirm/(\S+)", mail.text_body).group(1)
    assert len(token) >= 43 and row.token_hash == hashlib.sha256(token.encode()).hexdigest() != before
    assert token not in json.dumps([getattr(row, column) for column in AlertAddress.__table__.columns.keys()],
                                   default=str)
    assert not any(token in payload for payload in sent)
    visitor = PageClient(app.test_client(), app)
    visitor.get(f"/alerts/confirm/{row.token_hash}", status=410)  # the stored hash is no link
    visitor.get(f"/alerts/confirm/{token}", status=200)
    visitor.post(f"/alerts/confirm/{token}", status=200)
    assert "ops@example.com — confirmed" in owner.text("/alerts")


def test_a_wrong_or_repeated_address_is_named_and_kept(app):
    owner, _ = signed_in(app)
    page = BeautifulSoup(owner.post("/alerts/addresses", {"address": "not an address"}, status=422)
                         .get_data(as_text=True), "html.parser")
    assert page.select_one("#address-error") and page.select_one("input[name=address]")["value"] == "not an address"
    owner.post("/alerts/addresses", {"address": "ops@example.com"}, status=303)
    page = BeautifulSoup(owner.post("/alerts/addresses", {"address": "OPS@example.com"}, status=422)
                         .get_data(as_text=True), "html.parser")
    assert text(page.select_one("#address-error")) == "This address is already on the list."


def test_a_removed_address_is_gone(app):
    owner, _ = signed_in(app)
    owner.post("/alerts/addresses", {"address": "ops@example.com"}, status=303)
    with db_session(app) as session:
        address_id = session.scalars(select(AlertAddress.id)).one()
    owner.post(f"/alerts/addresses/{address_id}/remove", {}, status=303)
    assert "ops@example.com" not in owner.text("/alerts")


# -- channels -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("values, field, message", [
    ({"webhook_url": "ftp://example.com/hook"}, "webhook_url", "Enter an http:// or https:// address."),
    ({"run_out_days": "0"}, "run_out_days", "Enter a number of days from 1 to 90."),
    ({"run_out_days": "many"}, "run_out_days", "Enter a number of days from 1 to 90."),
    ({"sms": "y", "sms_number": "+819000000000"}, "sms_number", "Choose a verified mobile number of a member."),
])
def test_a_wrong_channel_setting_is_named_and_what_was_typed_is_kept(app, values, field, message):
    owner, _ = signed_in(app)
    response = channels(owner, **values)
    assert response.status_code == 422
    page = BeautifulSoup(response.get_data(as_text=True), "html.parser")
    assert text(page.select_one(f"#{field}-error")) == message
    typed = page.select_one(f"[name={field}]")
    if typed.name == "input":
        assert typed["value"] == values[field]


def test_channels_are_saved_sms_only_to_a_verified_number_and_run_out_can_be_off(app):
    owner, _ = signed_in(app)
    assert channels(owner).status_code == 303  # saved once (see the next test for a first save)
    assert channels(owner, sms="y", sms_number=PHONE, run_out=None, run_out_days="", expiry_warnings=None,
                    webhook_url="https://hooks.example.com/chotto").status_code == 200  # the new webhook's secret shown
    page = owner.page("/alerts")
    assert page.select_one("input[name=sms]").has_attr("checked")
    assert page.select_one(f"select[name=sms_number] option[value='{PHONE}']").has_attr("selected")
    assert not page.select_one("input[name=run_out]").has_attr("checked")
    assert not page.select_one("input[name=expiry_warnings]").has_attr("checked")
    assert page.select_one("input[name=webhook_url]")["value"] == "https://hooks.example.com/chotto"


def test_the_run_out_warning_can_be_turned_off_in_the_first_save(app):
    owner, _ = signed_in(app)
    assert channels(owner, run_out=None, run_out_days="").status_code == 303
    assert not owner.page("/alerts").select_one("input[name=run_out]").has_attr("checked")


# -- the webhook test, in place -----------------------------------------------------------------------


def test_send_a_test_posts_a_signed_notice_to_the_webhook_and_shows_it_delivered_in_place(app):
    owner, _ = signed_in(app)
    with HookServer() as hook:
        url = f"http://127.0.0.1:{hook.port}/alerts"
        saved = channels(owner, webhook_url=url)
        assert saved.status_code == 200 and saved.headers["Cache-Control"] == "no-store"
        first = BeautifulSoup(saved.get_data(as_text=True), "html.parser").select_one(
            "[data-testid=webhook-secret] code").get_text()
        assert first not in owner.get("/alerts").get_data(as_text=True)  # shown once
        assert channels(owner, webhook_url=url).status_code == 303  # a secret already: not shown again
        page = owner.post("/alerts/webhook-secret", {}, status=200)
        secret = BeautifulSoup(page.get_data(as_text=True), "html.parser").select_one(
            "[data-testid=webhook-secret] code").get_text()
        assert page.headers["Cache-Control"] == "no-store" and secret != first
        assert secret not in owner.get("/alerts").get_data(as_text=True)

        sent = owner.post("/alerts/test", {}, headers=HTMX, status=200)
        panel = BeautifulSoup(sent.get_data(as_text=True), "html.parser").select_one("[data-testid=test-result]")
        assert "Waiting to be sent" in text(panel) and panel.get("hx-trigger") == "every 1s"
        deliver_outbox(app)
        (received,) = hook.received
        done = owner.page(panel["hx-get"], headers=HTMX).select_one("[data-testid=test-result]")
    assert text(done) == f"Webhook: {url} Delivered" and not done.get("hx-trigger")
    assert signed_by(received, secret)
    notice_id = panel["hx-get"].rsplit("/", 1)[-1]
    assert received.headers["X-Chotto-Notice-Id"] == notice_id
    assert json.loads(received.body)  # a JSON body
    assert "Webhook" in owner.text("/alerts/history")


def test_a_failing_webhook_shows_its_error_in_place_and_in_the_history(app):
    owner, _ = signed_in(app)
    with HookServer(status=500) as hook:
        channels(owner, webhook_url=f"http://127.0.0.1:{hook.port}/alerts")
        sent = owner.post("/alerts/test", {}, status=303)  # without JavaScript: the page shows the result
        deliver_outbox(app)
        page = owner.page(sent.headers["Location"])
    result = text(page.select_one("[data-testid=test-result]"))
    assert "Failing, will be retried" in result and "Your server answered with HTTP status 500 instead of 2xx." in result
    history = text(owner.page("/alerts/history").select_one("table"))
    assert "Failing, will be retried" in history and "Your server answered with HTTP status 500" in history
    assert "ValueError" not in history and "webhook answered" not in history  # the technical text is the operators'
    owner.post("/language/ja", {}, status=302)
    japanese = text(owner.page("/alerts/history").select_one("table"))
    assert "お客様のサーバーが2xxではなくHTTPステータス500を返しました。" in japanese and "Your server" not in japanese


def test_alert_sms_that_could_not_be_paid_or_that_the_carrier_failed_say_so_in_the_history(app):
    from portal.messaging.carrier import CarrierRejected

    class Rejecting:
        def send_sms(self, *, session, sms, now):
            raise CarrierRejected("unreachable")

    owner, account_id = signed_in(app)
    channels(owner, email=None, sms="y", sms_number=PHONE)
    fund(app, account_id, 1000)
    debit(app, account_id, 1045, "cross")  # ¥1,050 → ¥5: the ¥10 alert SMS cannot be paid
    deliver_outbox(app)
    cells = {td["data-label"]: text(td) for td in owner.page("/alerts/history").select_one("tbody tr").select("td")}
    assert cells["Channel"] == "SMS" and cells["Status"] == "Failed"
    assert cells["Last error"] == ("There was not enough credit to pay for the SMS, so it was not sent. "
                                   "Nothing was charged.")
    app.extensions["portal.carrier"] = Rejecting()
    fund(app, account_id, 1000, ref="again")  # back above ¥100 (a "recovered" notice, by SMS), then below it
    debit(app, account_id, 950, "cross again")
    deliver_outbox(app)
    newest = {td["data-label"]: text(td) for td in owner.page("/alerts/history").select_one("tbody tr").select("td")}
    assert newest["Status"] == "Failed"
    assert newest["Last error"] == "The carrier could not deliver the SMS; its price was given back."


# -- history ------------------------------------------------------------------------------------------


def test_the_history_lists_what_was_sent_to_whom_by_which_channel_newest_first_by_pages(app):
    owner, account_id = signed_in(app)
    assert "No alert has been sent yet." in owner.text("/alerts/history")
    fund(app, account_id, 1000)
    set_thresholds(owner, 500)
    debit(app, account_id, 600, "cross")
    deliver_outbox(app)
    row = owner.page("/alerts/history").select_one("table.cards tbody tr")
    cells = {td["data-label"]: text(td) for td in row.select("td")}
    assert cells["Alert"] == "Low balance" and cells["To"] == "owner@example.com"
    assert cells["Channel"] == "Mail" and cells["Status"] == "Delivered" and cells["Last error"] == "—"
    assert "12:00" in cells["Sent (Japan time)"]  # 03:00 UTC, when the clock stands

    with HookServer() as hook:
        channels(owner, email=None, webhook_url=f"http://127.0.0.1:{hook.port}/alerts")
        for _ in range(21):
            app.config["CLOCK"].advance(seconds=1)
            owner.post("/alerts/test", {}, status=303)
        deliver_outbox(app)
    first = owner.page("/alerts/history")
    assert len(first.select("table.cards tbody tr")) == 20
    assert text(first.select_one("tbody tr td[data-label=Alert]")) == "Test"
    second = owner.page("/alerts/history?page=2", headers=HTMX)
    assert [text(td) for td in second.select("td[data-label=Alert]")] == ["Test", "Low balance"]
    assert second.select_one("nav.pagination a").get_text() == "← Newer"
    owner.get("/alerts/history?page=x", status=400)


# -- CSRF -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/alerts/thresholds", "/alerts/recipients", "/alerts/addresses", "/alerts/channels",
                                  "/alerts/webhook-secret", "/alerts/test", "/alerts/addresses/1/remove"])
def test_every_alert_form_needs_its_csrf_token(app, path):
    owner, _ = signed_in(app)
    assert owner.post(path, {"threshold_1": "5", "address": "a@example.com"}, csrf=False).status_code == 400
    assert "¥5" not in owner.text("/alerts") and "a@example.com" not in owner.text("/alerts")


def test_the_confirmation_needs_its_csrf_token(app):
    owner, _ = signed_in(app)
    owner.post("/alerts/addresses", {"address": "ops@example.com"}, status=303)
    deliver_outbox(app)
    with db_session(app) as session:
        (mail,) = session.scalars(select(DevMail).where(DevMail.recipient == "ops@example.com")).all()
    link = re.search(r"https://portal\.chotto\.test(/alerts/confirm/\S+)", mail.text_body).group(1)
    PageClient(app.test_client(), app).post(link, {}, csrf=False, status=400)
    assert "waiting for confirmation" in owner.text("/alerts")
