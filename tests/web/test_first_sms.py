"""The dashboard's "send a test SMS to my phone": owners and developers send one through the API's
own send path with a test credential the dashboard makes once and reuses; it arrives in the test
inbox, shown in place, and costs nothing. The getting-started checklist ticks itself."""

import re

from bs4 import BeautifulSoup
from sqlalchemy import select

from portal.accounts.models import Membership
from portal.credentials.models import Credential
from portal.ledger import service as ledger
from portal.mail import DevMail
from portal.messaging.api_models import Message
from portal.onboarding.models import DashboardCredential
from tests.helpers import PageClient, db_session, deliver_outbox, make_user

HTMX = {"HX-Request": "true"}
PHONE = "+819012345678"


def signed_in(app, email="owner@example.com", phone=PHONE, role=None, account_of=None):
    """A person signed in; with `role`, a member of `account_of`'s account working in it."""
    user = make_user(app, email=email, phone=phone)
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


def attempt_of(page) -> str:
    return page.select_one("#first-sms form input[name=attempt]")["value"]


def press(client, *, attempt=None, htmx=True):
    attempt = attempt or attempt_of(client.page("/dashboard"))
    return client.post("/dashboard/test-sms", {"attempt": attempt}, headers=HTMX if htmx else None)


def panel(html: str):
    return BeautifulSoup(html, "html.parser").select_one("[data-testid=first-sms]")


def text(element) -> str:
    return " ".join(element.get_text(" ").split())


def messages(app) -> list[Message]:
    with db_session(app) as session:
        return list(session.scalars(select(Message).order_by(Message.id)))


def dashboard_credentials(app) -> list[Credential]:
    with db_session(app) as session:
        return list(session.scalars(select(Credential).join(
            DashboardCredential, DashboardCredential.credential_id == Credential.id).order_by(Credential.id)))


def test_the_test_sms_goes_to_the_verified_phone_and_arrives_in_place_for_free(app):
    client, account_id = signed_in(app)
    response = press(client)
    assert response.status_code == 200
    fragment = response.get_data(as_text=True)
    assert "<html" not in fragment and fragment.lstrip().startswith('<div class="first-sms"')
    waiting = panel(fragment)
    [message] = messages(app)
    assert waiting["hx-get"] == f"/dashboard/test-sms/{message.msgid}" and "every 1s" in waiting["hx-trigger"]
    assert "Sending to 090-1234-5678: Queued" in text(waiting)  # a Japanese number in its national form
    assert (message.mode, message.recipient, message.sender, message.cost) == ("test", PHONE, "Chotto", 0)

    deliver_outbox(app)
    arrived = panel(client.get(f"/dashboard/test-sms/{message.msgid}", headers=HTMX).get_data(as_text=True))
    assert not arrived.has_attr("hx-trigger")  # delivered: the polling stops
    assert "It arrived in the test inbox. Nothing was charged." in text(arrived)
    assert "Hello from Chotto!" in text(arrived.select_one("[data-testid=arrived-sms]"))
    assert arrived.select_one("form button").get_text(strip=True) == "Send another test SMS"

    page = client.page("/dashboard")
    assert page.select_one("[data-testid=available]").get_text(strip=True) == "¥50"
    assert [row.select("td")[1].get_text(strip=True) for row in page.select("#statement tbody tr")] == ["Trial credit"]
    assert "Hello from Chotto!" in client.text("/test-inbox")


def test_the_panel_is_a_live_region_around_what_changes(app):
    client, _ = signed_in(app)
    region = client.page("/dashboard").select_one("#first-sms [role=status]")
    assert region is not None and region.select_one("[data-testid=first-sms]") is not None


def test_without_javascript_the_button_posts_and_the_dashboard_shows_the_message(app):
    client, _ = signed_in(app)
    response = press(client, htmx=False)
    assert response.status_code == 303
    [message] = messages(app)
    assert response.headers["Location"] == f"/dashboard/test-sms/{message.msgid}"
    page = client.page(response.headers["Location"])
    assert page.select_one("[data-testid=available]") is not None  # the whole dashboard
    assert page.select_one("#first-sms noscript a")["href"] == f"/dashboard/test-sms/{message.msgid}"
    deliver_outbox(app)
    assert "It arrived in the test inbox." in text(client.page(response.headers["Location"]).select_one("#first-sms"))


def test_the_dashboard_creates_its_test_credential_once_and_reuses_it(app):
    client, account_id = signed_in(app)
    press(client)
    press(client)
    assert len(messages(app)) == 2
    [credential] = dashboard_credentials(app)
    assert (credential.mode, credential.name, credential.scope_list) == ("test", "Dashboard test SMS", ["sms", "read"])
    assert {m.credential_id for m in messages(app)} == {credential.id}
    deliver_outbox(app)
    with db_session(app) as session:
        created = session.scalars(select(DevMail.subject).where(DevMail.subject.contains("credential"))).all()
    assert len(created) == 1  # the owners hear of it once, not once per test
    listing = client.text("/credentials")
    assert "Dashboard test SMS" in listing


