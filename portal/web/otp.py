"""OTP sites in the portal (owners and developers): register a website, prove its ownership,
choose its settings with a live preview of the message, try it with a test code, and read its
log, statistics and blocked requests. Lifting a pause or a block is an owner's decision."""

from flask import Blueprint, abort, current_app, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from portal import clock, db, services
from portal.credentials.service import MANAGERS, NotAManager
from portal.extensions import limiter
from portal.messaging import segments
from portal.otp import ownership, proof, rules, tryit
from portal.otp import service as otp
from portal.otp.errors import (BLOCK_TEXTS, FAILURE_TEXTS, InvalidField, InvalidFields, NotLiftable, RequestBlocked,
                               ResendTooSoon, SiteNotFound, VerificationFailed)
from portal.otp.models import TemplateLanguage
from portal.web.current import role_required
from portal.web.forms import ActionForm
from portal.web.fragments import render_page, wants_fragment
from portal.web.otp_forms import SettingsForm, SiteForm, TryVerifyForm

bp = Blueprint("otp", __name__)
MODES = ("live", "test")
SAMPLE_CODE = "1234567890"


@bp.app_context_processor
def otp_texts():
    return {"otp_block_texts": BLOCK_TEXTS, "otp_outcome_texts": ownership.OUTCOME_TEXTS,
            "otp_reason_texts": ownership.REASON_TEXTS}


def _account_id() -> int:
    return current_user.account.id


def _site(site_id: int):
    try:
        return otp.site_of(session=db.session(), account_id=_account_id(), site_id=site_id)
    except SiteNotFound:
        abort(404)


def _code_key() -> bytes:
    return current_app.config["SECRET_KEY"].encode()


def _errors(invalid: InvalidFields | InvalidField) -> dict[str, list[str]]:
    if isinstance(invalid, InvalidField):
        return {invalid.field: [_(reason) for reason in invalid.reasons]}
    return {field: [_(reason) for reason in reasons] for field, reasons in invalid.errors.items()}


# -- the list and registration ----------------------------------------------------------------------


def _index(form: SiteForm | None = None, status: int = 200):
    sites = otp.sites_of(session=db.session(), account_id=_account_id())
    return render_page("otp/index.html", sites=sites, form=form or SiteForm()), status


@bp.get("/otp-sites")
@role_required(*MANAGERS)
def index():
    return _index()


@bp.post("/otp-sites")
@role_required(*MANAGERS)
def register():
    form = SiteForm()
    if not form.validate_on_submit():
        return _index(form, 422)
    try:
        site = otp.register_site(session=db.session(), account_id=_account_id(), website=form.website.data,
                                 display_name=(form.display_name.data or "").strip() or None, now=clock.now(),
                                 language=TemplateLanguage(current_user.language)
                                 if current_user.language in list(TemplateLanguage) else TemplateLanguage.JA)
    except (InvalidFields, InvalidField) as invalid:
        form.website.errors = [message for messages in _errors(invalid).values() for message in messages]
        return _index(form, 422)
    flash(_("%(domain)s is registered. Prove that you own it to send codes to any number.", domain=site.domain),
          "success")
    return redirect(url_for("otp.show", site_id=site.id), code=303)


# -- a site: ownership and "Try it" ---------------------------------------------------------------


def _show(site, *, check=None, attempt=None, arrived=None, verified=None, refused=None, status=200, fragment=None):
    probe = services.ownership_probe()
    context = dict(site=site, check=check, token_url=ownership.probe_url(site.domain, probe),
                   action_form=ActionForm(), attempt=attempt, arrived=arrived, verified=verified, refused=refused,
                   verify_form=TryVerifyForm(formdata=None, msgid=attempt.msgid if attempt else None))
    return render_page("otp/show.html", fragment=fragment, **context), status


@bp.get("/otp-sites/<int:site_id>")
@role_required(*MANAGERS)
def show(site_id: int):
    return _show(_site(site_id))


