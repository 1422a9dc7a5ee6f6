"""The HTML side of the portal: extensions, blueprints, page-wide hooks and error pages."""

import logging

from flask import Flask, current_app, render_template, request
from flask_babel import format_datetime
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from portal.web import security
from portal.web.extensions import babel, csrf, htmx, limiter, login_manager, select_locale, select_timezone

log = logging.getLogger("portal.web")


def init_app(app: Flask) -> None:
    _configure(app)
    babel.init_app(app, locale_selector=select_locale, timezone_selector=select_timezone)
    csrf.init_app(app)
    htmx.init_app(app)
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


def _configure(app: Flask) -> None:
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
    from portal import api, webhooks
    from portal.web import (auth, billing, credentials, dashboard, devmail, inbox, phone, profile, public, sandbox,
                            team)

    for module in (public, auth, phone, dashboard, billing, credentials, team, inbox, profile, devmail, webhooks):
        app.register_blueprint(module.bp)
    if app.extensions["portal.gateway"].name == "sandbox":
        app.register_blueprint(sandbox.bp)
    csrf.exempt(webhooks.stripe_webhook)
    app.register_blueprint(api.bp)
    csrf.exempt(api.bp)
    limiter.exempt(webhooks.bp)


def _register_errors(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(error):
        return render_template("errors/error.html", code=400, kind="csrf"), 400

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        from portal import api

        if error.code is None or error.code < 400:
            return error
        if api.is_api_request():
            return api.api_error(error)
        response = error.get_response()
        response.data = render_template("errors/error.html", code=error.code, kind="http")
        response.content_type = "text/html; charset=utf-8"
        return response

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        from portal import api

        log.exception("unhandled error on %s %s", request.method, request.path)
        if api.is_api_request():
            return api._json({"detail": "Internal error. Nothing was charged if no answer said otherwise."}, 500)
        return render_template("errors/error.html", code=500, kind="http"), 500


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
