"""The unsubscribe link of the optional alert mails (expiry and run-out warnings): a signed
token, no login needed. GET shows a confirmation button and changes nothing (mail scanners
open links); POST records the choice. The POST is also the RFC 8058 one-click unsubscribe
that mail providers send (`List-Unsubscribe=One-Click`, no cookie, no CSRF token): the signed
token in the URL is its only authentication, so it is exempt from the CSRF token, and doing
it twice is doing it once."""

from flask import Blueprint, current_app, render_template

from portal import clock, db
from portal.alerts import rules
from portal.alerts import service as alerts
from portal.extensions import csrf

bp = Blueprint("alerts_unsubscribe", __name__)


@bp.get("/alerts/unsubscribe/<token>")
def unsubscribe(token: str):
    valid = rules.read_unsubscribe_token(current_app.config["SECRET_KEY"], token) is not None
    return render_template("public/alerts_unsubscribe.html", token=token, valid=valid, done=False), (200 if valid else 404)


@bp.post("/alerts/unsubscribe/<token>")
@csrf.exempt
def unsubscribe_confirmed(token: str):
    done = alerts.unsubscribe(session=db.session(), token=token, secret=current_app.config["SECRET_KEY"],
                              now=clock.now())
    return render_template("public/alerts_unsubscribe.html", token=token, valid=done, done=done), (200 if done else 404)
