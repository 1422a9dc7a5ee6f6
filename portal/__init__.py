"""Chotto's customer portal. `create_app(overrides)` is the only place that wires things."""

import logging
import re
import time

from functools import wraps

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from portal import config as portal_config
from portal import db
from portal.config import ROOT


def create_app(overrides: dict | None = None) -> Flask:
    settings = portal_config.load(overrides)
    app = Flask(
        __name__,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
        instance_path=str(ROOT / "instance"),
    )
    app.config.update(settings)
    app.config["DEBUG"] = False
    app.config["TESTING"] = settings["ENV"] == "test"
    _configure_logging(app)
    db.init_app(app)

    from portal.alerts import detect
    from portal.ledger import steps

    steps.watch(detect.on_balance_change)  # thresholds crossed in a booking write their notice in it

    from portal.mail import mailer_for
    from portal.messaging.carrier import carrier_for

    app.extensions["portal.mailer"] = settings.get("MAILER") or mailer_for(settings)
    app.extensions["portal.carrier"] = settings.get("CARRIER_IMPL") or carrier_for(settings["CARRIER"])

    if settings["ENV"] == "production" and settings["CARRIER"] == "test-inbox":
        logging.getLogger("portal").warning(
            "PORTAL_CARRIER=test-inbox in production: no SMS reaches a phone, and verification codes are shown nowhere"
        )

    _payments(app, settings)

    _wire(app)

    from portal.cli import register

    register(app)
    return app


def _wire(app: Flask) -> None:
    """Extensions, app-wide hooks and every blueprint. The order matters: Flask runs
    before_request hooks in the order they were added and after_request hooks in reverse."""
    from portal import api, bad_input, security, web, webhooks
    from portal.extensions import (babel, csrf, htmx, limiter, login_manager, select_locale, select_timezone,
                                   whole_retry_after)

    _extension_settings(app)
    app.register_blueprint(api.bp)  # first: its hook answers unknown API paths in JSON before any other hook runs
    app.before_request(bad_input.refuse_unstorable_text)
    babel.init_app(app, locale_selector=select_locale, timezone_selector=select_timezone)
    csrf.init_app(app)
    htmx.init_app(app)
    app.after_request(whole_retry_after)  # before the limiter's hook, so it runs after it
    limiter.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = None
    login_manager.session_protection = None
    app.before_request(security.refuse_cross_site)
    app.after_request(security.add_headers)
    for blueprint in web.blueprints(sandbox_gateway=app.extensions["portal.gateway"].name == "sandbox"):
        app.register_blueprint(blueprint)
    app.register_blueprint(webhooks.bp)
    csrf.exempt(api.bp)  # authenticated by HTTP Basic, never by a cookie
    csrf.exempt(webhooks.stripe_webhook)  # authenticated by its signature
    limiter.exempt(webhooks.bp)
    limiter.exempt(api.bp)  # the API counts its own token buckets (portal.buckets)
    limiter.request_filter(api.is_routed_here)  # and flask-limiter looks no further into its requests
    _pages_only(app, api.is_routed_here)
    app.session_interface = PageSessions(api.is_api_only_path)
    web.register_error_pages(app)  # the API's blueprint answers its own errors in JSON
    web.register_template_helpers(app)
    if app.extensions["portal.engine"].dialect.name == "postgresql":  # the express send is PostgreSQL's
        from portal.api.lane import ExpressLane

        app.wsgi_app = ExpressLane(app, app.wsgi_app)  # inside ProxyFix: it reads the client's address
    if app.config.get("PROXY_HOPS"):
        hops = int(app.config["PROXY_HOPS"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=0)


PAGE_MACHINERY = ("flask_wtf", "flask_limiter", "flask_login")  # the extensions whose hooks serve pages only


def _pages_only(app: Flask, is_api) -> None:
    """The hooks of the page-only extensions (CSRF, flask-limiter, flask-login's remember
    cookie) do nothing for a request routed to the API, which is exempt from the first two and
    never logs anyone in: they are not run for it at all (a tenth of a send's CPU time)."""

    def skipped_for_the_api(hook, *, after: bool):
        @wraps(hook)
        def for_pages(*args, **kwargs):
            if is_api():
                return args[0] if after else None  # an after-request hook hands the response on
            return hook(*args, **kwargs)

        return for_pages

    for registry, after in ((app.before_request_funcs, False), (app.after_request_funcs, True),
                            (app.teardown_request_funcs, False)):
        registry[None] = [skipped_for_the_api(hook, after=after) if _module_of(hook).startswith(PAGE_MACHINERY)
                          else hook for hook in registry.get(None, [])]


def _module_of(hook) -> str:
    return getattr(getattr(hook, "func", hook), "__module__", "") or ""


class PageSessions(SecureCookieSessionInterface):
    """The signed cookie session, for pages only: a request to a path only the API answers
    (authenticated by its Authorization header alone) neither reads the cookie nor ever writes
    one. The session is opened before the request is routed: the path tells."""

    def __init__(self, is_api_path):
        self.is_api_path = is_api_path

    def open_session(self, app, request):
        if self.is_api_path():
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app, session, response) -> None:
        if not self.is_api_path():
            super().save_session(app, session, response)


