"""Configuration: safe defaults ← PORTAL_* environment ← overrides passed to create_app."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEV_SECRET = "dev-only-secret-key-never-use-in-production"
SAMPLE_ISSUER = "Chotto sample issuer (development only)"
SAMPLE_REGISTRATION_NUMBER = "T7123456789012"
ENVIRONMENTS = ("development", "test", "production")


class UnsafeConfiguration(RuntimeError):
    """Raised at start-up when production would run with a development default."""


def _defaults() -> dict:
    return {
        "ENV": "production",
        "SECRET_KEY": DEV_SECRET,
        "DATABASE_URL": f"sqlite:///{ROOT / 'instance' / 'portal.sqlite3'}",
        "BASE_URL": "http://127.0.0.1:5000",
        "SMTP_URL": "",
        "MAIL_FROM": "Chotto <no-reply@chotto.localhost>",
        "REDIS_URL": "",
        "CARRIER": "test-inbox",
        "TRIAL_CREDIT_YEN": 50,
        "PROXY_HOPS": 0,
        "RATELIMIT_ENABLED": True,
        "LOGIN_RATE_LIMIT": "10 per minute;100 per hour",
        "USAGE_EXPORT_RATE_LIMIT": "30 per hour",  # per person: an export may be large
        "SIGNUP_RATE_LIMIT": "5 per minute;30 per hour",
        "STRIPE_SECRET_KEY": "",
        "STRIPE_WEBHOOK_SECRET": "",
        "MIN_PURCHASE_YEN": 1000,
        "ISSUER_NAME": SAMPLE_ISSUER,
        "ISSUER_REGISTRATION_NUMBER": SAMPLE_REGISTRATION_NUMBER,
        "LEGAL_REPRESENTATIVE": "",
        "LEGAL_ADDRESS": "",
        "LEGAL_PHONE": "",
        "LEGAL_EMAIL": "",
        "API_SEND_RATE_LIMIT": "20 per second;1200 per minute",
        "API_ACCOUNT_RATE_LIMIT": "50 per second;3000 per minute",
        "API_READ_RATE_LIMIT": "20 per second;1200 per minute",
        "API_DAILY_SPEND_CAP_YEN": 300_000,
        "OTP_CALLER": "+81312345678",  # the number OTP fallback calls come from
        "DATABASE_STATEMENT_TIMEOUT_MS": 4000,
        # how long a worker holds a balance alert it claimed: a crashed worker's alert is
        # delivered by another once this has passed (the issue promises a minute)
        "ALERT_LEASE_SECONDS": 45,
        # postpay (請求書後払い): the account invoices name for the bank transfer,
        # "bank|branch|type|number|holder" (type 普通 or 当座, 7 digits, holder in katakana);
        # required in production before any credit line is approved
        "BANK_TRANSFER_ACCOUNT": "",
        "POSTPAY_SUSPEND_AFTER_DAYS": 14,  # an invoice this many days overdue stops live sends on the line
        "POSTPAY_OPERATOR_EMAIL": "",  # who is told of a new application (default: LEGAL_EMAIL)
    }


_INTEGERS = {"TRIAL_CREDIT_YEN", "PROXY_HOPS", "MIN_PURCHASE_YEN", "API_DAILY_SPEND_CAP_YEN",
             "DATABASE_STATEMENT_TIMEOUT_MS", "ALERT_LEASE_SECONDS", "POSTPAY_SUSPEND_AFTER_DAYS"}
LEGAL_KEYS = ("LEGAL_REPRESENTATIVE", "LEGAL_ADDRESS", "LEGAL_PHONE", "LEGAL_EMAIL")
_BOOLEANS = {"RATELIMIT_ENABLED"}


def _from_environment(environ) -> dict:
    found = {}
    for key, default in _defaults().items():
        raw = environ.get(f"PORTAL_{key}")
        if raw is None:
            continue
        if key in _INTEGERS:
            found[key] = int(raw)
        elif key in _BOOLEANS:
            found[key] = raw.strip().lower() in ("1", "true", "yes", "on")
        else:
            found[key] = raw
    return found


def normalise_database_url(url: str) -> str:
    """Accept the usual postgres:// spellings and use the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def load(overrides: dict | None = None, environ=os.environ) -> dict:
    config = _defaults() | _from_environment(environ) | (overrides or {})
    config["DATABASE_URL"] = normalise_database_url(config["DATABASE_URL"])
    config["BASE_URL"] = config["BASE_URL"].rstrip("/")
    config["STRIPE_WEBHOOK_SECRETS"] = [s.strip() for s in config["STRIPE_WEBHOOK_SECRET"].split(",") if s.strip()]
    _check(config)
    return config


