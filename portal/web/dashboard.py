"""The dashboard: balance, lots and their expiry, burn rate and forecast, the getting-started
checklist, a test SMS to one's own phone, and the statement."""

import secrets

from flask import Blueprint, abort, redirect, url_for
from flask_babel import gettext as _
from flask_login import current_user

from portal import clock, db
from portal.clock import JST
from portal.bad_input import page_number
from portal.alerts import service as alerts
from portal.credentials.service import NotAManager
from portal.extensions import limiter
from portal.ledger import queries, statement as statements
from portal.postpay import queries as postpay
from portal.onboarding import service as onboarding
from portal.usage import service as usage
from portal.web.current import role_required, verified_email_required
from portal.web.forms import SendTestSMSForm
from portal.web.fragments import render_block, render_page, wants_fragment

bp = Blueprint("dashboard", __name__)
SENDERS = ("owner", "developer")
RECENT_USAGE = {"range": "7d"}
ALERT_WATCHERS = ("owner", "billing")  # who sets the balance alerts, so who sees them here  # who may create credentials, so who may send the test SMS


def _credit_context() -> dict:
    if current_user.membership is None:
        return {"credit": None}
    summary = queries.summary(db.session(), account_id=current_user.account.id, now=clock.now())
    expiring = queries.expiring_on(summary.live_lots, summary.next_expiry) if summary.next_expiry else 0
    thresholds = None
    if current_user.role in ALERT_WATCHERS:
        thresholds = alerts.thresholds_of(session=db.session(), account_id=current_user.account.id)
    line = postpay.line_of(db.session(), account_id=current_user.account.id)
    return {"credit": summary, "expiring": expiring, "thresholds": thresholds, "line": line,
            "recent_usage": _recent_usage()}


def _recent_usage() -> usage.Totals:
    """The last 7 days' usage as the usage history counts it (its "last 7 days" range: every
    message, call and code, live and test, whether or not it was charged to the credit), so
    the dashboard and /usage?range=7d agree. The burn rate beside it is the credit spent."""
    filters = usage.filters_from(RECENT_USAGE, today=clock.now().astimezone(JST).date())
    return usage.totals(db.session(), account_id=current_user.account.id, filters=filters)


def _page_context(**first_sms) -> dict:
    context = _credit_context()
    if current_user.membership is not None:
        account_id = current_user.account.id
        context["statement"] = statements.page(db.session(), account_id=account_id, page=1, per_page=10)
        context["progress"] = onboarding.progress(session=db.session(), account_id=account_id, user_id=current_user.id)
    return context | _first_sms_context(**first_sms)


def _first_sms_context(sent: onboarding.SentSMS | None = None, refused: str | None = None) -> dict:
    form = SendTestSMSForm(formdata=None, attempt=secrets.token_urlsafe(24))
    return {"sent": sent, "refused": refused, "test_sms_form": form}


@bp.get("/dashboard")
@verified_email_required
def show():
    return render_page("dashboard/show.html", fragment="balance", **_page_context())


@bp.get("/credit/statement")
@verified_email_required
def statement():
    if current_user.membership is None:
        return render_page("dashboard/statement.html", statement=None)
    lines = statements.page(db.session(), account_id=current_user.account.id, page=page_number())
    return render_page("dashboard/statement.html", fragment="statement", statement=lines)


@bp.post("/dashboard/test-sms")
@role_required(*SENDERS)
@limiter.limit("30 per hour", key_func=lambda: f"test-sms:{current_user.id}")
def send_test_sms():
    form = SendTestSMSForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        sent = onboarding.send_test_sms(
            session=db.session(), account_id=current_user.account.id, user_id=current_user.id,
            message=_("Hello from Chotto! This test SMS went through the API like any other, and cost nothing."),
            credential_name=_("Dashboard test SMS"), attempt=form.attempt.data,
            now=clock.now())
    except NotAManager:
        abort(403)
    except onboarding.NoVerifiedPhone:
        return _first_sms()  # the panel asks for a verified number first
    except onboarding.SMSRefused as refused:
        return _first_sms(refused=" ".join(m for messages in refused.errors.values() for m in messages))
    if not wants_fragment():
        return redirect(url_for("dashboard.test_sms", msgid=sent.msgid), code=303)
    return _first_sms(sent=sent) + _checklist_out_of_band()


@bp.get("/dashboard/test-sms/<msgid>")
@role_required(*SENDERS)
def test_sms(msgid: str):
    """The panel while the message travels (htmx polls it), or the whole dashboard showing it."""
    sent = onboarding.sent_sms(session=db.session(), account_id=current_user.account.id, msgid=msgid)
    if sent is None:
        abort(404)
    return _first_sms(sent=sent)


def _checklist_out_of_band() -> str:
    """The checklist, for htmx to swap in beside the panel: "test SMS sent" ticks at once."""
    progress = onboarding.progress(session=db.session(), account_id=current_user.account.id, user_id=current_user.id)
    return render_block("dashboard/show.html", "get_started", progress=progress, oob=True)


def _first_sms(**state):
    """The panel alone for htmx (a refusal too: htmx swaps only a 2xx), else the dashboard."""
    if wants_fragment():
        return render_page("dashboard/show.html", fragment="first_sms", **_first_sms_context(**state))
    return render_page("dashboard/show.html", **_page_context(**state)), 422 if state.get("refused") else 200
