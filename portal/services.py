"""The outside services and settings create_app configured, looked up in one typed place by the
faces, the worker and the operator commands, which pass them into the domain (domain packages
never read the app themselves)."""

from datetime import timedelta

from flask import current_app

from portal.billing.gateway import Gateway
from portal.billing.service import Issuer
from portal.mail import Mailer
from portal.messaging.carrier import Carrier
from portal.otp.ownership import Probe
from portal.outbox import OutboxKind


def carrier() -> Carrier:
    return current_app.extensions["portal.carrier"]


def mailer() -> Mailer:
    return current_app.extensions["portal.mailer"]


def gateway() -> Gateway:
    return current_app.extensions["portal.gateway"]


def webhook_secrets() -> list[str]:
    return list(current_app.extensions["portal.webhook_secrets"])


def issuer() -> Issuer:
    """The seller named on receipts and invoices."""
    return Issuer(current_app.config["ISSUER_NAME"], current_app.config["ISSUER_REGISTRATION_NUMBER"])


def base_url() -> str:
    """PORTAL_BASE_URL: links in mail and in the API's answers, never the request's Host header."""
    return current_app.config["BASE_URL"]


def callbacks_may_reach_private_addresses() -> bool:
    config = current_app.config
    return bool(config.get("CALLBACK_ALLOW_PRIVATE", config["ENV"] != "production"))


def otp_caller() -> str:
    """PORTAL_OTP_CALLER: the number the OTP fallback calls are placed from."""
    return current_app.config["OTP_CALLER"]


def ownership_over_https() -> bool:
    """OTP sites prove their domain over https; plain http only in development and tests."""
    return current_app.config["ENV"] not in ("development", "test")


def ownership_probe() -> Probe:
    """How OTP ownership checks reach sites: https and public addresses only, except in
    development and tests: plain http, local addresses, and the OTP_OWNERSHIP_PORT setting (a
    local server's port) when set."""
    config = current_app.config
    if ownership_over_https():
        return Probe()
    port = config.get("OTP_OWNERSHIP_PORT")
    return Probe(secure=False, allow_private=callbacks_may_reach_private_addresses(), port=int(port) if port else None)


def absolute_url(endpoint: str, values: dict | None = None) -> str:
    """A link for mail, from PORTAL_BASE_URL (as the mail templates' absolute_url)."""
    return current_app.config["BASE_URL"] + current_app.url_map.bind("localhost").build(endpoint, values or {})


def outbox_leases() -> dict:
    """The outbox kinds with a lease shorter than outbox.LEASE: balance alerts."""
    return {OutboxKind.ALERT: timedelta(seconds=current_app.config["ALERT_LEASE_SECONDS"])}


def alert_outside():
    """What delivering an alert needs from the app (portal.alerts.delivery.Outside). A mail or
    webhook exchange may take half the alerts' lease: the rest leaves room for recording the
    attempt, so a live worker never loses its lease mid-send."""
    from portal.alerts.delivery import Outside
    return Outside(mailer=mailer(), base_url=base_url(), secret=current_app.config["SECRET_KEY"],
                   allow_private=callbacks_may_reach_private_addresses(), links=absolute_url,
                   sms_text=_alert_sms_text, deadline=current_app.config["ALERT_LEASE_SECONDS"] / 2)


def _alert_sms_text(language: str, context: dict) -> str:
    from flask import render_template
    from flask_babel import force_locale
    with force_locale(language):
        return " ".join(render_template("sms/alert.txt", **context).split())


SAMPLE_BANK_ACCOUNT = "サンプル銀行|本店|普通|0000000|サンプル（カ"  # development and tests only


def bank_account():
    """PORTAL_BANK_TRANSFER_ACCOUNT, parsed (config.load checked it); outside production a
    clearly labelled sample when unset; None in production when unset (no line may be approved
    and no invoice issued then)."""
    from portal.postpay.rules import parse_bank_account
    raw = current_app.config["BANK_TRANSFER_ACCOUNT"]
    if not raw and current_app.config["ENV"] != "production":
        raw = SAMPLE_BANK_ACCOUNT
    return parse_bank_account(raw) if raw else None
