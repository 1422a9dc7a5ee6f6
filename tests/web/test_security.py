import logging
import re

import pytest

from portal import create_app
from portal.config import UnsafeConfiguration
from tests.conftest import TEST_SECRET
from tests.helpers import PASSWORD, PageClient, last_link, make_user


def test_every_route_is_listed_here(app):
    """A new route must be added to ROUTES below, so its headers and guards are checked."""
    assert sorted({str(rule) for rule in app.url_map.iter_rules()}) == sorted(ROUTES)


ROUTES = [
    "/", "/pricing", "/language/<lang>", "/signup", "/signup/check-email", "/signup/resend",
    "/verify-email/<token>", "/login", "/logout", "/password/forgot", "/reset-password/<token>",
    "/reauthenticate", "/verify-phone/", "/verify-phone/code", "/verify-phone/resend", "/dashboard",
    "/credit/statement", "/dashboard/test-sms", "/dashboard/test-sms/<msgid>",
    "/team", "/team/invitations", "/team/invitations/<int:invitation_id>/revoke",
    "/team/members/<int:membership_id>/role", "/team/members/<int:membership_id>/remove",
    "/invitations/<token>", "/test-inbox", "/profile/", "/profile/password",
    "/profile/sessions/<int:session_id>/end", "/profile/account/<int:account_id>",
    "/dev/mailbox/", "/dev/mailbox/<int:mail_id>", "/static/<path:filename>",
    "/legal/commercial-transactions", "/billing/profile", "/credit/buy", "/credit/buy/confirm", "/credit/purchases",
    "/credit/purchases/<public_id>", "/billing/invoices", "/billing/invoices/<number>.pdf", "/billing/invoices.csv",
    "/billing/invoice-billing", "/billing/invoice-billing/invoices/<number>.pdf",
    "/billing/statements", "/billing/statements/<int:year>-<int:month>.pdf", "/usage", "/usage.csv",
    "/usage/<kind>/<ref>",
    "/webhooks/stripe",
    "/sandbox/checkout/<session_id>", "/credentials", "/credentials/<int:credential_id>/rotate",
    "/credentials/<int:credential_id>/revoke", "/credentials/<int:credential_id>/sites", "/api/docs",
    "/api/openapi.json",
    "/credentials/<int:credential_id>/callback-secret", "/credentials/<int:credential_id>/callback-secret/rotate",
    "/sms/messages/", "/sms/messages", "/sms/messages/<msgid>", "/sms/messages/<msgid>/", "/voice/simple/playbacks/",
    "/voice/simple/playbacks", "/voice/calls/<callid>", "/voice/calls/<callid>/", "/you/credits/", "/you/credits",
    "/otp/register-website/", "/otp/register-website", "/otp/request/", "/otp/request", "/otp/verify/", "/otp/verify",
    "/otp-sites", "/otp-sites/<int:site_id>", "/otp-sites/<int:site_id>/check", "/otp-sites/<int:site_id>/try",
    "/otp-sites/<int:site_id>/try/<msgid>", "/otp-sites/<int:site_id>/try/verify", "/otp-sites/<int:site_id>/settings",
    "/otp-sites/<int:site_id>/preview", "/otp-sites/<int:site_id>/activity", "/otp-sites/<int:site_id>/resume",
    "/otp-sites/<int:site_id>/blocked/<int:block_id>/lift",
    "/alerts", "/alerts/thresholds", "/alerts/recipients", "/alerts/addresses", "/alerts/addresses/<int:address_id>/remove",
    "/alerts/channels", "/alerts/webhook-secret", "/alerts/test", "/alerts/test/<notice_id>", "/alerts/history",
    "/alerts/confirm/<token>", "/alerts/unsubscribe/<token>",
]


def _concrete(rule: str) -> str:
    return re.sub(r"<(?:int:)?(?:path:)?(\w+)>", lambda m: {"lang": "ja", "filename": "css/app.css"}.get(m.group(1), "1"), rule)


@pytest.mark.parametrize("signed_in", [False, True])
def test_security_headers_on_every_route(app, signed_in):
    make_user(app)
    client = PageClient(app.test_client(), app)
    if signed_in:
        client.login("owner@example.com")
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.client.open(_concrete(rule.rule), method=method)
            headers = response.headers
            assert "max-age=31536000; includeSubDomains" in headers["Strict-Transport-Security"], rule
            csp = headers["Content-Security-Policy"]
            for directive in ("object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'", "script-src 'self'"):
                assert directive in csp, (rule, directive)
            assert "unsafe-inline" not in csp
            assert headers["X-Content-Type-Options"] == "nosniff"
            assert headers["Referrer-Policy"] == "no-referrer"


