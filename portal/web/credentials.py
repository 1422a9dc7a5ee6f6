"""API credentials in the portal (owners and developers): create, rotate and revoke; a token
is shown once. Creating or rotating needs a recent password (S13), and so does showing or
rotating a callback signing secret, which appears in no page but the answer that shows it.
A credential with the `otp` scope can be limited to some of the account's OTP sites. Also the
API reference."""

from datetime import timedelta

from flask import Blueprint, abort, current_app, flash, make_response, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user

from portal import clock, db, services
from portal.accounts import sessions
from portal.billing.rules import parse_amount
from portal.credentials import service
from portal.ledger.rules import MILLI_YEN
from portal.openapi import document
from portal.otp import service as otp
from portal.otp.errors import SiteNotFound
from portal.web import code_samples
from portal.web.current import reauthentication_redirect, role_required
from portal.web.forms import ActionForm, CredentialForm, CredentialSitesForm, RotateForm
from portal.web.fragments import render_page
from portal.web.labels import listing

bp = Blueprint("credentials", __name__)
MANAGERS = service.MANAGERS
EXAMPLE_RECIPIENT = "+819012345678"


def _page(form: CredentialForm | None = None, status: int = 200):
    listed = service.credentials_of(db.session(), account_id=current_user.account.id, now=clock.now())
    fresh = sessions.is_fresh(current_user.row, clock.now())
    otp_sites = otp.site_limits_of(session=db.session(), account_id=current_user.account.id)
    return render_page("credentials/index.html", form=form or CredentialForm(), listed=listed, fresh=fresh,
                       rotate_form=RotateForm(), action_form=ActionForm(), otp_sites=otp_sites), status


@bp.get("/credentials")
@role_required(*MANAGERS)
def index():
    return _page()


def _shown_once(credential, token: str, rotated: bool):
    """The token's only appearance: never cached, never stored anywhere but this answer."""
    response = make_response(render_template(
        "credentials/created.html", credential=credential, token=token, rotated=rotated,
        samples=_samples(credential, token) if "sms" in credential.scope_list else []))
    response.headers["Cache-Control"] = "no-store"
    return response


def _samples(credential, token: str) -> list[code_samples.Sample]:
    """To the person's own verified number when there is one: a live credential reaches only
    those until the account's first purchase."""
    user = current_user.user
    recipient = user.phone_e164 if user.phone_verified_at and user.phone_e164 else EXAMPLE_RECIPIENT
    return code_samples.sms_samples(base_url=services.base_url(), sid=credential.sid, token=token,
                                    recipient=recipient, message=_("Hello from Chotto"))


@bp.post("/credentials")
@role_required(*MANAGERS)
def create():
    stale = reauthentication_redirect()
    if stale:
        return stale
    form = CredentialForm()
    if not form.validate_on_submit():
        return _page(form, 422)
    try:
        networks = service.parse_networks(form.networks.data or "")
    except service.InvalidCredential as invalid:
        form.networks.errors = [_("%(value)s is not an IP address or CIDR range.", value=str(invalid))]
        return _page(form, 422)
    cap = None
    if (form.monthly_cap.data or "").strip():
        try:
            cap = parse_amount(form.monthly_cap.data) * MILLI_YEN
        except ValueError:
            cap = 0
        if not cap:
            form.monthly_cap.errors = [_("Enter a whole number of yen above zero, or leave it empty.")]
            return _page(form, 422)
    if form.sites.data and "otp" not in form.scopes.data:
        form.sites.errors = [_("Sites limit only the OTP scope: tick OTP too, or untick the sites.")]
        return _page(form, 422)
    try:
        credential, token = otp.create_credential(
            session=db.session(), account_id=current_user.account.id, user_id=current_user.id, name=form.name.data,
            mode=form.mode.data, scopes=form.scopes.data, networks=networks, monthly_cap=cap,
            site_ids=form.sites.data or [], now=clock.now(),
            expires_at=clock.now() + timedelta(days=int(form.expires.data)) if form.expires.data != "0" else None,
        )
    except service.NotAManager:
        abort(403)
    except SiteNotFound:
        abort(404)
    return _shown_once(credential, token, rotated=False)


