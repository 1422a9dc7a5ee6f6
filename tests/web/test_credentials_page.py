"""The API credentials page: owners and developers create (after a recent password), see the
token once, rotate and revoke, and see or rotate the callback signing secret after a recent
password (in that one answer only); billing members cannot."""

import re

from sqlalchemy import select

from portal.accounts.models import Membership
from portal.audit import AuditEvent
from portal.credentials import tokens
from portal.credentials.models import CallbackSecret, Credential
from tests.helpers import PASSWORD, PageClient, db_session, make_user

NEW = {"name": "production web", "mode": "live", "scopes": ["sms", "read"], "networks": "", "monthly_cap": ""}


def signed_in(app, email="owner@example.com"):
    make_user(app, email=email)
    client = PageClient(app.test_client(), app)
    client.login(email)
    return client


def test_a_token_is_shown_once_and_the_list_shows_only_its_prefix_and_last_four(app):
    client = signed_in(app)
    response = client.post("/credentials", NEW, status=200)
    assert response.headers["Cache-Control"] == "no-store"
    html = response.get_data(as_text=True)
    token = re.search(r'data-testid="token">([^<]+)<', html).group(1)
    sid = re.search(r'data-testid="sid">([^<]+)<', html).group(1)
    assert tokens.well_formed(token) and token.startswith("chotto_live_")
    listing = client.get("/credentials").get_data(as_text=True)
    assert token not in listing and f"chotto_live_…{token[-4:]}" in listing and sid in listing
    assert "SMS, Read" in listing and "sms, read" not in listing  # scopes in words
    response = client.client.get("/you/credits/", auth=(sid, token))
    assert response.status_code == 200


def test_creating_needs_a_recent_password(app, clock):
    client = signed_in(app)
    clock.advance(minutes=11)
    client.get("/dashboard")
    page = client.page("/credentials")
    assert page.select_one("form[action='/credentials']") is None and "needs your password again" in page.get_text()
    response = client.post("/credentials", NEW, status=302)
    assert response.headers["Location"].startswith("/reauthenticate")
    client.post("/reauthenticate", {"password": PASSWORD, "next": "/credentials"}, status=302)
    assert client.post("/credentials", NEW).status_code == 200


def test_rotating_with_a_stale_password_returns_to_a_page_that_exists_after_the_prompt(app, clock):
    client = signed_in(app)
    client.post("/credentials", NEW)
    with db_session(app) as session:
        credential_id = session.scalars(select(Credential.id)).one()
    clock.advance(minutes=11)
    response = client.post(f"/credentials/{credential_id}/rotate", {"overlap": "0"}, status=302)
    prompt = response.headers["Location"]
    back = client.page(prompt).select_one("input[name=next]")["value"]
    response = client.post("/reauthenticate", {"password": PASSWORD, "next": back}, status=302)
    client.get(response.headers["Location"], status=200)


def test_bad_input_is_explained(app):
    client = signed_in(app)
    response = client.post("/credentials", NEW | {"name": "", "scopes": [], "networks": "10.0.0.0/33\nnot-an-ip",
                                                  "monthly_cap": "-5"}, status=422)
    text = response.get_data(as_text=True)
    assert "This field is required." in text and "Choose at least one scope." in text
    response = client.post("/credentials", NEW | {"networks": "10.0.0.0/33"}, status=422)
    assert "10.0.0.0/33 is not an IP address or CIDR range." in response.get_data(as_text=True)
    response = client.post("/credentials", NEW | {"monthly_cap": "zero"}, status=422)
    assert "above zero" in response.get_data(as_text=True)
    with db_session(app) as session:
        assert session.scalars(select(Credential)).all() == []


def test_rotate_and_revoke_from_the_page(app):
    client = signed_in(app)
    html = client.post("/credentials", NEW).get_data(as_text=True)
    sid, first = (re.search(rf'data-testid="{name}">([^<]+)<', html).group(1) for name in ("sid", "token"))
    with db_session(app) as session:
        credential_id = session.scalars(select(Credential.id)).one()
    html = client.post(f"/credentials/{credential_id}/rotate", {"overlap": "0"}).get_data(as_text=True)
    second = re.search(r'data-testid="token">([^<]+)<', html).group(1)
    assert second != first
    assert client.client.get("/you/credits/", auth=(sid, first)).status_code == 401
    assert client.client.get("/you/credits/", auth=(sid, second)).status_code == 200
    client.post(f"/credentials/{credential_id}/revoke", {}, status=302)
    assert client.client.get("/you/credits/", auth=(sid, second)).status_code == 401
    assert "Revoked" in client.get("/credentials").get_data(as_text=True)
    client.post(f"/credentials/{credential_id}/rotate", {"overlap": "0"}, status=404)


def _owner_credential_and_a_billing_member(app):
    """An owner with one credential, and a billing member of the same account signed in there."""
    owner = signed_in(app)
    owner.post("/credentials", NEW)
    with db_session(app) as session:
        credential = session.scalars(select(Credential)).one()
    billing = make_user(app, email="billing@example.com")
    with db_session(app) as session:
        session.add(Membership(account_id=credential.account_id, user_id=billing.id, role="billing",
                               created_at=app.config["CLOCK"]()))
        session.commit()
    client = PageClient(app.test_client(), app)
    client.login("billing@example.com")
    client.post(f"/profile/account/{credential.account_id}", {}, status=302)
    return owner, credential, client


