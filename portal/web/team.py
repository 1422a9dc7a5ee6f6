"""Members, roles and invitations of the account in use. Inviting an owner, changing a role and
removing a member need a password confirmed in the last 10 minutes; a removal first shows the
credentials the member created, each revoked unless the owner ticks "keep"."""

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_htmx.responses import HTMXResponseClientRedirect
from flask_login import current_user

from portal import clock, db
from portal.accounts import sessions, team
from portal.accounts.errors import (
    AlreadyMember,
    EmailTaken,
    InvitationForSomeoneElse,
    LastOwner,
    MailQuotaReached,
    NotAMember,
    TokenInvalid,
    WeakPassword,
)
from portal.accounts.models import Role
from portal.accounts.queries import InvalidEmail, user_by_email
from portal.web.auth import password_errors, sign_in
from portal.web.current import reauthentication_redirect, role_required
from portal.extensions import limiter
from portal.web import kept
from portal.web.forms import ROLE_LABELS, AcceptInvitationForm, ActionForm, InviteForm, RoleForm
from portal.extensions import htmx
from portal.web.fragments import render_page, wants_fragment

bp = Blueprint("team", __name__)


def _page(invite_form: InviteForm | None = None, status: int = 200):
    account_id = current_user.account.id
    return (
        render_page(
            "team/show.html",
            fragment="members",
            members=team.members(db.session(), account_id=account_id),
            invitations=team.pending_invitations(db.session(), account_id=account_id, now=clock.now()),
            invite_form=invite_form or InviteForm(),
            action_form=ActionForm(),
            role_labels=ROLE_LABELS,
            fresh=sessions.is_fresh(current_user.row, clock.now()),
        ),
        status,
    )


@bp.get("/team")
@role_required(*Role)
def show():
    return _page()


@bp.post("/team/invitations")
@role_required(Role.OWNER)
@limiter.limit("30 per hour")
def invite():
    form = InviteForm()
    if not form.validate_on_submit():
        return _page(form, 422)
    stale = form.role.data == Role.OWNER and reauthentication_redirect()
    if stale:
        return _go(stale)
    try:
        team.invite(
            session=db.session(),
            account_id=current_user.account.id,
            inviter_id=current_user.id,
            email=form.email.data,
            role=form.role.data,
            now=clock.now(),
        )
    except AlreadyMember:
        form.email.errors = [_("This person is already a member of the account.")]
        return _page(form, 422)
    except InvalidEmail:
        form.email.errors = [_("Enter a valid e-mail address.")]
        return _page(form, 422)
    except MailQuotaReached:
        form.email.errors = [_("This address has received as many invitations as an hour allows. Please try "
                               "again in an hour.")]
        return _page(form, 422)
    flash(_("Invitation sent to %(email)s. The link is valid for 7 days.", email=form.email.data), "success")
    return redirect(url_for("team.show"))


@bp.post("/team/invitations/<int:invitation_id>/revoke")
@role_required(Role.OWNER)
def revoke(invitation_id: int):
    if ActionForm().validate_on_submit():
        try:
            team.revoke_invitation(
                session=db.session(), account_id=current_user.account.id, invitation_id=invitation_id, now=clock.now()
            )
        except TokenInvalid:
            pass
        flash(_("The invitation is withdrawn."), "info")
    return redirect(url_for("team.show"))


@bp.get("/team/invitations")
@bp.get("/team/members/<int:membership_id>/role")
@role_required(Role.OWNER)
def back_to_team(membership_id: int | None = None):
    """Where the password prompt sends an owner back to after a refused POST (and the sign-in
    page after a form sent once the session had ended): what was typed goes along."""
    kept.move_to(url_for("team.show"))
    return redirect(url_for("team.show"))


@bp.post("/team/members/<int:membership_id>/role")
@role_required(Role.OWNER)
def change_role(membership_id: int):
    stale = reauthentication_redirect()
    if stale:
        return _go(stale)
    form = RoleForm()
    if form.validate_on_submit():
        try:
            changed = team.change_role(
                session=db.session(), account_id=current_user.account.id, membership_id=membership_id,
                role=form.role.data, actor_id=current_user.id, now=clock.now(),
            )
        except LastOwner:
            flash(_("An account needs at least one owner. Make someone else an owner first."), "error")
        except NotAMember:
            flash(_("That person is no longer a member."), "error")
        else:
            flash(_("Role changed."), "success")
            if changed.user_id == current_user.id and changed.role != Role.OWNER:
                return _go(redirect(url_for("team.show")))  # the page was drawn for an owner
    return _page() if wants_fragment() else redirect(url_for("team.show"))