class StorableId(IntegerConverter):
    """`<int:…>` in every route: an id beyond what an id column holds (INTEGER, 32 bits on
    PostgreSQL) is simply not found, never handed to the database to overflow."""

    def __init__(self, map, **kwargs):
        super().__init__(map, **({"max": 2 ** 31 - 1} | kwargs))


def _extension_settings(app: Flask) -> None:
    app.url_map.converters["int"] = StorableId
    production = app.config["ENV"] == "production"
    app.config.update(
        SESSION_COOKIE_NAME="__Host-chotto" if production else "chotto_session",
        SESSION_COOKIE_SECURE=production,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_PATH="/",
        REMEMBER_COOKIE_DURATION=0,
        WTF_CSRF_TIME_LIMIT=None,
        WTF_CSRF_SSL_STRICT=False,
        BABEL_TRANSLATION_DIRECTORIES=str(app.config.get("TRANSLATIONS", "")) or str(ROOT / "translations"),
        BABEL_DEFAULT_LOCALE="en",
        RATELIMIT_STORAGE_URI=app.config["REDIS_URL"] or "memory://",
        RATELIMIT_ENABLED=app.config["RATELIMIT_ENABLED"],
        RATELIMIT_HEADERS_ENABLED=True,
        MAX_CONTENT_LENGTH=1024 * 1024,
    )


def _payments(app: Flask, settings: dict) -> None:
    """Stripe when a secret key is configured; otherwise the local sandbox, which signs its
    events with a secret derived from SECRET_KEY (production refuses to start without Stripe)."""
    import hashlib
    import hmac

    from portal import clock
    from portal.billing.gateway import SandboxGateway, StripeGateway

    if settings["STRIPE_SECRET_KEY"]:
        gateway = StripeGateway(settings["STRIPE_SECRET_KEY"], http_client=settings.get("STRIPE_HTTP_CLIENT"))
        secrets = list(settings["STRIPE_WEBHOOK_SECRETS"])
    else:
        gateway = SandboxGateway(db.session, settings["BASE_URL"], clock.now)
        derived = hmac.new(settings["SECRET_KEY"].encode(), b"sandbox webhook", hashlib.sha256).hexdigest()
        secrets = [f"whsec_sandbox_{derived}"]
    app.extensions["portal.gateway"] = gateway
    app.extensions["portal.webhook_secrets"] = secrets


class _RedactSecrets(logging.Filter):
    """Last line of defence: no Authorization header, password or link token reaches a log, and
    no database error's message (PostgreSQL repeats the offending values, such as a phone number
    or a message body, in it): those are logged by class, SQLSTATE and constraint."""

    MARKERS = ("authorization:", "password=", "token=")
    API_TOKEN = re.compile(r"chotto_(live|test)_[0-9A-Za-z]+")
    LINK = re.compile(r"/(verify-email|reset-password|invitations|alerts/confirm|alerts/unsubscribe)/[A-Za-z0-9_.-]{16,}")

    def filter(self, record: logging.LogRecord) -> bool:
        self._describe_database_errors(record)
        message = record.getMessage()
        if any(marker in message.lower() for marker in self.MARKERS):
            record.msg, record.args = "[redacted: the log line carried a secret]", ()
        elif self.LINK.search(message) or self.API_TOKEN.search(message):
            message = self.LINK.sub(r"/\1/[redacted]", message)
            record.msg, record.args = self.API_TOKEN.sub(r"chotto_\1_[redacted]", message), ()
        return True

    @staticmethod
    def _describe_database_errors(record: logging.LogRecord) -> None:
        if isinstance(record.args, tuple) and any(isinstance(arg, BaseException) and db.is_database_error(arg)
                                                  for arg in record.args):
            record.args = tuple(db.describe(arg, frames=False)
                                if isinstance(arg, BaseException) and db.is_database_error(arg) else arg
                                for arg in record.args)
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and db.is_database_error(error):
            record.exc_info, record.exc_text = None, db.describe(error)


def _configure_logging(app: Flask) -> None:
    redact = _RedactSecrets()
    for name in ("werkzeug", "gunicorn.access"):
        logger = logging.getLogger(name)
        if redact not in logger.filters and not any(isinstance(f, _RedactSecrets) for f in logger.filters):
            logger.addFilter(redact)
    root = logging.getLogger("portal")
    if not root.handlers:
        handler = logging.StreamHandler()
        formatter = logging.Formatter("%(asctime)sZ %(levelname)s %(name)s %(message)s")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
        handler.addFilter(redact)
        root.addHandler(handler)
    root.setLevel(logging.INFO)
