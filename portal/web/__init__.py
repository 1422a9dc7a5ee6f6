"""The HTML side of the portal: extensions, blueprints, page-wide hooks and error pages."""

import logging

from flask import Flask, Response, current_app, g, render_template
from flask_babel import format_datetime
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from portal import db, failures
from portal.web import bad_input, security
from portal.web.extensions import (babel, csrf, htmx, limiter, login_manager, select_locale, select_timezone,
                                   whole_retry_after)

log = logging.getLogger("portal.web")


def init_app(app: Flask) -> None:
    _configure(app)
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
    _register_blueprints(app)
    _register_errors(app)
    _register_template_helpers(app)
    if app.config.get("PROXY_HOPS"):
        hops = int(app.config["PROXY_HOPS"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=0)


class StorableId(IntegerConverter):
    """`<int:…>` in every route: an id beyond what an id column holds (INTEGER, 32 bits on
    PostgreSQL) is simply not found, never handed to the database to overflow."""

    def __init__(self, map, **kwargs):
        super().__init__(map, **({"max": 2 ** 31 - 1} | kwargs))


def _configure(app: Flask) -> None:
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
        BABEL_TRANSLATION_DIRECTORIES=str(app.config.get("TRANSLATIONS", "")) or _translations(),
        BABEL_DEFAULT_LOCALE="en",
        RATELIMIT_STORAGE_URI=app.config["REDIS_URL"] or "memory://",
        RATELIMIT_ENABLED=app.config["RATELIMIT_ENABLED"],
        RATELIMIT_HEADERS_ENABLED=True,
        MAX_CONTENT_LENGTH=1024 * 1024,
    )


def _translations() -> str:
    from portal.config import ROOT

    return str(ROOT / "translations")


def _register_blueprints(app: Flask) -> None:
    from portal import webhooks
    from portal.web import (auth, billing, credentials, dashboard, devmail, inbox, phone, profile, public, sandbox,
                            team)

    for module in (public, auth, phone, dashboard, billing, credentials, team, inbox, profile, devmail, webhooks):
        app.register_blueprint(module.bp)
    if app.extensions["portal.gateway"].name == "sandbox":
        app.register_blueprint(sandbox.bp)
    csrf.exempt(webhooks.stripe_webhook)
    limiter.exempt(webhooks.bp)


LAST_RESORT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Chotto: please try again</title></head>
<body><main><h1>Please try again in a moment</h1><p>しばらくしてから、もう一度お試しください。</p>
<p><a href="/">Chotto</a></p></main></body></html>
"""


def _register_errors(app: Flask) -> None:
    """The pages of errors. The API's blueprint answers its own errors in JSON."""

    @app.errorhandler(CSRFError)
    def csrf_error(error):
        return _page(400, kind="csrf")

    @app.errorhandler(bad_input.BadInput)
    def refused_input(error: bad_input.BadInput):
        return _page(400, kind="bad_input", field=error.field, problem=error.problem)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if error.code is None or error.code < 400:
            return error
        page = _page(error.code, kind="http")
        if page.status_code != error.code:
            return page  # the page could not be built without the database: a 503
        response = error.get_response()
        response.set_data(page.get_data())
        response.content_type = page.content_type
        return _secured(response)

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        return _unavailable() if failures.triage(error, log) else _page(500, kind="http")


def _unavailable() -> Response:
    """The database cannot answer: 503 with Retry-After, rendered without touching it again."""
    g._login_user = current_app.login_manager.anonymous_user()  # loading the signed-in user needs the database
    response = _page(503, kind="unavailable")
    response.headers["Retry-After"] = str(failures.RETRY_AFTER_SECONDS)
    return _secured(response)


def _page(code: int, **context) -> Response:
    """An error page that cannot itself fail: if rendering it raises, a static page is sent."""
    try:
        body = render_template("errors/error.html", code=code, **context)
    except Exception as error:
        db.rollback_request_session()
        if code != 503 and db.unavailable(error):
            return _unavailable()  # the page needed the signed-in person, and the database is gone
        log.error("the %s page could not be rendered: %s", code, db.describe(error, frames=False)
                  if db.is_database_error(error) else type(error).__name__)
        body = LAST_RESORT_PAGE
    return _secured(Response(body, status=code, mimetype="text/html"))


def _secured(response: Response) -> Response:
    """Error answers carry the page-wide headers even when after_request hooks do not run."""
    return security.add_headers(response)


def _register_template_helpers(app: Flask) -> None:
    @app.template_global()
    def absolute_url(endpoint: str, **values) -> str:
        """Links in mail come from PORTAL_BASE_URL, never from the request's Host header."""
        path = current_app.url_map.bind("localhost").build(endpoint, values)
        return current_app.config["BASE_URL"] + path

    @app.template_filter("yen")
    def yen(milli_yen: int) -> str:
        """The one place money is formatted: milli-yen in, "¥1,234" or "¥1,234.5" out."""
        sign = "-" if milli_yen < 0 else ""
        whole, fraction = divmod(abs(milli_yen), 1000)
        text = f"{sign}¥{whole:,}"
        return text + f".{fraction:03d}".rstrip("0") if fraction else text

    @app.template_filter("jst_date")
    def jst_date(value) -> str:
        """A calendar date in Japan time (invoices): 2026年11月27日 / 27 November 2026."""
        from babel.dates import format_date
        from flask_babel import get_locale

        from portal.clock import JST

        return format_date(value.astimezone(JST).date(), "long", locale=str(get_locale() or "ja")) if value else ""

    @app.template_filter("jst")
    def jst(value, format="medium"):
        return format_datetime(value, format) if value else ""

    @app.context_processor
    def page_context():
        from flask_babel import get_locale

        return {"current_locale": str(get_locale() or "en"), "config_env": app.config["ENV"]}
