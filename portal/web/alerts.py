"""Balance alerts in the portal (owners and billing members): the thresholds, who receives the
alerts and by which channels, a test of the webhook with its result in place, the history of what
was sent; and, for anyone holding the link mailed to an extra address, its confirmation. (The
optional notices' unsubscribe link is portal.web.alerts_unsubscribe's.)"""

from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user

from portal import clock, db, formats
from portal.accounts import team
from portal.accounts.models import Language, Role
from portal.alerts import queries
from portal.alerts import service as alerts
from portal.bad_input import page_number
from portal.extensions import limiter
from portal.web.alert_forms import THRESHOLD_FIELDS, AddressForm, ChannelsForm, RecipientsForm, ThresholdsForm
from portal.web.current import role_required
from portal.web.forms import ActionForm
from portal.web.fragments import render_page, wants_fragment

bp = Blueprint("alerts", __name__)
WATCHERS = (Role.OWNER, Role.BILLING)
PER_PAGE = 20
TOKEN = "TOKEN"  # stands for the confirmation token in the link the service mails


def _account_id() -> int:
    return current_user.account.id


def _errors(invalid) -> dict[str, list[str]]:
    return {field: [_(str(reason)) for reason in reasons] for field, reasons in invalid.errors.items()}


def _members():
    return team.members(db.session(), account_id=_account_id())


def _settings_page(*, status: int = 200, fragment: str | None = None, **forms):
    """The settings page; a form given in `forms` (sent with a mistake) is shown as it was sent,
    the others as saved."""
    session = db.session()
    settings = alerts.settings_of(session=session, account_id=_account_id(), now=clock.now())
    members = _members()
    numbers = [user.phone_e164 for _membership, user in members if user.phone_e164 and user.phone_verified_at]
    if "thresholds_form" not in forms:
        forms["thresholds_form"] = ThresholdsForm(formdata=None)
        forms["thresholds_form"].fill(settings.thresholds)
    if "recipients_form" not in forms:
        forms["recipients_form"] = RecipientsForm(formdata=None, all_members=settings.all_members,
                                                  member_ids=list(settings.member_ids))
    if "channels_form" not in forms:
        forms["channels_form"] = ChannelsForm(formdata=None)
        forms["channels_form"].fill(settings)
    forms.setdefault("address_form", AddressForm(formdata=None))
    channels = forms["channels_form"]
    channels.sms_number.choices = [(number, formats.phone_number(number)) for number in numbers] or [("", _("No verified number yet"))]
    context = dict(settings=settings, members=members, numbers=numbers, action_form=ActionForm(),
                   threshold_fields=THRESHOLD_FIELDS, **forms)
    return render_page("alerts/settings.html", fragment=fragment, **context), status


@bp.get("/alerts")
@role_required(*WATCHERS)
def settings():
    return _settings_page()


@bp.post("/alerts/thresholds")
@role_required(*WATCHERS)
def save_thresholds():
    form = ThresholdsForm()
    if not form.validate_on_submit():
        return _settings_page(status=422, thresholds_form=form)
    try:
        saved = alerts.save_thresholds(session=db.session(), account_id=_account_id(), user_id=current_user.id,
                                       yen=form.yen(), now=clock.now())
    except alerts.InvalidFields as invalid:
        form.threshold_1.errors = [m for messages in _errors(invalid).values() for m in messages]
        return _settings_page(status=422, thresholds_form=form)
    if saved:
        flash(_("The thresholds are saved."), "success")
    else:
        flash(_("No low-balance threshold is set: you will not be told when your credit runs low."), "info")
    return redirect(url_for("alerts.settings", _anchor="thresholds"), code=303)


@bp.post("/alerts/recipients")
@role_required(*WATCHERS)
def save_recipients():
    form = RecipientsForm()
    if not form.validate_on_submit():
        abort(400)
    known = {membership.user_id for membership, _user in _members()}
    chosen = [user_id for user_id in form.member_ids.data or [] if user_id in known]
    if not form.all_members.data and not chosen:
        form.member_ids.errors = [_("Choose at least one member, or every owner and billing member.")]
        return _settings_page(status=422, recipients_form=form)
    try:
        alerts.save_members(session=db.session(), account_id=_account_id(), user_id=current_user.id,
                            all_members=bool(form.all_members.data), member_ids=chosen, now=clock.now())
    except alerts.InvalidFields as invalid:
        form.member_ids.errors = [m for messages in _errors(invalid).values() for m in messages]
        return _settings_page(status=422, recipients_form=form)
    flash(_("The recipients are saved."), "success")
    return redirect(url_for("alerts.settings", _anchor="recipients"), code=303)


@bp.post("/alerts/addresses")
@role_required(*WATCHERS)
@limiter.limit("20 per hour", key_func=lambda: f"alert-address:{current_user.id}")
def add_address():
    form = AddressForm()
    if not form.validate_on_submit():
        return _settings_page(status=422, address_form=form)
    confirm_url = current_app.config["BASE_URL"].rstrip("/") + url_for("alerts.confirm_address", token=TOKEN)
    try:
        added = alerts.add_address(session=db.session(), account_id=_account_id(), user_id=current_user.id,
                                   address=form.address.data.strip(), confirm_url=confirm_url.replace(TOKEN, "{token}"),
                                   language=str(get_locale() or Language.JA), now=clock.now())
    except alerts.InvalidFields as invalid:
        form.address.errors = [m for messages in _errors(invalid).values() for m in messages]
        return _settings_page(status=422, address_form=form)
    flash(_("A link to confirm is on its way to %(address)s. It receives no alert until it is confirmed.",
            address=added.address), "success")
    return redirect(url_for("alerts.settings", _anchor="recipients"), code=303)


