"""Monthly usage statements (利用明細) in the billing section, for owners and billing members:
what each product and API credential cost in one Japan-time month, as a page and as a PDF for
the books."""

from datetime import date

from flask import Blueprint, abort, make_response, request
from flask_babel import gettext as _
from flask_login import current_user

from portal import clock, db, documents
from portal.accounts.models import Language
from portal.clock import JST
from portal.usage import service
from portal.web.current import role_required
from portal.web.fragments import render_page

bp = Blueprint("statements", __name__)
READERS = ("owner", "billing")
MONTHS_KEPT = 13  # usage is kept 13 months: this month and the 12 before it can be shown


def months_offered(today: date) -> list[date]:
    """The first day of this month and of each month before it that usage is kept for, newest first."""
    months, year, month = [], today.year, today.month
    for _step in range(MONTHS_KEPT):
        months.append(date(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return months


def parse_month(text: str, offered: list[date]) -> date | None:
    """"2026-11" → 2026-11-01 when that month is offered; anything else → None."""
    try:
        year, month = (int(part) for part in text.split("-"))
        chosen = date(year, month, 1)
    except ValueError:
        return None
    return chosen if chosen in offered else None


def _offered() -> list[date]:
    return months_offered(clock.now().astimezone(JST).date())


@bp.get("/billing/statements")
@role_required(*READERS)
def show():
    offered = _offered()
    asked = (request.args.get("month") or "").strip()
    month = parse_month(asked, offered) if asked else offered[0]
    if month is None:
        message = _("Choose a month between %(first)s and %(last)s.", first=offered[-1].strftime("%Y-%m"),
                    last=offered[0].strftime("%Y-%m"))
        return render_page("statements/show.html", offered=offered, month=None, asked=asked, invalid=message), 400
    statement = service.monthly_statement(db.session(), account_id=current_user.account.id, month=month)
    usage = {"range": "this-month"} if month == offered[0] else {
        "range": "custom", "from": statement.start.isoformat(), "to": statement.end.isoformat()}
    return render_page("statements/show.html", offered=offered, month=month, statement=statement,
                       usage_params=usage | {"mode": "live"})


@bp.get("/billing/statements/<int:year>-<int:month>.pdf")
@role_required(*READERS)
def pdf(year: int, month: int):
    language = request.args.get("lang", Language.JA)
    chosen = parse_month(f"{year}-{month}", _offered())
    if chosen is None or language not in list(Language):
        abort(404)
    body = documents.statement_pdf(db.session(), account_id=current_user.account.id, account_name=current_user.account.name,
                                   month=chosen, language=language, now=clock.now())
    response = make_response(body)
    response.headers["Content-Type"] = "application/pdf"
    suffix = "" if language == Language.JA else "-en"
    response.headers["Content-Disposition"] = f'attachment; filename="chotto-statement-{chosen:%Y-%m}{suffix}.pdf"'
    response.headers["Cache-Control"] = "private, no-store"
    return response
