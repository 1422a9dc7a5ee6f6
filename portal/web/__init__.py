"""The HTML side of the portal: its blueprints, error pages and template helpers, registered by create_app."""

import logging
import time
from datetime import date, datetime

from babel.dates import format_date, format_skeleton
from flask import Blueprint, Flask, Response, current_app, g, render_template, request
from flask_babel import format_datetime, get_locale, gettext, ngettext
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from portal import db, failures, formats, security
from portal.accounts.models import Language
from portal.bad_input import BadInput
from portal.clock import JST
from portal.ledger.rules import MILLI_YEN
from portal.extensions import limiter
from portal.web import (alerts, alerts_unsubscribe, auth, billing, credentials, dashboard, devmail, inbox, kept, labels,
                        otp, phone, postpay, profile, public, sandbox, statements, team, usage)
from portal.web.waiting import retry_at

log = logging.getLogger("portal.web")
JAPANESE_DATE_TIME = "y年M月d日 H:mm"


def blueprints(*, sandbox_gateway: bool) -> list[Blueprint]:
    """The pages' blueprints, for create_app to register; the sandbox checkout only with the
    sandbox gateway."""
    pages = [public.bp, auth.bp, phone.bp, dashboard.bp, billing.bp, credentials.bp, otp.bp, team.bp, inbox.bp,
             profile.bp, devmail.bp, alerts.bp, alerts_unsubscribe.bp, usage.bp, statements.bp, postpay.bp]
    return [*pages, sandbox.bp] if sandbox_gateway else pages


LAST_RESORT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Chotto: please try again</title></head>
<body><main><h1>Please try again in a moment</h1><p>しばらくしてから、もう一度お試しください。</p>
<p><a href="/">Chotto</a></p></main></body></html>
"""


def register_error_pages(app: Flask) -> None:
    """The pages of errors. The API's blueprint answers its own errors in JSON."""

    @app.errorhandler(CSRFError)
    def csrf_error(error):
        return _page(400, kind="csrf", **_carry_on())

    @app.errorhandler(BadInput)
    def refused_input(error: BadInput):
        return _page(400, kind="bad_input", field=error.field, problem=error.problem)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if error.code is None or error.code < 400:
            return error
        page = _page(error.code, kind="http", **(_rate_limited() if error.code == 429 else {}))
        if page.status_code != error.code:
            return page  # the page could not be built without the database: a 503
        response = error.get_response()
        response.set_data(page.get_data())
        response.content_type = page.content_type
        return _secured(response)

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        return _unavailable() if failures.triage(error, log) else _page(500, kind="http")


def _carry_on() -> dict:
    """How a person whose form could not be handled carries on: the form's page again, with
    what they typed kept for it (not passwords)."""
    if not kept.keep():
        return {}
    return {"carry_on": request.full_path.rstrip("?")}


def _rate_limited() -> dict:
    """When to try again (in the page's language and Japan time), and the way back to the
    form with its input kept."""
    limit = limiter.current_limit
    context = {"retry": retry_at(max(1, int(limit.reset_at - time.time())))} if limit is not None else {}
    return context | _carry_on()


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


def register_template_helpers(app: Flask) -> None:
    @app.template_global()
    def absolute_url(endpoint: str, **values) -> str:
        """Links in mail come from PORTAL_BASE_URL, never from the request's Host header."""
        path = current_app.url_map.bind("localhost").build(endpoint, values)
        return current_app.config["BASE_URL"] + path

    @app.template_filter("yen")
    def yen(milli_yen: int) -> str:
        """The one place money is formatted: milli-yen in, "¥1,234" or "¥1,234.5" out."""
        sign = "-" if milli_yen < 0 else ""
        whole, fraction = divmod(abs(milli_yen), MILLI_YEN)
        text = f"{sign}¥{whole:,}"
        return text + f".{fraction:03d}".rstrip("0") if fraction else text

    @app.template_filter("whole_yen")
    def whole_yen(amount_yen: int) -> str:
        """Payments and invoices count whole yen; formatted as the ledger's milli-yen are."""
        return yen(amount_yen * MILLI_YEN)

    @app.template_filter("jst_date")
    def jst_date(value) -> str:
        """A calendar date in Japan time (invoices, daily statistics): 2026年11月27日 / 27 November 2026.
        A moment is taken in Japan time; a date is already one."""
        if not value:
            return ""
        day = value.astimezone(JST).date() if isinstance(value, datetime) else value
        return format_date(day, "long", locale=str(get_locale() or Language.JA))

    @app.template_filter("short_date")
    def short_date(day: date) -> str:
        """A day under a chart's bar, short enough for six under a phone's chart: 11/27."""
        return format_skeleton("Md", day, locale=str(get_locale() or Language.JA))

    @app.template_filter("month_name")
    def month_name(month: date) -> str:
        """2026年11月 / November 2026."""
        return format_skeleton("yMMMM", month, locale=str(get_locale() or Language.JA))

    @app.template_filter("duration")
    def duration(seconds: int) -> str:
        """Call time: 12分30秒 / 12 min 30 s."""
        minutes, rest = divmod(seconds or 0, 60)
        if not minutes:
            return gettext("%(seconds)s s", seconds=rest)
        grouped = format(minutes, ",")
        return gettext("%(minutes)s min %(seconds)s s", minutes=grouped, seconds=rest)

    @app.template_filter("statement_units")
    def statement_units(line) -> str:
        """A statement line's quantity in its unit: 120 segments / 40 messages / 15 minutes."""
        texts = {"segments": ngettext("%(num)s segment", "%(num)s segments", line.units),
                 "messages": ngettext("%(num)s message", "%(num)s messages", line.units),
                 "minutes": ngettext("%(num)s minute", "%(num)s minutes", line.units)}
        text = texts.get(line.unit, f"{line.units:,}")
        if not line.unanswered:
            return text
        unanswered = ngettext("%(num)s call not answered or not placed (no charge)",
                              "%(num)s calls not answered or not placed (no charge)", line.unanswered)
        if line.unanswered == line.count:  # nothing but calls not answered or placed: no "0 minutes" to read
            return unanswered
        return f"{text}{labels.punctuation().comma}{unanswered}"
    @app.template_filter("billing_month")
    def billing_month(value: str) -> str:
        """A billing month ("2026-11"): 2026年11月 / November 2026."""
        year, month = (int(part) for part in value.split("-"))
        return month_name(date(year, month, 1))

    app.add_template_filter(formats.phone_number, "phone")
    app.add_template_filter(formats.masked_phone, "masked_phone")
    app.add_template_filter(formats.postal_mark, "postal")
    labels.register(app)

    @app.template_filter("jst")
    def jst(value, format="medium"):
        """A moment in Japan time: 2026年11月27日 12:00 on Japanese pages, Nov 27, 2026, 12:00:00 PM on English ones."""
        if not value:
            return ""
        japanese = str(get_locale() or Language.EN) == Language.JA and format == "medium"
        return format_datetime(value, JAPANESE_DATE_TIME if japanese else format)

    @app.context_processor
    def page_context():
        return {"current_locale": str(get_locale() or Language.EN), "config_env": app.config["ENV"]}