@bp.post("/alerts/addresses/<int:address_id>/remove")
@role_required(*WATCHERS)
def remove_address(address_id: int):
    if not ActionForm().validate_on_submit():
        abort(400)
    alerts.remove_address(session=db.session(), account_id=_account_id(), user_id=current_user.id,
                          address_id=address_id, now=clock.now())  # another account's address: nothing happens
    flash(_("The address receives no more alerts."), "success")
    return redirect(url_for("alerts.settings", _anchor="recipients"), code=303)


@bp.post("/alerts/channels")
@role_required(*WATCHERS)
def save_channels():
    form = ChannelsForm()
    if not form.validate_on_submit():
        return _settings_page(status=422, channels_form=form)
    had_secret = alerts.settings_of(session=db.session(), account_id=_account_id(), now=clock.now()).webhook_secret_set
    try:
        saved = alerts.save_channels(
            session=db.session(), account_id=_account_id(), user_id=current_user.id, email=bool(form.email.data),
            webhook_url=(form.webhook_url.data or "").strip() or None, sms=bool(form.sms.data),
            sms_number=form.sms_number.data or None, expiry_warnings=bool(form.expiry_warnings.data),
            run_out_days=int(form.run_out_days.data) if form.run_out.data else None, now=clock.now(),
            allow_http=current_app.config["ENV"] != "production")
    except alerts.InvalidFields as invalid:
        for name, messages in _errors(invalid).items():
            field = getattr(form, name, None)
            (field if field is not None else form.email).errors = messages
        return _settings_page(status=422, channels_form=form)
    flash(_("The channels are saved."), "success")
    if saved.webhook_secret_set and not had_secret:  # the webhook's first secret: shown once, here
        secret = alerts.webhook_secret(session=db.session(), account_id=_account_id())
        page, status = _settings_page(new_secret=secret)
        return page, status, {"Cache-Control": "no-store"}
    return redirect(url_for("alerts.settings", _anchor="channels"), code=303)


@bp.post("/alerts/webhook-secret")
@role_required(*WATCHERS)
def rotate_secret():
    """A new signing secret, shown once on the page that answers."""
    if not ActionForm().validate_on_submit():
        abort(400)
    secret = alerts.rotate_webhook_secret(session=db.session(), account_id=_account_id(), user_id=current_user.id,
                                          now=clock.now())
    page, status = _settings_page(new_secret=secret)
    return page, status, {"Cache-Control": "no-store"}


# -- a test, its result in place ----------------------------------------------------------------


@bp.post("/alerts/test")
@role_required(*WATCHERS)
@limiter.limit("20 per hour", key_func=lambda: f"alert-test:{current_user.id}")
def send_test():
    if not ActionForm().validate_on_submit():
        abort(400)
    notice_id = alerts.send_test(session=db.session(), account_id=_account_id(), user_id=current_user.id,
                                 now=clock.now())
    if not wants_fragment():
        return redirect(url_for("alerts.test_result", notice_id=notice_id), code=303)
    return _test_panel(notice_id)


@bp.get("/alerts/test/<notice_id>")
@role_required(*WATCHERS)
def test_result(notice_id: str):
    """The test's deliveries while they travel (htmx polls them), or the settings page showing them."""
    return _test_panel(notice_id)


def _test_panel(notice_id: str):
    deliveries = queries.deliveries_of_notice(db.session(), account_id=_account_id(), notice_id=notice_id)
    if deliveries is None:
        abort(404)
    return _settings_page(fragment="test_result", test=dict(notice_id=notice_id, deliveries=deliveries,
                                                             pending=any(d.status == "pending" for d in deliveries)))


# -- history ------------------------------------------------------------------------------------


@bp.get("/alerts/history")
@role_required(*WATCHERS)
def history():
    page = page_number()
    rows, total = queries.history_page(db.session(), account_id=_account_id(), page=page, per_page=PER_PAGE)
    return render_page("alerts/history.html", fragment="history", rows=rows, page=page, total=total,
                       per_page=PER_PAGE)


# -- links from mails: anyone holding the link --------------------------------------------------


@bp.route("/alerts/confirm/<token>", methods=["GET", "POST"])
@limiter.limit("30 per hour", methods=["POST"])
def confirm_address(token: str):
    """A GET changes nothing (mail scanners open links); the button confirms."""
    pending = queries.pending_address(db.session(), token=token)
    if pending is None:
        return render_template("alerts/link.html", state="invalid"), 410
    form = ActionForm()
    if form.validate_on_submit():
        confirmed = alerts.confirm_address(session=db.session(), token=token, now=clock.now())
        if confirmed is None:
            return render_template("alerts/link.html", state="invalid"), 410
        return render_template("alerts/link.html", state="confirmed", address=confirmed.address,
                               account_name=pending.account_name)
    return render_template("alerts/link.html", state="confirm", address=pending.address,
                           account_name=pending.account_name, form=form)