@bp.route("/team/members/<int:membership_id>/remove", methods=["GET", "POST"])
@role_required(Role.OWNER)
def remove(membership_id: int):
    """A confirmation step listing the member's credentials, then the removal."""
    stale = reauthentication_redirect()
    if stale:
        return _go(stale)
    form = ActionForm()
    if form.validate_on_submit():
        keep = {int(value) for value in request.form.getlist("keep")
                if value.isascii() and value.isdigit() and len(value) <= 18}  # anything else is no id of ours
        try:
            removal = team.remove_member(
                session=db.session(), account_id=current_user.account.id, membership_id=membership_id,
                actor_id=current_user.id, keep=keep, now=clock.now(),
            )
        except LastOwner:
            flash(_("An account needs at least one owner. Make someone else an owner first."), "error")
        except NotAMember:
            flash(_("That person is no longer a member."), "error")
        else:
            flash(_("%(name)s was removed. API credentials revoked: %(revoked)d; kept: %(kept)d.",
                    name=removal.user.name, revoked=len(removal.revoked), kept=len(removal.kept)), "success")
            if removal.user.id == current_user.id:
                return _go(redirect(url_for("dashboard.show")))
        return _go(redirect(url_for("team.show")))
    try:
        member, user, credentials = team.member_and_credentials(
            db.session(), account_id=current_user.account.id, membership_id=membership_id, now=clock.now()
        )
    except NotAMember:
        flash(_("That person is no longer a member."), "error")
        return _go(redirect(url_for("team.show")))
    return render_template("team/remove.html", form=form, member=member, user=user, credentials=credentials,
                           role_labels=ROLE_LABELS)


def _go(response):
    """A redirect, or for htmx the same target as a full-page visit (not swapped into a table)."""
    if htmx:
        return HTMXResponseClientRedirect(response.location)
    return response


@bp.route("/invitations/<token>", methods=["GET", "POST"])
def accept(token: str):
    try:
        invitation, account = team.open_invitation(db.session(), token=token, now=clock.now())
    except TokenInvalid:
        return render_template("auth/link_invalid.html"), 410
    with db.read(db.session()):
        existing = user_by_email(db.session(), invitation.email)
    context = {"invitation": invitation, "account": account, "role_labels": ROLE_LABELS, "existing": existing}
    if existing is not None:
        return _accept_existing(token, context)
    return _accept_new(token, context)


def _accept_existing(token: str, context: dict):
    form = ActionForm()
    if not current_user.is_authenticated:
        return render_template("team/accept.html", form=None, **context)
    if form.validate_on_submit():
        try:
            team.accept(
                session=db.session(), token=token, user_id=current_user.id, session_id=current_user.row.id, now=clock.now()
            )
        except InvitationForSomeoneElse:
            flash(_("This invitation was sent to another e-mail address."), "error")
        except (AlreadyMember, TokenInvalid):
            flash(_("This invitation can no longer be used."), "error")
        else:
            flash(_("You joined %(account)s.", account=context["account"].name), "success")
            return redirect(url_for("dashboard.show"))
    return render_template("team/accept.html", form=form, **context)


def _accept_new(token: str, context: dict):
    form = AcceptInvitationForm(language=session.get("lang") or context["account"].language)
    if form.validate_on_submit():
        try:
            user = team.accept_as_new_user(
                session=db.session(),
                token=token,
                name=form.name.data,
                password=form.password.data,
                language=form.language.data,
                now=clock.now(),
            )
        except WeakPassword as error:
            password_errors(form.password, error)
        except (EmailTaken, TokenInvalid, AlreadyMember):
            return render_template("auth/link_invalid.html"), 410
        else:
            sign_in(user.id)
            flash(_("Welcome to %(account)s.", account=context["account"].name), "success")
            return redirect(url_for("dashboard.show"))
    return render_template("team/accept.html", form=form, **context)
