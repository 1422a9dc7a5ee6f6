"""API credentials in the portal (owners and developers): create, rotate and revoke; a token
is shown once. Creating or rotating needs a recent password (S13). Also the API reference."""

from datetime import timedelta

from flask import Blueprint, abort, current_app, flash, make_response, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user

from portal import clock, db
from portal.accounts import sessions
from portal.credentials import service
from portal.web.current import reauthentication_redirect, role_required
from portal.web.forms import ActionForm, CredentialForm, RotateForm
from portal.web.fragments import render_page

bp = Blueprint("credentials", __name__)
MANAGERS = ("owner", "developer")


def _page(form: CredentialForm | None = None, status: int = 200):
    listed = service.credentials_of(db.session(), account_id=current_user.account.id, now=clock.now())
    fresh = sessions.is_fresh(current_user.row, clock.now())
    return render_page("credentials/index.html", form=form or CredentialForm(), listed=listed, fresh=fresh,
                       rotate_form=RotateForm(), action_form=ActionForm(),
                       secret_key=current_app.config["SECRET_KEY"], callback_secret=service.callback_secret), status


@bp.get("/credentials")
@role_required(*MANAGERS)
def index():
    return _page()


def _shown_once(credential, token: str, rotated: bool):
    """The token's only appearance: never cached, never stored anywhere but this answer."""
    response = make_response(render_template(
        "credentials/created.html", credential=credential, token=token, rotated=rotated,
        callback_secret=service.callback_secret(current_app.config["SECRET_KEY"], credential.sid)))
    response.headers["Cache-Control"] = "no-store"
    return response


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
        from portal.billing.rules import parse_amount

        try:
            cap = parse_amount(form.monthly_cap.data) * 1000
        except ValueError:
            cap = 0
        if not cap:
            form.monthly_cap.errors = [_("Enter a whole number of yen above zero, or leave it empty.")]
            return _page(form, 422)
    credential, token = service.create(
        session=db.session(), account_id=current_user.account.id, user_id=current_user.id, name=form.name.data,
        mode=form.mode.data, scopes=form.scopes.data, networks=networks, monthly_cap=cap, now=clock.now(),
        expires_at=clock.now() + timedelta(days=int(form.expires.data)) if form.expires.data != "0" else None,
    )
    return _shown_once(credential, token, rotated=False)


@bp.post("/credentials/<int:credential_id>/rotate")
@role_required(*MANAGERS)
def rotate(credential_id: int):
    stale = reauthentication_redirect()
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


@bp.get("/api/docs")
def reference():
    from portal.api.openapi import document

    return render_template("credentials/reference.html", spec=document(current_app.config["BASE_URL"]))