def test_every_state_changing_route_is_post_only(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        assert rule.methods <= {"GET", "HEAD", "OPTIONS", "POST"}, rule
        if "GET" in rule.methods:
            assert rule.rule not in ("/logout", "/signup/resend"), rule


def test_a_post_without_csrf_token_is_refused(app):
    make_user(app)
    client = PageClient(app.test_client(), app)
    response = client.post("/login", {"email": "owner@example.com", "password": PASSWORD}, csrf=False)
    assert response.status_code == 400
    assert "This form has expired" in response.get_data(as_text=True)
    client.login("owner@example.com")
    assert client.post("/logout", csrf=False).status_code == 400
    client.get("/dashboard", status=200)


def test_htmx_requests_carry_the_token_in_a_header(app):
    make_user(app)
    client = PageClient(app.test_client(), app)
    client.login("owner@example.com")
    token = re.search(r'"X-CSRFToken": "([^"]+)"', client.get("/team").get_data(as_text=True)).group(1)
    response = client.client.post("/profile/sessions/999/end", headers={"HX-Request": "true", "X-CSRFToken": token})
    assert response.status_code == 200
    assert client.client.post("/profile/sessions/999/end", headers={"HX-Request": "true"}).status_code == 400


def test_a_cross_site_post_is_refused_even_with_a_token(app):
    make_user(app)
    client = PageClient(app.test_client(), app)
    response = client.post(
        "/login", {"email": "owner@example.com", "password": PASSWORD}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert response.status_code == 403
    response = client.post("/login", {"email": "owner@example.com", "password": PASSWORD}, headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    same = client.post("/login", {"email": "owner@example.com", "password": PASSWORD}, headers={"Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 302


def test_production_cookies_are_host_prefixed_secure_httponly_and_lax(database_url):
    app = create_app(PRODUCTION | {"DATABASE_URL": database_url})
    response = app.test_client().get("/login", base_url="https://portal.chotto.test")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__Host-chotto=")
    for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert flag in cookie
    assert "Domain=" not in cookie
    app.extensions["portal.engine"].dispose()


PRODUCTION = {
    "ENV": "production", "SECRET_KEY": TEST_SECRET, "BASE_URL": "https://portal.chotto.test",
    "SMTP_URL": "smtp://mail.chotto.test:587", "STRIPE_SECRET_KEY": "sk_live_configured",
    "STRIPE_WEBHOOK_SECRET": "whsec_configured", "ISSUER_NAME": "Chotto KK", "ISSUER_REGISTRATION_NUMBER": "T7000012050002",
    "LEGAL_REPRESENTATIVE": "Hanako Yamada", "LEGAL_ADDRESS": "1-1 Chiyoda, Tokyo", "LEGAL_PHONE": "03-0000-0000",
    "LEGAL_EMAIL": "support@chotto.test",
}


@pytest.mark.parametrize(
    "overrides",
    [{}, {"SECRET_KEY": "short"}, {"BASE_URL": "http://portal.example"}, {"DEBUG": True}, {"ENV": "staging"},
     {"SMTP_URL": ""}, {"STRIPE_SECRET_KEY": ""}, {"STRIPE_SECRET_KEY": "sk_test_a_test_mode_key"},
     {"STRIPE_WEBHOOK_SECRET": ""},
     {"ISSUER_REGISTRATION_NUMBER": "T7123456789012"}, {"ISSUER_REGISTRATION_NUMBER": "T7000012050003"},
     {"ISSUER_NAME": "Chotto sample issuer (development only)"}, {"LEGAL_ADDRESS": " "}, {"MIN_PURCHASE_YEN": 119}],
)
def test_production_refuses_to_start_with_unsafe_settings(overrides):
    settings = PRODUCTION | overrides
    if not overrides:
        settings.pop("SECRET_KEY")
    with pytest.raises(UnsafeConfiguration):
        create_app(settings)


def test_an_unexpected_error_shows_a_generic_page_and_is_logged(app, caplog):
    @app.get("/boom")
    def boom():
        raise RuntimeError("SELECT secret FROM somewhere")

    response = app.test_client().get("/boom")
    body = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "Something went wrong on our side" in body
    assert "Traceback" not in body and "SELECT" not in body
    assert "unhandled error on GET /boom" in caplog.text


def test_the_development_mailbox_does_not_exist_in_production(database_url):
    app = create_app(PRODUCTION | {"DATABASE_URL": database_url})
    assert app.test_client().get("/dev/mailbox/", base_url="https://portal.chotto.test").status_code == 404
    app.extensions["portal.engine"].dispose()


def test_a_fresh_install_has_no_users(session):
    from sqlalchemy import func, select

    from portal.accounts.models import User

    assert session.scalar(select(func.count()).select_from(User)) == 0


def test_no_password_code_or_link_token_reaches_the_logs(app, client, caplog):
    caplog.set_level(logging.DEBUG)
    client.post("/signup", {"name": "Ann", "email": "ann@example.com", "password": PASSWORD, "account_kind": "individual",
                            "tax_residency": "JP", "language": "en"})
    link = last_link(app, "ann@example.com", "/verify-email/")
    client.get(link, status=302)
    client.post("/verify-phone/", {"phone": "09012345678"})
    from tests.helpers import inbox_codes

    [code] = inbox_codes(app)
    client.post("/verify-phone/code", {"code": code})
    client.post("/logout")
    client.post("/login", {"email": "ann@example.com", "password": "wrong password entirely"})
    token = link.rsplit("/", 1)[1]
    assert PASSWORD not in caplog.text and "wrong password entirely" not in caplog.text
    assert token not in caplog.text and code not in caplog.text
    assert "login failed" in caplog.text and "email verified" in caplog.text and "phone verified" in caplog.text


def test_the_redaction_filter_scrubs_link_tokens_from_access_logs():
    from portal import _RedactSecrets

    record = logging.LogRecord("werkzeug", logging.INFO, "", 0, '"GET /verify-email/%s HTTP/1.1" 302', ("A" * 43,), None)
    _RedactSecrets().filter(record)
    assert "A" * 43 not in record.getMessage() and "/verify-email/[redacted]" in record.getMessage()
    for path in ("alerts/confirm", "alerts/unsubscribe"):
        token = "1.expiry.0123456789abcdef0123456789abcdef.6f776e6572" if path == "alerts/unsubscribe" else "B" * 43
        record = logging.LogRecord("werkzeug", logging.INFO, "", 0, '"POST /%s/%s HTTP/1.1" 200', (path, token), None)
        _RedactSecrets().filter(record)
        assert token not in record.getMessage() and f"/{path}/[redacted]" in record.getMessage()


def test_log_in_is_rate_limited_per_ip_with_retry_after(app_with):
    app = app_with(RATELIMIT_ENABLED=True, LOGIN_RATE_LIMIT="3 per minute")
    client = PageClient(app.test_client(), app)
    statuses = [
        client.post("/login", {"email": f"u{i}@example.com", "password": "wrong password here"}).status_code
        for i in range(4)
    ]
    assert statuses == [422, 422, 422, 429]
    last = client.post("/login", {"email": "u9@example.com", "password": "wrong password here"})
    assert last.status_code == 429 and int(last.headers["Retry-After"]) > 0
    other_ip = client.client.post("/login", data={}, environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert other_ip.status_code == 400  # not limited; refused only for its missing CSRF token


def test_rate_limits_are_shared_through_redis_when_configured(app_with):
    """Two processes of the portal count together. Each test process has a Redis database of
    its own (15, 14, …), so parallel test processes never touch each other's counters."""
    import os

    import redis

    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    url = f"redis://127.0.0.1:6379/{15 - worker % 8}"
    connection = redis.Redis.from_url(url)
    connection.flushdb()
    settings = dict(RATELIMIT_ENABLED=True, LOGIN_RATE_LIMIT="2 per minute", REDIS_URL=url)
    app, other_process = app_with(**settings), app_with(**settings)
    first, second = PageClient(app.test_client(), app), PageClient(other_process.test_client(), other_process)
    try:
        statuses = [c.post("/login", {"email": "a@example.com", "password": "wrong password here"}).status_code
                    for c in (first, second, first)]
        assert statuses == [422, 422, 429]
        assert connection.keys("LIMITS*")
    finally:
        connection.flushdb()