@bp.post("/otp-sites/<int:site_id>/check")
@role_required(*MANAGERS)
@limiter.limit("30 per hour", key_func=lambda: f"otp-check:{current_user.id}")
def check(site_id: int):
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        site, found = proof.check_site(session=db.session(), account_id=_account_id(), site_id=site_id,
                                           probe=services.ownership_probe(), now=clock.now())
    except SiteNotFound:
        abort(404)
    return _show(site, check=found, fragment="ownership")


@bp.post("/otp-sites/<int:site_id>/try")
@role_required(*MANAGERS)
@limiter.limit("30 per hour", key_func=lambda: f"otp-try:{current_user.id}")
def try_send(site_id: int):
    if not ActionForm().validate_on_submit():
        abort(400)
    site = _site(site_id)
    try:
        attempt = tryit.send_code(session=db.session(), account_id=_account_id(), user_id=current_user.id,
                                  site_id=site_id, secret=_code_key(), caller=services.otp_caller(),
                                  credential_name=_("Dashboard test SMS"), now=clock.now())
    except NotAManager:
        abort(403)
    except tryit.NoVerifiedPhone:
        return _show(site, refused=_("The code goes to your own mobile number: verify it first."), fragment="try_it")
    except ResendTooSoon as wait:
        return _show(site, refused=_("%(text)s (%(seconds)s s)", text=_(wait.text), seconds=wait.retry_after_seconds),
                     fragment="try_it")
    except RequestBlocked as blocked:
        return _show(site, refused=_(blocked.text), fragment="try_it")
    except (InvalidFields, InvalidField) as invalid:
        return _show(site, refused=" ".join(m for messages in _errors(invalid).values() for m in messages),
                     fragment="try_it")
    if not wants_fragment():
        return redirect(url_for("otp.try_status", site_id=site_id, msgid=attempt.msgid), code=303)
    return _try_panel(site, attempt.msgid)


def _try_panel(site, msgid: str, **state):
    sms = tryit.sent(session=db.session(), account_id=_account_id(), site_id=site.id, msgid=msgid)
    if sms is None:
        abort(404)
    return _show(site, attempt=sms, fragment="try_it", **state)


@bp.get("/otp-sites/<int:site_id>/try/<msgid>")
@role_required(*MANAGERS)
def try_status(site_id: int, msgid: str):
    """The panel while the code travels (htmx polls it), or the whole page showing it."""
    return _try_panel(_site(site_id), msgid)


@bp.post("/otp-sites/<int:site_id>/try/verify")
@role_required(*MANAGERS)
@limiter.limit("60 per hour", key_func=lambda: f"otp-try-verify:{current_user.id}")
def try_verify(site_id: int):
    site = _site(site_id)
    form = TryVerifyForm()
    if not form.validate_on_submit():
        if form.msgid.errors or form.csrf_token.errors:
            abort(400)
        return _try_panel(site, form.msgid.data, refused=" ".join(form.code.errors))
    try:
        verified = tryit.verify(session=db.session(), account_id=_account_id(), user_id=current_user.id,
                                msgid=form.msgid.data, code=form.code.data, secret=_code_key(),
                                credential_name=_("Dashboard test SMS"), now=clock.now())
    except NotAManager:
        abort(403)
    except VerificationFailed as failed:
        text = _(FAILURE_TEXTS[failed.reason])
        if failed.attempts_left is not None:
            text += " " + _("Attempts left: %(count)s.", count=failed.attempts_left)
        return _try_panel(site, form.msgid.data, refused=text)
    except (InvalidFields, InvalidField) as invalid:
        return _try_panel(site, form.msgid.data,
                          refused=" ".join(m for messages in _errors(invalid).values() for m in messages))
    return _try_panel(site, form.msgid.data, verified=verified)


# -- settings ---------------------------------------------------------------------------------------


def _settings_page(site, form: SettingsForm, status: int = 200):
    return render_page("otp/settings.html", site=site, form=form, preview=_preview(form)), status


@bp.get("/otp-sites/<int:site_id>/settings")
@role_required(*MANAGERS)
def settings(site_id: int):
    site = _site(site_id)
    form = SettingsForm(formdata=None)
    form.fill(site)
    return _settings_page(site, form)