def _check(config: dict) -> None:
    from portal.billing.rules import valid_registration_number

    if config["ENV"] not in ENVIRONMENTS:
        raise UnsafeConfiguration(f"PORTAL_ENV must be one of {', '.join(ENVIRONMENTS)}")
    if not valid_registration_number(config["ISSUER_REGISTRATION_NUMBER"]):
        raise UnsafeConfiguration("PORTAL_ISSUER_REGISTRATION_NUMBER must be T and 13 digits with a valid check digit")
    if config["BANK_TRANSFER_ACCOUNT"]:
        from portal.postpay.rules import BadBankAccount, parse_bank_account
        try:
            parse_bank_account(config["BANK_TRANSFER_ACCOUNT"])
        except BadBankAccount as error:
            raise UnsafeConfiguration(str(error)) from None
    if not 1 <= config["POSTPAY_SUSPEND_AFTER_DAYS"] <= 365:
        raise UnsafeConfiguration("PORTAL_POSTPAY_SUSPEND_AFTER_DAYS must be between 1 and 365")
    if not 120 <= config["MIN_PURCHASE_YEN"] <= 1_000_000:  # ¥120: Stripe's smallest konbini payment
        raise UnsafeConfiguration("PORTAL_MIN_PURCHASE_YEN must be between 120 and 1,000,000")
    if not 2 <= config["ALERT_LEASE_SECONDS"] <= 50:  # within the minute promised, with room to spare
        raise UnsafeConfiguration("PORTAL_ALERT_LEASE_SECONDS must be between 2 and 50")
    if config["ENV"] != "production":
        return
    if config["SECRET_KEY"] == DEV_SECRET or len(config["SECRET_KEY"]) < 32:
        raise UnsafeConfiguration(
            "PORTAL_SECRET_KEY must be set to a random value of at least 32 characters in production"
        )
    if not config["BASE_URL"].startswith("https://"):
        raise UnsafeConfiguration("PORTAL_BASE_URL must be an https:// address in production")
    if config.get("DEBUG"):
        raise UnsafeConfiguration("DEBUG must be off in production")
    if not config["SMTP_URL"]:
        raise UnsafeConfiguration("PORTAL_SMTP_URL must be set in production: the development mailbox is not served there")
    if not config["STRIPE_SECRET_KEY"] or not config["STRIPE_WEBHOOK_SECRETS"]:
        raise UnsafeConfiguration(
            "PORTAL_STRIPE_SECRET_KEY and PORTAL_STRIPE_WEBHOOK_SECRET must be set in production: "
            "the payment sandbox grants credit without money"
        )
    if not config["STRIPE_SECRET_KEY"].startswith(("sk_live_", "rk_live_")):
        raise UnsafeConfiguration("PORTAL_STRIPE_SECRET_KEY must be a live-mode key (sk_live_… or rk_live_…) in production")
    if config["ISSUER_REGISTRATION_NUMBER"] == SAMPLE_REGISTRATION_NUMBER or config["ISSUER_NAME"] == SAMPLE_ISSUER:
        raise UnsafeConfiguration("PORTAL_ISSUER_NAME and PORTAL_ISSUER_REGISTRATION_NUMBER must be set in production")
    missing = [f"PORTAL_{key}" for key in LEGAL_KEYS if not config[key].strip()]
    if missing:
        raise UnsafeConfiguration(f"{', '.join(missing)} must be set in production (the legal notice page shows them)")
