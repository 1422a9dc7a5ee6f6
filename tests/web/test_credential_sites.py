"""A credential with the `otp` scope limited to some of the account's OTP sites from the API
credentials page: the page shows the limit ("All OTP sites" or the list), owners and developers
change it with a CSRF-protected form (nothing ticked: every site), another account's site is
refused, billing members cannot, and the API then refuses the credential on the other sites."""

import re

from bs4 import BeautifulSoup
from sqlalchemy import select

from portal.audit import AuditEvent
from portal.credentials.models import Credential
from portal.otp.models import OtpCredentialSite
from tests.helpers import db_session
from tests.web.test_otp_pages import PHONE, register, signed_in, text

NEW = {"name": "shop server", "mode": "test", "scopes": ["otp"], "networks": "", "monthly_cap": ""}


def create(client, **changes) -> tuple[int, str, str]:
    """A credential made on the page: its id, SID and token."""
    html = client.post("/credentials", NEW | changes, status=200).get_data(as_text=True)
    sid, token = (re.search(rf'data-testid="{name}">([^<]+)<', html).group(1) for name in ("sid", "token"))
    return credential_id(client.app, sid), sid, token


def credential_id(app, sid) -> int:
    with db_session(app) as session:
        return session.scalars(select(Credential.id).where(Credential.sid == sid)).one()


def row(client, sid):
    return client.page("/credentials").select_one(f"tr[data-testid=credential-{sid}]")


def shown_limit(client, sid) -> str:
    return text(row(client, sid).select_one("[data-testid=otp-sites]"))


def ticked(client, sid) -> list[str]:
    form = row(client, sid).select_one("form.credential-sites")
    return [text(box.parent) for box in form.select("input[name=sites][checked]")]


def limit(client, credential, *site_ids, status=302, **kwargs):
    return client.post(f"/credentials/{credential}/sites", {"sites": [str(site) for site in site_ids]},
                       status=status, **kwargs)


def limited_to(app, credential) -> list[int]:
    with db_session(app) as session:
        return sorted(session.scalars(select(OtpCredentialSite.site_id)
                                      .where(OtpCredentialSite.credential_id == credential)))


def flashed(client) -> str:
    return text(client.page("/credentials").select_one(".flash"))


def test_an_otp_credential_is_limited_to_some_sites_shown_so_and_cleared_again(app):
    client, _ = signed_in(app)
    shop, blog = register(client, "shop.example.com"), register(client, "blog.example.com")
    credential, sid, _ = create(client)
    assert shown_limit(client, sid) == "OTP sites: Every OTP site" and ticked(client, sid) == []
    form = row(client, sid).select_one("form.credential-sites")
    assert [text(label) for label in form.select("label")] == ["blog.example.com", "shop.example.com"]
    assert form.select_one("input[name=csrf_token]") and "None ticked" in text(form)

    response = limit(client, credential, shop)
    assert response.headers["Location"] == "/credentials"
    assert flashed(client) == "shop server may now use only these OTP sites: shop.example.com."
    assert limited_to(app, credential) == [shop]
    assert shown_limit(client, sid) == "OTP sites: shop.example.com" and ticked(client, sid) == ["shop.example.com"]

    limit(client, credential, shop, blog)
    assert shown_limit(client, sid) == "OTP sites: blog.example.com, shop.example.com"

    limit(client, credential)
    assert flashed(client) == "shop server may now use every OTP site of the account."
    assert limited_to(app, credential) == [] and shown_limit(client, sid) == "OTP sites: Every OTP site"
    with db_session(app) as session:
        details = list(session.scalars(select(AuditEvent.detail).where(AuditEvent.action == "credential.sites_limited")
                                       .order_by(AuditEvent.id)))
    assert details == [f"shop server ({sid}): shop.example.com",
                       f"shop server ({sid}): blog.example.com, shop.example.com",
                       f"shop server ({sid}): every OTP site"]


def test_the_limit_is_offered_only_for_otp_credentials_of_an_account_with_sites(app):
    client, _ = signed_in(app)
    _, sms_sid, _ = create(client, name="sms only", scopes=["sms"])
    _, otp_sid, _ = create(client)
    for sid in (sms_sid, otp_sid):
        assert not row(client, sid).select("[data-testid=otp-sites], form.credential-sites")
    register(client, "shop.example.com")
    assert not row(client, sms_sid).select("[data-testid=otp-sites], form.credential-sites")
    assert row(client, otp_sid).select_one("form.credential-sites")


