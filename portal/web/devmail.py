"""The development mailbox: every mail the portal would have sent. Development and test only."""

from flask import Blueprint, abort, current_app, render_template
from sqlalchemy import select

from portal import db
from portal.mail import DevMail

bp = Blueprint("devmail", __name__, url_prefix="/dev/mailbox")


@bp.before_request
def development_only():
    if current_app.config["ENV"] not in ("development", "test"):
        abort(404)


@bp.get("/")
def index():
    mails = db.session().scalars(select(DevMail).order_by(DevMail.id.desc()).limit(200)).all()
    return render_template("devmail/index.html", mails=mails)


@bp.get("/<int:mail_id>")
def show(mail_id: int):
    mail = db.session().get(DevMail, mail_id) or abort(404)
    return render_template("devmail/show.html", mail=mail)
