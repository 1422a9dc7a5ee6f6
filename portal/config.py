"""Configuration: safe defaults ← PORTAL_* environment ← overrides passed to create_app."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEV_SECRET = "dev-only-secret-key-never-use-in-production"
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
        "SIGNUP_RATE_LIMIT": "5 per minute;30 per hour",
    }


_INTEGERS = {"TRIAL_CREDIT_YEN", "PROXY_HOPS"}
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
    _check(config)
    return config


def _check(config: dict) -> None:
    if config["ENV"] not in ENVIRONMENTS:
        raise UnsafeConfiguration(f"PORTAL_ENV must be one of {', '.join(ENVIRONMENTS)}")
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