def test_another_accounts_site_or_credential_is_refused_and_nothing_changes(app):
    client, _ = signed_in(app)
    shop = register(client, "shop.example.com")
    credential, _, _ = create(client)
    limit(client, credential, shop)
    stranger, _ = signed_in(app, "stranger@example.com", phone="+819055556666")
    theirs = register(stranger, "their.example.com")
    limit(client, credential, shop, theirs, status=404)
    assert limited_to(app, credential) == [shop]
    limit(stranger, credential, theirs, status=404)
    limit(stranger, credential, status=404)
    assert limited_to(app, credential) == [shop]
    client.post(f"/credentials/{credential}/sites", {"sites": ["shop"]}, status=400)
    client.post(f"/credentials/{credential}/revoke", {}, status=302)
    limit(client, credential, status=404)


def test_billing_members_cannot_limit_a_credential(app):
    owner, account_id = signed_in(app)
    shop = register(owner, "shop.example.com")
    credential, _, _ = create(owner)
    billing, _ = signed_in(app, "money@example.com", phone="+819033334444", role="billing", account_of=account_id)
    limit(billing, credential, shop, status=403)
    assert limited_to(app, credential) == []


def test_a_developer_may_limit_a_credential(app):
    owner, account_id = signed_in(app)
    shop = register(owner, "shop.example.com")
    credential, _, _ = create(owner)
    developer, _ = signed_in(app, "dev@example.com", phone="+819011112222", role="developer", account_of=account_id)
    limit(developer, credential, shop)
    assert limited_to(app, credential) == [shop]


def test_limiting_needs_the_csrf_token(app):
    client, _ = signed_in(app)
    shop = register(client, "shop.example.com")
    credential, _, _ = create(client)
    limit(client, credential, shop, status=400, csrf=False)
    limit(client, credential, shop, status=403, headers={"Sec-Fetch-Site": "cross-site"})
    assert limited_to(app, credential) == []


def test_the_api_refuses_a_limited_credential_on_another_site_and_serves_it_on_its_own(app):
    client, _ = signed_in(app)
    shop = register(client, "shop.example.com")
    register(client, "blog.example.com")
    credential, sid, token = create(client)
    limit(client, credential, shop)

    def ask(website):
        return client.client.post("/otp/request/", data={"website": website, "phone_number": PHONE},
                                  auth=(sid, token))

    refused = ask("blog.example.com")
    assert refused.status_code == 403
    assert refused.json == {"detail": "This credential may not be used for this website."}
    assert ask("shop.example.com").status_code == 201
    limit(client, credential)
    assert ask("blog.example.com").status_code == 201


def test_the_japanese_page_shows_the_limit_in_japanese(app):
    client, _ = signed_in(app)
    client.post("/language/ja", {}, status=302)
    shop = register(client, "shop.example.com")
    credential, sid, _ = create(client)
    assert shown_limit(client, sid) == "OTPサイト：すべてのOTPサイト"
    limit(client, credential, shop)
    page = BeautifulSoup(client.get("/credentials").get_data(as_text=True), "html.parser")
    assert "shop server" in text(page.select_one(".flash")) and "shop.example.com" in text(page.select_one(".flash"))
    assert shown_limit(client, sid) == "OTPサイト：shop.example.com"


# -- the same choice when creating a credential ------------------------------------------------------


def credentials_made(app) -> list[str]:
    with db_session(app) as session:
        return list(session.scalars(select(Credential.name)))


def test_a_new_otp_credential_can_be_limited_when_it_is_created(app):
    client, _ = signed_in(app)
    assert not client.page("/credentials").select("form[action='/credentials'] input[name=sites]")
    shop, blog = register(client, "shop.example.com"), register(client, "blog.example.com")
    form = client.page("/credentials").select_one("form[action='/credentials']")
    assert [text(box.parent) for box in form.select("input[name=sites]")] == ["blog.example.com", "shop.example.com"]
    credential, sid, _ = create(client, sites=[str(blog)])
    assert limited_to(app, credential) == [blog] and shown_limit(client, sid) == "OTP sites: blog.example.com"
    credential, sid, _ = create(client, name="every site")
    assert limited_to(app, credential) == [] and shown_limit(client, sid) == "OTP sites: Every OTP site"
    assert shop not in limited_to(app, credential)


def test_sites_without_the_otp_scope_or_of_another_account_create_nothing(app):
    client, _ = signed_in(app)
    shop = register(client, "shop.example.com")
    response = client.post("/credentials", NEW | {"name": "sms", "scopes": ["sms"], "sites": [str(shop)]}, status=422)
    page = BeautifulSoup(response.get_data(as_text=True), "html.parser")
    assert "Sites limit only the OTP scope: tick OTP too, or untick the sites." in text(page)
    assert page.select_one(f"input[name=sites][value='{shop}'][checked]")
    stranger, _ = signed_in(app, "stranger@example.com", phone="+819055556666")
    theirs = register(stranger, "their.example.com")
    client.post("/credentials", NEW | {"name": "theirs", "sites": [str(shop), str(theirs)]}, status=404)
    assert credentials_made(app) == []