@bp.post("/otp-sites/<int:site_id>/settings")
@role_required(*MANAGERS)
def save_settings(site_id: int):
    site = _site(site_id)
    form = SettingsForm()
    if not form.validate_on_submit():
        return _settings_page(site, form, 422)
    try:
        site = otp.update_settings(session=db.session(), account_id=_account_id(), site_id=site_id,
                                   settings=form.settings(), now=clock.now())
    except InvalidFields as invalid:
        for name, messages in _errors(invalid).items():
            field = getattr(form, name, None)
            (field if field is not None else form.display_name).errors = messages
        return _settings_page(site, form, 422)
    except SiteNotFound:
        abort(404)
    flash(_("The settings of %(name)s are saved. Codes already sent keep the settings they were sent with.",
            name=site.display_name), "success")
    return redirect(url_for("otp.settings", site_id=site_id), code=303)


def _preview(form: SettingsForm) -> dict:
    """The message as an end user would receive it, with its length and segments, or why the
    template cannot be used."""
    length = form.code_length.data
    minutes = form.lifetime_minutes.data
    length = int(length) if str(length).strip().isdigit() and 1 <= int(length) <= 10 else 6
    minutes = int(minutes) if str(minutes).strip().isdigit() else 5
    name = (form.display_name.data or "").strip()
    text = rules.render(form.template.data or "", code=SAMPLE_CODE[:length], site=name, minutes=minutes)
    try:
        split = segments.split(text)
    except segments.TooLong as too_long:
        split, parts = None, too_long.parts
    else:
        parts = split.parts
    try:
        rules.template_parts(form.template.data or "", site=name, code_length=length, minutes=minutes)
        problem = None
    except InvalidField as invalid:
        problem = _(invalid.reason)
    return {"text": text, "units": split.units if split else None, "parts": parts,
            "encoding": split.encoding if split else None, "problem": problem}


@bp.get("/otp-sites/<int:site_id>/preview")
@role_required(*MANAGERS)
def preview(site_id: int):
    site = _site(site_id)
    form = SettingsForm(request.args, meta={"csrf": False})
    return render_page("otp/settings.html", fragment="preview", site=site, form=form, preview=_preview(form))


# -- activity: log, statistics, blocked requests ---------------------------------------------------


@bp.get("/otp-sites/<int:site_id>/activity")
@role_required(*MANAGERS)
def activity(site_id: int):
    site = _site(site_id)
    mode = request.args.get("mode", "live")
    if mode not in MODES:
        mode = "live"
    now, session, account_id = clock.now(), db.session(), _account_id()
    return render_page(
        "otp/activity.html", site=site, mode=mode, action_form=ActionForm(),
        log=otp.log_of(session=session, account_id=account_id, site_id=site_id, now=now, limit=50),
        days=otp.statistics_of(session=session, account_id=account_id, site_id=site_id, now=now, mode=mode),
        blocked=otp.blocked_of(session=session, account_id=account_id, site_id=site_id, limit=50),
        liftable=otp.LIFTABLE)


@bp.post("/otp-sites/<int:site_id>/resume")
@role_required("owner")
def resume(site_id: int):
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        site = otp.resume_site(session=db.session(), account_id=_account_id(), site_id=site_id,
                               user_id=current_user.id, now=clock.now())
    except SiteNotFound:
        abort(404)
    flash(_("%(name)s is sending codes again. Its completion rate is counted afresh from now.",
            name=site.display_name), "success")
    return redirect(url_for("otp.activity", site_id=site_id), code=303)


@bp.post("/otp-sites/<int:site_id>/blocked/<int:block_id>/lift")
@role_required("owner")
def lift(site_id: int, block_id: int):
    """What was counted against the number, range or IP no longer counts; a pause ends."""
    if not ActionForm().validate_on_submit():
        abort(400)
    _site(site_id)
    try:
        otp.lift_block(session=db.session(), account_id=_account_id(), block_id=block_id, user_id=current_user.id,
                       now=clock.now())
    except SiteNotFound:
        abort(404)
    except NotLiftable as refused:
        flash(_(refused.text), "error")
    else:
        flash(_("The block is lifted: what was counted before it no longer counts."), "success")
    return redirect(url_for("otp.activity", site_id=site_id, _anchor="blocked"), code=303)