def test_a_revoked_dashboard_credential_is_replaced_by_a_new_one(app):
    client, _ = signed_in(app)
    press(client)
    [first] = dashboard_credentials(app)
    client.post(f"/credentials/{first.id}/revoke", {}, status=302)
    press(client)
    old, new = dashboard_credentials(app)
    assert old.id == first.id and new.revoked_at is None and messages(app)[-1].credential_id == new.id


def test_pressing_the_same_button_twice_sends_once(app):
    client, _ = signed_in(app)
    attempt = attempt_of(client.page("/dashboard"))
    first = press(client, attempt=attempt)
    second = press(client, attempt=attempt)
    assert len(messages(app)) == 1
    assert panel(first.get_data(as_text=True))["hx-get"] == panel(second.get_data(as_text=True))["hx-get"]
    assert attempt_of(client.page("/dashboard")) != attempt  # each rendering is a new press


def test_a_post_without_a_well_formed_attempt_is_refused(app):
    client, _ = signed_in(app)
    client.post("/dashboard/test-sms", {}, status=400)
    client.post("/dashboard/test-sms", {"attempt": "short"}, status=400)
    assert messages(app) == [] and dashboard_credentials(app) == []


def test_without_a_verified_phone_the_panel_asks_for_one_first(app):
    client, _ = signed_in(app, phone=None)
    first_sms = client.page("/dashboard").select_one("[data-testid=first-sms]")
    assert "verify it first" in text(first_sms) and first_sms.select_one("a[href='/verify-phone/']")
    assert first_sms.select_one("form") is None
    response = client.post("/dashboard/test-sms", {"attempt": "a" * 32}, headers=HTMX, status=200)
    assert panel(response.get_data(as_text=True)).select_one("a[href='/verify-phone/']")
    assert messages(app) == [] and dashboard_credentials(app) == []


def test_a_developer_may_send_and_the_credential_is_the_accounts(app):
    _, account_id = signed_in(app)
    developer, _ = signed_in(app, email="dev@example.com", phone="+819087654321", role="developer",
                             account_of=account_id)
    press(developer)
    [message] = messages(app)
    assert (message.account_id, message.recipient) == (account_id, "+819087654321")
    [credential] = dashboard_credentials(app)
    assert credential.account_id == account_id


def test_a_billing_member_sees_no_panel_and_cannot_send(app):
    owner, account_id = signed_in(app)
    press(owner)
    [message] = messages(app)
    billing, _ = signed_in(app, email="billing@example.com", phone="+819087654321", role="billing",
                           account_of=account_id)
    page = billing.page("/dashboard")
    assert page.select_one("#first-sms") is None
    billing.post("/dashboard/test-sms", {"attempt": "a" * 32}, status=403)
    billing.get(f"/dashboard/test-sms/{message.msgid}", status=403)
    assert len(messages(app)) == 1


def test_nobody_sees_another_accounts_test_sms(app):
    owner, _ = signed_in(app)
    press(owner)
    [message] = messages(app)
    stranger, _ = signed_in(app, email="stranger@example.com", phone="+819087654321")
    stranger.get(f"/dashboard/test-sms/{message.msgid}", status=404)
    stranger.get("/dashboard/test-sms/" + "0" * 32, status=404)


def checklist(client) -> dict[str, bool]:
    element = client.page("/dashboard").select_one("[data-testid=checklist]")
    if element is None:
        return {}
    return {re.sub(r"^Done: ", "", text(item)).split(" — ")[0]: "done" in (item.get("class") or [])
            for item in element.select("li")}


def test_the_checklist_ticks_itself_from_what_happened(app):
    client, account_id = signed_in(app)
    steps = checklist(client)
    assert steps["Send a test SMS to your phone"] is False and steps["Create an API credential"] is False
    assert steps["Buy credit"] is False and steps["Mobile number verified: 090-1234-5678"] is True

    fragment = press(client).get_data(as_text=True)
    beside = BeautifulSoup(fragment, "html.parser").select_one("#get-started[hx-swap-oob=true]")
    assert "Test SMS sent" in text(beside)  # the checklist on the page ticks with the panel's answer
    steps = checklist(client)
    assert steps["Test SMS sent"] is True
    assert steps["Create an API credential"] is False  # the dashboard's own credential is not yours to use

    client.post("/credentials", {"name": "server", "mode": "test", "scopes": ["sms"], "networks": "",
                                 "monthly_cap": ""}, status=200)
    assert checklist(client)["API credential created"] is True

    with db_session(app) as session:
        ledger.grant_purchase(session=session, account_id=account_id, amount=1000 * 1000,
                              paid_at=app.config["CLOCK"](), payment_ref="pi_1", now=app.config["CLOCK"]())
    assert checklist(client) == {}  # every step done: the checklist makes way


def test_a_billing_member_is_asked_only_for_what_billing_does(app):
    _, account_id = signed_in(app)
    billing, _ = signed_in(app, email="billing@example.com", phone="+819087654321", role="billing",
                           account_of=account_id)
    steps = checklist(billing)
    assert "Buy credit" in steps and "Create an API credential" not in steps
    assert "Send a test SMS to your phone" not in steps
