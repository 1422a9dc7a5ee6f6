"""Pages anyone can read, and the language switch."""

from flask import Blueprint, abort, current_app, redirect, render_template, request, session, url_for
from flask_login import current_user

from portal.config import LEGAL_KEYS
from portal.web.auth import safe_next
from portal.extensions import LANGUAGES
from portal.web.forms import ActionForm

bp = Blueprint("public", __name__)

PRICES = [
    {"key": "sms", "yen": 10, "unit": "segment"},
    {"key": "otp", "yen": 3, "unit": "message"},
    {"key": "voice", "yen": 10, "unit": "minute"},
]


@bp.get("/")
def home():
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.show"))
    return render_template("public/home.html", prices=PRICES)


@bp.get("/pricing")
def pricing():
    return render_template("public/pricing.html", prices=PRICES)


@bp.get("/legal/commercial-transactions")
def legal():
    """特定商取引法に基づく表記: the seller's details come from configuration."""
    details = {key.removeprefix("LEGAL_").lower(): current_app.config[key] for key in LEGAL_KEYS}
    return render_template("public/legal.html", details=details, issuer=current_app.config["ISSUER_NAME"],
                           registration_number=current_app.config["ISSUER_REGISTRATION_NUMBER"],
                           minimum=current_app.config["MIN_PURCHASE_YEN"])


@bp.post("/language/<lang>")
def set_language(lang: str):
    if lang not in LANGUAGES or not ActionForm().validate_on_submit():
        abort(400)
    session["lang"] = lang
    return redirect(safe_next(request.form.get("next")) or url_for("public.home"))
