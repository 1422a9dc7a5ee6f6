"""Usage history (owners, developers and billing members): every message, call and code of the
account filtered by range and kind, with totals, a breakdown, a daily chart, a keyset-paged
table, one item's detail and the CSV of the same filters."""

import re

from flask import Blueprint, Response, abort, current_app, request, stream_with_context
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from portal import clock, db
from portal.extensions import limiter
from portal.clock import JST
from portal.usage import service
from portal.web import chart
from portal.web.current import role_required
from portal.web.labels import punctuation
from portal.web.fragments import render_page, wants_fragment

bp = Blueprint("usage", __name__)
READERS = ("owner", "developer", "billing")
KINDS = ("sms", "otp", "voice", "otp_call")
FILTER_FIELDS = ("range", "from", "to", "product", "credential_id", "site_id", "status", "country", "tag", "mode")
FIELD_LABELS = {"range": _l("Period"), "from": _l("From (custom)"), "to": _l("To (custom)"), "product": _l("Product"),
                "credential_id": _l("API credential"), "site_id": _l("OTP site"), "status": _l("Status"),
                "country": _l("Country"), "tag": _l("Tag"), "mode": _l("Live or test"), "after": _l("Pages")}
# The core's InvalidFilter messages, in the page's language.
FILTER_TEXTS = {
    "Choose a range.": _l("Choose a period."),
    "Enter the first day.": _l("Enter the first day."),
    "Enter a date as YYYY-MM-DD.": _l("Enter a date such as 2026-11-27."),
    "The last day comes before the first.": _l("The last day comes before the first."),
    "The last day is in the future.": _l("The last day is in the future."),
    "Choose one of the listed values.": _l("Choose one of the listed values."),
    "Choose one of the listed countries.": _l("Choose one of the listed countries."),
    "This page link is not valid: start from the first page.": _l("This page link is not valid: start from the first page."),
}
KEPT = re.compile(r"Usage is kept for (\d+) months: start on (\d{4}-\d{2}-\d{2}) or later\.")
TAG = re.compile(r"A tag has no comma and at most (\d+) characters\.")


def _account_id() -> int:
    return current_user.account.id


def _params() -> dict[str, str]:
    """The filters as typed; fields left empty (a plain form sends every field) filter nothing."""
    return {name: value.strip() for name, value in request.args.items() if name in FILTER_FIELDS and value.strip()}


def _filters(params: dict[str, str]) -> service.Filters:
    return service.filters_from(params, today=clock.now().astimezone(JST).date())


def invalid_text(invalid: service.InvalidFilter) -> str:
    """What is wrong, led by the field's name, in the page's language (a message the core adds
    later is shown as it is rather than hidden)."""
    if kept := KEPT.fullmatch(invalid.message):
        text = _("Usage is kept for %(months)s months: start on %(date)s or later.", months=kept[1], date=kept[2])
    elif tag := TAG.fullmatch(invalid.message):
        text = _("A tag has no comma and at most %(count)s characters.", count=tag[1])
    else:
        text = str(FILTER_TEXTS.get(invalid.message, invalid.message))
    label = FIELD_LABELS.get(invalid.field)
    return f"{label}{punctuation().colon}{text}" if label else text


@bp.get("/usage")
@role_required(*READERS)
def index():
    session, account_id, params = db.session(), _account_id(), _params()
    choices = service.choices(session, account_id=account_id)
    after = request.args.get("after", "").strip() or None
    try:
        filters = _filters(params)
        listed = service.page(session, account_id=account_id, filters=filters, after=after, role=current_user.role,
                              now=clock.now())
    except service.InvalidFilter as invalid:
        page = render_page("usage/index.html", fragment="results", choices=choices, params=params,
                           invalid=invalid, invalid_text=invalid_text(invalid))
        return page, 200 if wants_fragment() else 400  # htmx swaps only a 2xx answer in
    days = service.daily(session, account_id=account_id, filters=filters)
    return render_page(
        "usage/index.html", fragment="results", choices=choices, params=params, filters=filters, after=after,
        listed=listed, totals=service.totals(session, account_id=account_id, filters=filters),
        breakdown=service.breakdown(session, account_id=account_id, filters=filters), days=days,
        bars=chart.daily_bars(days),
    )


@bp.get("/usage/<kind>/<ref>")
@role_required(*READERS)
def detail(kind: str, ref: str):
    if kind not in KINDS:
        abort(404)
    found = service.detail(db.session(), account_id=_account_id(), kind=kind, ref=ref, role=current_user.role)
    if found is None or found.row.kind != kind:  # one address per item: an SMS is not also an OTP code
        abort(404)
    back = request.args.get("back", "")
    return render_page("usage/detail.html", item=found, back=back if back.startswith("/usage?") else None)


@bp.get("/usage.csv")
@role_required(*READERS)
@limiter.limit(lambda: current_app.config["USAGE_EXPORT_RATE_LIMIT"],
               key_func=lambda: f"usage-export:{current_user.id}")
def export():
    try:
        filters = _filters(_params())
    except service.InvalidFilter:
        abort(400)
    chunks = service.export(db.job_session, account_id=_account_id(), filters=filters)
    response = Response(stream_with_context(chunks), content_type="text/csv; charset=utf-8")
    response.headers["Content-Disposition"] = f'attachment; filename="{service.export_filename(filters)}"'
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Accel-Buffering"] = "no"  # a proxy in front passes the rows on as they come
    return response
