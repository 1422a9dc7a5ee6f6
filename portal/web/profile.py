"""The person's own page: name, language, password, sign-in sessions, account switch."""

from flask import Blueprint, current_app, flash, redirect, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from portal import clock, db
from portal.accounts import auth, profile, sessions
from portal.accounts.errors import LoginLocked, LoginThrottled, NotAMember, WeakPassword, WrongPassword
from portal.web.auth import password_errors, throttle_message
from portal.extensions import limiter
from portal.web.current import accounts_of_current_user
from portal.web.forms import ActionForm, ChangePasswordForm, ProfileForm
from portal.web.fragments import render_page, wants_fragment

bp = Blueprint("profile", __name__, url_prefix="/profile")


def _page(profile_form=None, password_form=None, status: int = 200):
    user = current_user.user
    return (
        render_page(
            "profile/show.html",
            fragment="sessions",
            profile_form=profile_form or ProfileForm(name=user.name, language=user.language),
            password_form=password_form or ChangePasswordForm(),
            action_form=ActionForm(),
            live_sessions=sessions.live_sessions(session=db.session(), user_id=user.id, now=clock.now()),
            accounts=accounts_of_current_user(),
        ),
        status,
    )


@bp.get("/")
@login_required
def show():
    return _page()


@bp.post("/")
@login_required
def update():
    form = ProfileForm()
    if not form.validate_on_submit():
        return _page(profile_form=form, status=422)
    profile.update_profile(session=db.session(), user_id=current_user.id, name=form.name.data, language=form.language.data)
    session["lang"] = form.language.data
    flash(_("Your profile is saved."), "success")
    return redirect(url_for("profile.show"))


@bp.post("/password")
@login_required
@limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT"])
def change_password():
    form = ChangePasswordForm()
    if not form.validate_on_submit():
        return _page(password_form=form, status=422)
    try:
        auth.change_password(
            session=db.session(),
            user_id=current_user.id,
            current_password=form.current_password.data,
            new_password=form.new_password.data,
            keep_session_id=current_user.row.id,
            end_other_sessions=form.end_other_sessions.data,
            now=clock.now(),
        )
    except WrongPassword:
        form.current_password.errors = [_("That is not your current password.")]
        return _page(password_form=form, status=422)
    except (LoginThrottled, LoginLocked) as error:
        form.current_password.errors = [throttle_message(error)]
        return _page(password_form=form, status=422)
    except WeakPassword as error:
        password_errors(form.new_password, error)
        return _page(password_form=form, status=422)
    flash(_("Your password is changed. We sent a notice to your e-mail address."), "success")
    return redirect(url_for("profile.show"))


@bp.post("/sessions/<int:session_id>/end")
@login_required
def end_session(session_id: int):
    if ActionForm().validate_on_submit():
        sessions.end_one(session=db.session(), user_id=current_user.id, session_id=session_id, now=clock.now())
        if session_id == current_user.row.id:
            return redirect(url_for("auth.login"))
        flash(_("That session is signed out."), "success")
    return _page() if wants_fragment() else redirect(url_for("profile.show"))


@bp.post("/account/<int:account_id>")
@login_required
def switch_account(account_id: int):
    if ActionForm().validate_on_submit():
        try:
            sessions.switch_account(session=db.session(), session_id=current_user.row.id, account_id=account_id)
        except NotAMember:
            flash(_("You are not a member of that account."), "error")
    return redirect(url_for("dashboard.show"))
