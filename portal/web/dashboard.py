from flask import Blueprint, render_template
from flask_login import current_user

from portal.web.current import verified_email_required

bp = Blueprint("dashboard", __name__)


@bp.get("/dashboard")
@verified_email_required
def show():
    user = current_user.user
    steps = [
        {"done": True, "key": "email"},
        {"done": user.phone_verified_at is not None, "key": "phone"},
    ]
    return render_template("dashboard/show.html", steps=steps)
