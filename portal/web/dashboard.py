"""The dashboard: balance, lots and their expiry, burn rate and forecast, and the statement."""

from flask import Blueprint
from flask_login import current_user

from portal import clock, db
from portal.ledger import queries, statement as statements
from portal.bad_input import page_number
from portal.web.current import verified_email_required
from portal.web.fragments import render_page

bp = Blueprint("dashboard", __name__)


def _credit_context() -> dict:
    if current_user.membership is None:
        return {"credit": None}
    summary = queries.summary(db.session(), account_id=current_user.account.id, now=clock.now())
    expiring = queries.expiring_on(summary.live_lots, summary.next_expiry) if summary.next_expiry else 0
    return {"credit": summary, "expiring": expiring}


@bp.get("/dashboard")
@verified_email_required
def show():
    context = _credit_context()
    if current_user.membership is not None:
        context["statement"] = statements.page(db.session(), account_id=current_user.account.id, page=1, per_page=10)
    return render_page("dashboard/show.html", fragment="balance", **context)


@bp.get("/credit/statement")
@verified_email_required
def statement():
    if current_user.membership is None:
        return render_page("dashboard/statement.html", statement=None)
    lines = statements.page(db.session(), account_id=current_user.account.id, page=page_number())
    return render_page("dashboard/statement.html", fragment="statement", statement=lines)
