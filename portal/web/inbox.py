"""The test inbox: every SMS the test-inbox carrier "delivered" for the account in use."""

from flask import Blueprint
from flask_login import current_user

from portal import db
from portal.messaging.carrier import inbox_for
from portal.web.current import verified_email_required
from portal.web.fragments import render_page

bp = Blueprint("inbox", __name__)


@bp.get("/test-inbox")
@verified_email_required
def show():
    messages = inbox_for(db.session(), account_id=current_user.account.id) if current_user.account else []
    return render_page("inbox/show.html", fragment="messages", messages=messages)
