"""The local payment sandbox's checkout page (only when no Stripe key is configured): the
payer pays, is declined, or takes a konbini voucher, and the resulting event is signed and
handed to the same webhook code that Stripe's events go through."""

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from portal import clock, db, services, webhooks
from portal.accounts.models import Role
from portal.billing import sandbox, service
from portal.web.current import role_required
from portal.web.forms import ActionForm

bp = Blueprint("sandbox", __name__, url_prefix="/sandbox")
PAYERS = (Role.OWNER, Role.BILLING)


def _payment_and_purchase(session_id: str):
    payment = sandbox.payment_of(db.session(), session_id=session_id)
    if payment is None:
        abort(404)
    purchase = service.purchase_of(db.session(), account_id=current_user.account.id, public_id=payment.purchase_ref)
    if purchase is None:
        abort(404)
    return payment, purchase


@bp.get("/checkout/<session_id>")
@role_required(*PAYERS)
def checkout(session_id: str):
    payment, purchase = _payment_and_purchase(session_id)
    return render_template("billing/sandbox.html", payment=payment, purchase=purchase, form=ActionForm())


@bp.post("/checkout/<session_id>")
@role_required(*PAYERS)
def act(session_id: str):
    purchase = _payment_and_purchase(session_id)[1]
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        body = sandbox.act(session=db.session(), session_id=session_id, action=request.form.get("action", ""),
                           now=clock.now())
    except sandbox.NotAllowed:
        flash(_("That step does not fit this checkout any more."), "error")
        return redirect(url_for("sandbox.checkout", session_id=session_id))
    secret = services.webhook_secrets()[0]
    status = webhooks.receive(body, webhooks.sign(body, secret, int(clock.now().timestamp())))[1]
    if status != 200:
        abort(500)
    return redirect(url_for("billing.purchase", public_id=purchase.public_id, returned=1))
