"""Prove the mobile number with a code sent by SMS (delivered to the test inbox by default)."""

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_login import current_user

from portal import clock, db
from portal.accounts import phone
from portal.accounts.errors import (
    ChallengeLocked,
    CodeExpired,
    NoChallenge,
    PhoneInvalid,
    PhoneTaken,
    ResendTooSoon,
    TooManyCodes,
    WrongCode,
)
from portal.ledger.rules import MILLI_YEN
from portal.web.current import reauthentication_redirect, verified_email_required
from portal.extensions import limiter
from portal.web.forms import ActionForm, CodeForm, PhoneForm
from portal.web.waiting import retry_at

bp = Blueprint("phone", __name__, url_prefix="/verify-phone")


def code_sms(code: str, language: str) -> str:
    """The verification SMS, in the user's language only."""
    with force_locale(language):
        return _("Chotto: your verification code is %(code)s. It is valid for 10 minutes.", code=code)


def _send(number: str) -> None:
    phone.send_code(session=db.session(), user_id=current_user.id, account_id=_test_inbox(), phone=number,
                    secret=current_app.config["SECRET_KEY"], wording=code_sms, now=clock.now())


def send_error_message(error: Exception) -> str:
    if isinstance(error, PhoneInvalid):
        return _("Enter a mobile number that can receive SMS, such as 090-1234-5678 or +819012345678.")
    if isinstance(error, PhoneTaken):
        return _("This number is already verified by another Chotto login.")
    if isinstance(error, ResendTooSoon):
        return _("Please wait %(seconds)s seconds before asking for another code.", seconds=error.retry_after_seconds)
    if isinstance(error, TooManyCodes):
        return " ".join((_("You have been sent as many codes as we send in a day."), retry_at(error.retry_after_seconds)))
    return _("Too many wrong codes. Try again in an hour.")


@bp.route("/", methods=["GET", "POST"])
@verified_email_required
@limiter.limit("10 per hour", methods=["POST"])
def start():
    user = current_user.user
    if user.phone_verified_at is not None:
        if request.args.get("change") != "1":
            return redirect(url_for("dashboard.show"))
        if (prompt := reauthentication_redirect()) is not None:
            return prompt
    form = PhoneForm() if request.method == "POST" else PhoneForm(phone=_number_to_correct())
    if form.validate_on_submit():
        try:
            _send(form.phone.data)
        except (PhoneInvalid, PhoneTaken, ResendTooSoon, TooManyCodes, ChallengeLocked) as error:
            form.phone.errors = [send_error_message(error)]
            return render_template("phone/start.html", form=form), 422
        return redirect(url_for("phone.code"))
    return render_template("phone/start.html", form=form)


def _number_to_correct() -> str | None:
    """The number of the open challenge, as the person wrote it, to correct a typo in it."""
    e164 = phone.latest_phone(session=db.session(), user_id=current_user.id)
    return phone.display_number(e164) if e164 else None


def _test_inbox() -> int | None:
    """The account whose test inbox shows the code: in development and tests only. In
    production nobody may read a verification code off a page."""
    if current_app.config["ENV"] == "production" or current_user.account is None:
        return None
    return current_user.account.id


@bp.route("/code", methods=["GET", "POST"])
@verified_email_required
@limiter.limit("10 per minute", methods=["POST"])
def code():
    form, resend = CodeForm(), ActionForm(prefix="resend")
    number = _number_to_correct()
    correction = PhoneForm(phone=number)
    if form.validate_on_submit():
        try:
            phone.check_code(
                session=db.session(),
                user_id=current_user.id,
                account_id=current_user.account.id if current_user.membership else None,
                code=form.code.data,
                secret=current_app.config["SECRET_KEY"],
                trial_amount=current_app.config["TRIAL_CREDIT_YEN"] * MILLI_YEN,
                now=clock.now(),
            )
        except WrongCode as error:
            form.code.errors = [
                _("That code is not right. %(left)s attempts left.", left=error.attempts_left)
            ]
        except CodeExpired:
            form.code.errors = [_("That code has expired. Ask for a new one.")]
        except ChallengeLocked:
            form.code.errors = [_("Too many wrong codes. Try again in an hour.")]
        except (NoChallenge, PhoneTaken) as error:
            flash(send_error_message(error) if isinstance(error, PhoneTaken) else _("Ask for a code first."), "error")
            return redirect(url_for("phone.start"))
        else:
            flash(_("Your mobile number is verified."), "success")
            return redirect(url_for("dashboard.show"))
        return render_template("phone/code.html", form=form, resend=resend, correction=correction, number=number), 422
    return render_template("phone/code.html", form=form, resend=resend, correction=correction, number=number)


@bp.post("/resend")
@verified_email_required
@limiter.limit("5 per hour")
def resend():
    challenge_phone = phone.latest_phone(session=db.session(), user_id=current_user.id)
    if challenge_phone is None:
        return redirect(url_for("phone.start"))
    try:
        _send(challenge_phone)
    except (PhoneInvalid, PhoneTaken, ResendTooSoon, TooManyCodes, ChallengeLocked) as error:
        flash(send_error_message(error), "error")
    else:
        flash(_("We sent a new code. Codes you received before no longer work."), "success")
    return redirect(url_for("phone.code"))