@bp.post("/credentials/<int:credential_id>/rotate")
@role_required(*MANAGERS)
def rotate(credential_id: int):
    stale = reauthentication_redirect(back=url_for("credentials.index"))
    if stale:
        return stale
    form = RotateForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        credential, token = service.rotate(
            session=db.session(), account_id=current_user.account.id, user_id=current_user.id,
            credential_id=credential_id, overlap=timedelta(hours=int(form.overlap.data)), now=clock.now(),
        )
    except service.UnknownCredential:
        abort(404)
    return _shown_once(credential, token, rotated=True)


@bp.post("/credentials/<int:credential_id>/revoke")
@role_required(*MANAGERS)
def revoke(credential_id: int):
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        credential = service.revoke(session=db.session(), account_id=current_user.account.id,
                                    user_id=current_user.id, credential_id=credential_id, now=clock.now())
    except service.UnknownCredential:
        abort(404)
    flash(_("%(name)s is revoked: it is refused from the next request on.", name=credential.name), "success")
    return redirect(url_for("credentials.index"))


@bp.post("/credentials/<int:credential_id>/sites")
@role_required(*MANAGERS)
def limit_sites(credential_id: int):
    form = CredentialSitesForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        credential, sites = otp.limit_credential(
            session=db.session(), account_id=current_user.account.id, user_id=current_user.id,
            credential_id=credential_id, site_ids=form.sites.data or [], now=clock.now())
    except SiteNotFound:
        abort(404)
    if sites:
        flash(_("%(name)s may now use only these OTP sites: %(sites)s.", name=credential.name,
                sites=listing(site.domain for site in sites)), "success")
    else:
        flash(_("%(name)s may now use every OTP site of the account.", name=credential.name), "success")
    return redirect(url_for("credentials.index"))


@bp.get("/credentials/<int:credential_id>/callback-secret")
@role_required(*MANAGERS)
def callback_secret(credential_id: int):
    """Where showing and rotating the callback secret start, and where a stale session comes
    back to after the password prompt."""
    stale = reauthentication_redirect()
    if stale:
        return stale
    try:
        credential = service.credential_of(session=db.session(), account_id=current_user.account.id,
                                           credential_id=credential_id)
    except service.UnknownCredential:
        abort(404)
    return render_template("credentials/callback_secret.html", credential=credential, secrets=None,
                           rotate_form=RotateForm())


def _revealed(credential, secrets: list, rotated: bool = False):
    """The one answer that carries the secret: never cached."""
    response = make_response(render_template("credentials/callback_secret.html", credential=credential,
                                             secrets=secrets, rotated=rotated, rotate_form=RotateForm()))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/credentials/<int:credential_id>/callback-secret")
@role_required(*MANAGERS)
def reveal_callback_secret(credential_id: int):
    if not ActionForm().validate_on_submit():
        abort(400)
    stale = reauthentication_redirect(back=url_for("credentials.callback_secret", credential_id=credential_id))
    if stale:
        return stale
    try:
        credential, secrets = service.reveal_callback_secrets(
            session=db.session(), account_id=current_user.account.id, user_id=current_user.id,
            credential_id=credential_id, now=clock.now())
    except service.UnknownCredential:
        abort(404)
    return _revealed(credential, secrets)


@bp.post("/credentials/<int:credential_id>/callback-secret/rotate")
@role_required(*MANAGERS)
def rotate_callback_secret(credential_id: int):
    form = RotateForm()
    if not form.validate_on_submit():
        abort(400)
    stale = reauthentication_redirect(back=url_for("credentials.callback_secret", credential_id=credential_id))
    if stale:
        return stale
    try:
        credential, secrets = service.rotate_callback_secret(
            session=db.session(), account_id=current_user.account.id, user_id=current_user.id,
            credential_id=credential_id, overlap=timedelta(hours=int(form.overlap.data)), now=clock.now())
    except service.UnknownCredential:
        abort(404)
    return _revealed(credential, secrets, rotated=True)


@bp.get("/api/docs")
def reference():
    return render_template("credentials/reference.html", spec=document(current_app.config["BASE_URL"], _))
