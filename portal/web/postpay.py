"""Invoice billing (請求書後払い) for company accounts: the application form, the contract's status
and the credit line's figures, and the monthly invoices (owners and billing members only)."""

import unicodedata

from flask import Blueprint, abort, current_app, flash, make_response, redirect, url_for
from flask_babel import gettext as _
from flask_login import current_user

from portal import clock, db, documents
from portal.accounts.models import AccountKind, Role
from portal.billing import rules as billing_rules
from portal.postpay import contracts, invoices, queries
from portal.postpay import documents as postpay_documents
from portal.postpay.contracts import AlreadyApproved, ApplicationForm, NotACompany
from portal.web.current import role_required
from portal.web.forms import PostpayApplicationForm
from portal.web.fragments import render_page

bp = Blueprint("postpay", __name__)
BUYERS = (Role.OWNER, Role.BILLING)


def _account_id() -> int:
    return current_user.account.id


def _page(form: PostpayApplicationForm, status: int = 200):
    account_id = _account_id()
    standing = queries.standing(db.session(), account_id=account_id)
    return render_page("billing/postpay.html", form=form, standing=standing,
                       company=current_user.account.kind == AccountKind.COMPANY,
                       invoices=invoices.invoices_of(session=db.session(), account_id=account_id)), status


@bp.get("/billing/invoice-billing")
@role_required(*BUYERS)
def status():
    account = current_user.account
    return _page(PostpayApplicationForm(legal_name=account.name, contact_name=current_user.name,
                                        contact_email=current_user.email))


@bp.post("/billing/invoice-billing")
@role_required(*BUYERS)
def apply():
    form = PostpayApplicationForm()
    if not form.validate_on_submit():
        return _page(form, 422)
    number = "".join((form.registration_number.data or "").split()).upper() or None
    if number and not billing_rules.valid_registration_number(number):
        form.registration_number.errors = [_("This registration number is not valid: check the digits.")]
        return _page(form, 422)
    expected = int(unicodedata.normalize("NFKC", form.expected_monthly_yen.data).replace(",", "").strip() or 0)
    if expected <= 0:
        form.expected_monthly_yen.errors = [_("Enter an amount in yen, for example 50000.")]
        return _page(form, 422)
    try:
        contracts.apply(session=db.session(), account_id=_account_id(), user_id=current_user.id, now=clock.now(),
                        operator=current_app.config["POSTPAY_OPERATOR_EMAIL"] or current_app.config["LEGAL_EMAIL"]
                        or "operator@chotto.localhost",
                        form=ApplicationForm(legal_name=form.legal_name.data.strip(), address=form.address.data.strip(),
                                             registration_number=number, contact_name=form.contact_name.data.strip(),
                                             contact_email=form.contact_email.data.strip(),
                                             expected_monthly_yen=expected))
    except (NotACompany, AlreadyApproved):
        abort(409)
    flash(_("Your application is sent. We will e-mail the owners when it is decided."), "success")
    return redirect(url_for("postpay.status"))


@bp.get("/billing/invoice-billing/invoices/<number>.pdf")
@role_required(*BUYERS)
def invoice_pdf(number: str):
    found = postpay_documents.invoice_of(db.session(), account_id=_account_id(), number=number)
    if found is None:
        abort(404)
    response = make_response(documents.postpay_pdf_of(db.session(), invoice_id=found.id))
    response.headers["Content-Type"] = "application/pdf"
    response.headers["Content-Disposition"] = f'attachment; filename="{found.number}.pdf"'
    response.headers["Cache-Control"] = "private, no-store"
    return response