def test_billing_members_cannot_manage_credentials_and_nobody_reaches_another_accounts(app):
    owner, credential, client = _owner_credential_and_a_billing_member(app)
    client.get("/credentials", status=403)
    client.post(f"/credentials/{credential.id}/revoke", {}, status=403)
    stranger = signed_in(app, email="stranger@example.com")
    stranger.post(f"/credentials/{credential.id}/revoke", {}, status=404)


def _credential_id(app) -> int:
    with db_session(app) as session:
        return session.scalars(select(Credential.id)).one()


def _stored_secrets(app) -> list[str]:
    with db_session(app) as session:
        return list(session.scalars(select(CallbackSecret.secret).order_by(CallbackSecret.id.desc())))


def _audited(app) -> list[str]:
    with db_session(app) as session:
        return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def test_the_callback_secret_is_shown_on_demand_only_after_a_recent_password(app, clock):
    client = signed_in(app)
    client.post("/credentials", NEW, status=200)
    credential_id, (secret,) = _credential_id(app), _stored_secrets(app)
    clock.advance(minutes=11)
    page = f"/credentials/{credential_id}/callback-secret"
    response = client.post(page, {}, status=302)
    assert response.headers["Location"] == f"/reauthenticate?next={page}" and secret not in response.get_data(as_text=True)
    response = client.get(page, status=302)
    assert response.headers["Location"].startswith("/reauthenticate")
    client.post("/reauthenticate", {"password": PASSWORD, "next": page}, status=302)
    assert secret not in client.get(page).get_data(as_text=True)
    response = client.post(page, {}, status=200)
    assert response.headers["Cache-Control"] == "no-store"
    assert re.findall(r'data-testid="callback-secret">([^<]+)<', response.get_data(as_text=True)) == [secret]
    assert _audited(app)[-1] == "credential.callback_secret_shown"


def test_no_other_page_ever_contains_the_callback_secret(app):
    client = signed_in(app)
    created = client.post("/credentials", NEW, status=200).get_data(as_text=True)
    credential_id, (secret,) = _credential_id(app), _stored_secrets(app)
    client.post(f"/credentials/{credential_id}/callback-secret", {}, status=200)
    client.post(f"/credentials/{credential_id}/callback-secret/rotate", {"overlap": "24"}, status=200)
    pages = [created, client.get("/credentials").get_data(as_text=True),
             client.get(f"/credentials/{credential_id}/callback-secret").get_data(as_text=True),
             client.get("/api/docs").get_data(as_text=True)]
    for stored in [secret, *_stored_secrets(app)]:
        assert all(stored not in html for html in pages)
    assert not any(re.search(r"chotto_whsec_[0-9A-Za-z]{32}", html) for html in pages)


def test_rotating_the_callback_secret_keeps_the_old_one_signing_for_the_overlap(app, clock):
    client = signed_in(app)
    client.post("/credentials", NEW, status=200)
    credential_id, (old,) = _credential_id(app), _stored_secrets(app)
    response = client.post(f"/credentials/{credential_id}/callback-secret/rotate", {"overlap": "24"}, status=200)
    assert response.headers["Cache-Control"] == "no-store"
    new, previous = _stored_secrets(app)
    assert previous == old and new != old
    assert re.findall(r'data-testid="callback-secret">([^<]+)<', response.get_data(as_text=True)) == [new, old]
    assert _audited(app)[-1] == "credential.callback_secret_rotated"
    clock.advance(hours=24)
    client.login("owner@example.com")
    shown = client.post(f"/credentials/{credential_id}/callback-secret", {}, status=200).get_data(as_text=True)
    assert re.findall(r'data-testid="callback-secret">([^<]+)<', shown) == [new]
    clock.advance(minutes=11)
    response = client.post(f"/credentials/{credential_id}/callback-secret/rotate", {"overlap": "0"}, status=302)
    assert response.headers["Location"] == f"/reauthenticate?next=/credentials/{credential_id}/callback-secret"
    assert _stored_secrets(app)[0] == new


def test_only_managers_of_the_account_see_or_rotate_the_callback_secret(app):
    owner, credential, client = _owner_credential_and_a_billing_member(app)
    client.get(f"/credentials/{credential.id}/callback-secret", status=403)
    client.post(f"/credentials/{credential.id}/callback-secret", {}, status=403)
    client.post(f"/credentials/{credential.id}/callback-secret/rotate", {"overlap": "0"}, status=403)
    stranger = signed_in(app, email="stranger@example.com")
    stranger.get(f"/credentials/{credential.id}/callback-secret", status=404)
    stranger.post(f"/credentials/{credential.id}/callback-secret", {}, status=404)
    stranger.post(f"/credentials/{credential.id}/callback-secret/rotate", {"overlap": "0"}, status=404)
    owner.post(f"/credentials/{credential.id}/revoke", {}, status=302)
    owner.post(f"/credentials/{credential.id}/callback-secret", {}, status=404)
