"""Sign-up, log-in, log-out, e-mail verification, password reset and re-authentication."""

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user

from portal import clock, db
from portal.accounts import auth, sessions
from portal.accounts.errors import InvalidCredentials, LoginLocked, LoginThrottled, TokenInvalid, WeakPassword, WrongPassword
from portal.accounts.models import AccountKind, Language
from portal.accounts.queries import InvalidEmail
from portal.accounts.signup import (LinkState, SignUpRequest, complete_sign_up, resend_sign_up, sign_up,
                                   verification_link)
from portal.web import kept
from portal.web.current import load_user
from portal.extensions import limiter
from portal.web.forms import (PASSWORD_MESSAGES, ActionForm, EmailForm, LogInForm, NewPasswordForm, ReauthenticateForm,
                              SignUpForm, SignUpPasswordForm)

bp = Blueprint("auth", __name__)


def _login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def _signup_limit() -> str:
    return current_app.config["SIGNUP_RATE_LIMIT"]


def password_errors(field, error: WeakPassword) -> None:
    field.errors = [*field.errors, *(PASSWORD_MESSAGES[reason] for reason in error.reasons)]


def throttle_message(error: LoginThrottled | LoginLocked) -> str:
    if isinstance(error, LoginLocked):
        return _("Too many failed attempts. Reset your password by e-mail to unlock this address.")
    minutes = max(1, (error.retry_after_seconds + 59) // 60)
    return _("Too many failed attempts. Try again in %(minutes)s minutes.", minutes=minutes)


def safe_next(target: str | None) -> str | None:
    """Only same-site paths: never an absolute URL or a scheme-relative //host."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target


def sign_in(user_id: int) -> None:
    """Start a server-side session for this browser, ending any it had before."""
    token = sessions.start(
        session=db.session(),
        user_id=user_id,
        ip=request.remote_addr or "",
        user_agent=request.user_agent.string,
        now=clock.now(),
        ending=session.get("sid"),
    )
    lang, typed = session.get("lang"), kept.held()
    session.clear()
    session["sid"] = token
    if lang:
        session["lang"] = lang
    kept.put_back(typed)
    login_user(load_user(str(user_id)))


@bp.route("/signup", methods=["GET", "POST"])
@limiter.limit(_signup_limit, methods=["POST"])
def signup():
    form = SignUpForm(language=session.get("lang") or request.accept_languages.best_match(list(Language), Language.EN))
    if form.validate_on_submit():
        signup_request = SignUpRequest(
            email=form.email.data,
            password=form.password.data,
            name=form.name.data,
            account_name=form.account_name.data if form.account_kind.data == AccountKind.COMPANY else form.name.data,
            account_kind=form.account_kind.data,
            language=form.language.data,
            tax_residency=form.tax_residency.data,
        )
        try:
            attempt_id = sign_up(session=db.session(), request=signup_request, now=clock.now())
        except WeakPassword as error:
            password_errors(form.password, error)
        except InvalidEmail:
            form.email.errors = [*form.email.errors, _("Enter a valid e-mail address.")]
        else:
            session["signup_email"] = form.email.data.strip().lower()
            session["signup_attempt"] = attempt_id
            return redirect(url_for("auth.check_email"))
    return render_template("auth/signup.html", form=form), 422 if form.errors else 200


@bp.route("/signup/check-email", methods=["GET", "POST"])
@limiter.limit(_signup_limit, methods=["POST"])
def check_email():
    """Same page whether or not the address was already registered. Its form mails the link
    of the address's pending sign-up again (signup.resend_sign_up), with the same answer
    whether or not there is one; a signed-in login uses resend_verification instead."""
    email = current_user.email if current_user.is_authenticated else session.get("signup_email")
    form = EmailForm(email=email)
    if not current_user.is_authenticated and form.validate_on_submit():
        resend_sign_up(session=db.session(), email=form.email.data, now=clock.now())
        session["signup_email"] = form.email.data.strip().lower()
        flash(_("If a sign-up with %(email)s is waiting for its link, we sent a new one. It is valid for 24 hours; "
                "the link in earlier mails no longer works.", email=session["signup_email"]), "success")
        return redirect(url_for("auth.check_email"))
    return render_template("auth/check_email.html", email=email, form=form), 422 if form.errors else 200


@bp.post("/signup/resend")
@login_required
@limiter.limit("3 per minute")
def resend_verification():
    auth.resend_verification(session=db.session(), user_id=current_user.id, now=clock.now())
    flash(_("We sent a new link. It is valid for 24 hours."), "success")
    return redirect(url_for("auth.check_email"))


@bp.route("/verify-email/<token>", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def verify_email(token: str):
    """A GET changes nothing, except for the browser that sent the very sign-up this link
    answers (a mail scanner has no such cookie): anyone else finishes the sign-up with its
    password, or proves an existing login's address with a click."""
    link = verification_link(session=db.session(), token=token, now=clock.now())
    if link.state != LinkState.READY:
        return render_template("auth/link_invalid.html", state=link.state, sign_up=True), 410
    if link.user_id is not None:
        return _verify_existing_login(token, user_id=link.user_id)
    if request.method == "GET" and session.get("signup_attempt") == link.attempt_id:
        return _finish_sign_up(token, browser_attempt_id=link.attempt_id)
    form = SignUpPasswordForm()
    if form.validate_on_submit():
        response = _finish_sign_up(token, password=form.password.data, form=form)
        if response is not None:
            return response
    return render_template("auth/verify_email.html", form=form), 422 if form.errors else 200


def _finish_sign_up(
    token: str, *, browser_attempt_id: int | None = None, password: str | None = None, form: SignUpPasswordForm | None = None
):
    """Signs in whoever completes the sign-up; None when the form shows why not."""
    try:
        verified = complete_sign_up(
            session=db.session(), token=token, now=clock.now(), browser_attempt_id=browser_attempt_id, password=password
        )
    except TokenInvalid:
        return render_template("auth/link_invalid.html", sign_up=True), 410
    except WrongPassword:
        form.password.errors = [_("That is not the password chosen when signing up with this address.")]
        return None
    except (LoginThrottled, LoginLocked) as error:
        form.password.errors = [throttle_message(error)]
        return None
    sign_in(verified.user.id)
    flash(_("Your e-mail address is verified."), "success")
    return redirect(url_for("phone.start"))


def _verify_existing_login(token: str, *, user_id: int):
    """A link mailed to a login whose address was never proved: it signs nobody in."""
    signed_in = current_user.is_authenticated and current_user.id == user_id
    form = ActionForm()
    if not signed_in and not form.validate_on_submit():
        return render_template("auth/verify_email.html", form=form)
    try:
        verified = auth.verify_email(session=db.session(), token=token, now=clock.now())
    except TokenInvalid:
        return render_template("auth/link_invalid.html", sign_up=True), 410
    flash(_("Your e-mail address is verified."), "success")
    if signed_in:
        return redirect(url_for("phone.start"))
    return redirect(url_for("auth.login", email=verified.user.email))


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def login():
    form = LogInForm(email=request.args.get("email", ""), next=request.args.get("next", ""))
    if form.validate_on_submit():
        try:
            user = auth.authenticate(session=db.session(), email=form.email.data, password=form.password.data, now=clock.now())
        except InvalidCredentials:
            form.password.errors = [_("The e-mail address or password is not right.")]
        except (LoginThrottled, LoginLocked) as error:
            form.password.errors = [throttle_message(error)]
        else:
            sign_in(user.id)
            return redirect(safe_next(form.next.data) or url_for("dashboard.show"))
        return render_template("auth/login.html", form=form), 422
    return render_template("auth/login.html", form=form)


@bp.post("/logout")
def logout():
    token = session.get("sid")
    if token:
        sessions.end(session=db.session(), token=token, now=clock.now())
    logout_user()
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    flash(_("You are signed out."), "info")
    return redirect(url_for("auth.login"))


@bp.route("/password/forgot", methods=["GET", "POST"])
@limiter.limit(_signup_limit, methods=["POST"])
def forgot_password():
    form = EmailForm()
    if form.validate_on_submit():
        auth.request_password_reset(session=db.session(), email=form.email.data, now=clock.now())
        return render_template("auth/reset_sent.html", email=form.email.data)
    return render_template("auth/forgot.html", form=form)


@bp.route("/reset-password/<token>", methods=["GET", "POST"])
def reset_password(token: str):
    try:
        user = auth.check_reset_token(session=db.session(), token=token, now=clock.now())
    except TokenInvalid:
        return render_template("auth/link_invalid.html"), 410
    form = NewPasswordForm()
    if form.validate_on_submit():
        try:
            auth.reset_password(session=db.session(), token=token, new_password=form.password.data, now=clock.now())
        except WeakPassword as error:
            password_errors(form.password, error)
        except TokenInvalid:
            return render_template("auth/link_invalid.html"), 410
        else:
            flash(_("Your password is changed. Sign in with the new one."), "success")
            return redirect(url_for("auth.login", email=user.email))
    return render_template("auth/reset.html", form=form, email=user.email)


@bp.route("/reauthenticate", methods=["GET", "POST"])
@login_required
@limiter.limit(_login_limit, methods=["POST"])
def reauthenticate():
    form = ReauthenticateForm(next=request.args.get("next", ""))
    if form.validate_on_submit():
        try:
            session["sid"] = sessions.reauthenticate(
                session=db.session(), session_id=current_user.row.id, password=form.password.data, now=clock.now()
            )
        except WrongPassword:
            form.password.errors = [_("That is not your current password.")]
        except (LoginThrottled, LoginLocked) as error:
            form.password.errors = [throttle_message(error)]
        else:
            return redirect(safe_next(form.next.data) or url_for("dashboard.show"))
        return render_template("auth/reauthenticate.html", form=form), 422
    return render_template("auth/reauthenticate.html", form=form)
