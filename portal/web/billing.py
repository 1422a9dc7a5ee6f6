"""Buying credit and billing: the billing profile, amount → final confirmation → checkout →
status, purchase history, and the invoices (owners and billing members only)."""

import csv
import io
from datetime import datetime, time, timedelta

from flask import Blueprint, abort, current_app, flash, make_response, redirect, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user

from portal import clock, db
from portal.accounts import sessions
from portal.accounts.models import Language, Role
from portal import documents
from portal.billing import invoices, rules, service
from portal.billing.models import GatewayName, PurchaseStatus
from portal.postpay import documents as postpay_documents
from portal.clock import JST
from portal.formats import csv_cell
from portal.ledger.rules import purchase_expiry
from portal import security
from portal.web.auth import safe_next
from portal.bad_input import page_number
from portal.web.current import role_required
from portal.extensions import limiter
from portal.web.forms import AmountForm, BillingProfileForm, PayForm
from portal.web.fragments import render_page

bp = Blueprint("billing", __name__)
BUYERS = (Role.OWNER, Role.BILLING)
QUICK_PICKS = (1000, 3000, 10000)
STRIPE_CHECKOUT = "https://checkout.stripe.com"


def _account_id() -> int:
    return current_user.account.id


def _minimum() -> int:
    return current_app.config["MIN_PURCHASE_YEN"]


# -- billing profile --------------------------------------------------------------------------


def _profile_page(form: BillingProfileForm, status: int = 200):
    existing = service.profile_of(db.session(), account_id=_account_id())
    return render_page("billing/profile.html", form=form, existing=existing), status


@bp.get("/billing/profile")
@role_required(*BUYERS)
def profile():
    existing = service.profile_of(db.session(), account_id=_account_id())
    account = current_user.account
    if existing:
        form = BillingProfileForm(
            legal_name=existing.legal_name, postal_code=existing.postal_code, address=existing.address,
            billing_email=existing.billing_email, tax_residency=account.tax_residency,
            registration_number=existing.registration_number or "", next=request.args.get("next", ""),
        )
    else:
        form = BillingProfileForm(
            legal_name=account.name, billing_email=current_user.email, tax_residency=account.tax_residency,
            next=request.args.get("next", ""),
        )
    return _profile_page(form)


@bp.post("/billing/profile")
@role_required(*BUYERS)
def save_profile():
    form = BillingProfileForm()
    if not form.validate_on_submit():
        return _profile_page(form, 422)
    number = "".join((form.registration_number.data or "").split()).upper() or None
    if number and not rules.valid_registration_number(number):
        form.registration_number.errors = [_("This registration number is not valid: check the digits.")]
        return _profile_page(form, 422)
    existing = service.profile_of(db.session(), account_id=_account_id())
    email = form.billing_email.data.strip()
    if existing and existing.billing_email.lower() != email.lower() and not sessions.is_fresh(current_user.row, clock.now()):
        form.billing_email.errors = [_("To change the billing e-mail, confirm your password first.")]
        return render_page("billing/profile.html", form=form, existing=existing, needs_reauthentication=True), 403
    service.save_profile(
        session=db.session(), account_id=_account_id(), legal_name=form.legal_name.data.strip(),
        postal_code=form.postal_code.data.strip(), address=form.address.data.strip(), billing_email=email,
        residency=form.tax_residency.data, registration_number=number, now=clock.now(),
    )
    flash(_("Your billing details are saved."), "success")
    return redirect(safe_next(form.next.data) or url_for("billing.buy"))


# -- buying -------------------------------------------------------------------------------------


def _amount_error(error: rules.AmountError | None) -> str:
    if error is None:
        return _("Enter a whole number of yen, for example 1000.")
    if error.reason == "too_small":
        return _("The smallest purchase is ¥%(yen)s.", yen=f"{error.minimum:,}")
    return _("The largest purchase is ¥%(yen)s at a time.", yen=f"{error.maximum:,}")


def _buy_page(form: AmountForm, status: int = 200):
    form.intent.data = service.new_intent()  # each way to the confirmation screen is its own purchase intent
    return render_page("billing/buy.html", form=form, quick_picks=QUICK_PICKS, minimum=_minimum(),
                       maximum=rules.MAX_PURCHASE_YEN, intents={yen: service.new_intent() for yen in QUICK_PICKS}), status


def _quote_or_error(form: AmountForm):
    try:
        amount = rules.parse_amount(form.amount.data or "")
        return service.quote_for(db.session(), account_id=_account_id(), amount_yen=amount, minimum=_minimum()), None
    except rules.AmountError as error:
        return None, _amount_error(error)
    except ValueError:
        return None, _amount_error(None)


@bp.get("/credit/buy")
@role_required(*BUYERS)
def buy():
    return _buy_page(AmountForm(request.args if "amount" in request.args else None))


@bp.get("/credit/buy/confirm")
@role_required(*BUYERS)
def confirm():
    form = AmountForm(request.args)
    quote, error = _quote_or_error(form)
    if error:
        form.amount.errors = [error]
        return _buy_page(form, 422)
    profile = service.profile_of(db.session(), account_id=_account_id())
    if profile is None:
        flash(_("Before your first purchase, tell us who the receipts are for."), "info")
        return redirect(url_for("billing.profile", next=request.full_path))
    intent = request.args.get("intent", "")  # kept in the address, so going back here is the same intent
    earlier = (service.purchase_of_intent(db.session(), account_id=_account_id(), intent=intent)
               if service.valid_intent(intent) else None)
    if earlier is not None and earlier.status in (PurchaseStatus.PAID, PurchaseStatus.AWAITING):
        flash(_("You already confirmed this purchase, so no second payment was started. Its status is shown "
                "here."), "info")
        return redirect(url_for("billing.purchase", public_id=earlier.public_id))
    if not service.valid_intent(intent) or (earlier is not None and earlier.status != PurchaseStatus.OPEN):
        intent = service.new_intent()  # none yet, or its purchase failed or was replaced: a new one
    response = make_response(render_page("billing/confirm.html", quote=quote, profile=profile,
                                         form=PayForm(amount=str(quote.amount_yen), total=str(quote.total_yen),
                                                      intent=intent)))
    if current_app.extensions["portal.gateway"].name == GatewayName.STRIPE:
        security.allow_form_action(response, STRIPE_CHECKOUT)
    return response


@bp.post("/credit/buy/confirm")
@role_required(*BUYERS)
@limiter.limit("20 per hour", key_func=lambda: f"pay:{current_user.id}")
def pay():
    form = PayForm()
    if not form.validate_on_submit() or not service.valid_intent(form.intent.data):
        abort(400)
    quote, error = _quote_or_error(form)
    if error:
        flash(error, "error")
        return redirect(url_for("billing.buy"))
    if str(quote.total_yen) != form.total.data:  # the tax residency changed since the confirmation screen
        flash(_("The total changed since you confirmed it. Please check the new total before paying."), "error")
        return redirect(url_for("billing.confirm", amount=quote.amount_yen, intent=form.intent.data))
    try:
        purchase = service.start_purchase(
            session=db.session(), gateway=current_app.extensions["portal.gateway"], account_id=_account_id(),
            user_id=current_user.id, amount_yen=quote.amount_yen, minimum=_minimum(),
            language=str(get_locale() or Language.JA),
            line_items=documents.checkout_lines, base_url=current_app.config["BASE_URL"], now=clock.now(),
            intent=form.intent.data,
        )
    except service.IntentUsed as used:
        if used.purchase.status in (PurchaseStatus.PAID, PurchaseStatus.AWAITING):
            flash(_("You already confirmed this purchase, so no second payment was started. Its status is shown "
                    "here."), "info")
            return redirect(url_for("billing.purchase", public_id=used.purchase.public_id), 303)
        flash(_("This confirmation page is out of date, so no payment was started. Check the amount and confirm "
                "again."), "info")
        return redirect(url_for("billing.confirm", amount=quote.amount_yen), 303)
    except service.NoBillingProfile:
        return redirect(url_for("billing.profile", next=url_for("billing.confirm", amount=quote.amount_yen)))
    except service.GatewayUnavailable as failed:
        flash(_("The payment service did not answer. Nothing was charged; please try again in a moment."), "error")
        return redirect(url_for("billing.purchase", public_id=str(failed)))
    if purchase.checkout_url is None or purchase.status != PurchaseStatus.OPEN:  # still opening, or replaced meanwhile
        return redirect(url_for("billing.purchase", public_id=purchase.public_id), 303)
    return redirect(purchase.checkout_url, 303)


# -- purchases ----------------------------------------------------------------------------------


@bp.get("/credit/purchases")
@role_required(*BUYERS)
def purchases():
    page = page_number()
    rows, total = service.purchases_of(db.session(), account_id=_account_id(), page=page)
    return render_page("billing/purchases.html", fragment="history", purchases=rows, page=page, total=total, per_page=20)


@bp.get("/credit/purchases/<public_id>")
@role_required(*BUYERS)
def purchase(public_id: str):
    found = service.purchase_of(db.session(), account_id=_account_id(), public_id=public_id)
    if found is None:
        abort(404)
    if request.args.get("canceled") and found.status == PurchaseStatus.OPEN:
        flash(_("You left the payment page. Nothing was charged; you can pay from here or start again."), "info")
    documents_of = invoices.invoices_of_purchase(db.session(), purchase_id=found.id)
    return render_page("billing/purchase.html", fragment="status", purchase=found, invoices=documents_of,
                       retry_intent=service.new_intent(),
                       expires_at=purchase_expiry(found.paid_at) if found.paid_at else None,
                       sandbox=current_app.extensions["portal.gateway"].name == GatewayName.SANDBOX)


# -- invoices -----------------------------------------------------------------------------------


def _search() -> tuple[invoices.Search, dict[str, str]]:
    """Filters from the query string: dates are Japan calendar days, amounts whole yen."""
    args, errors, found = request.args, {}, {}
    for name, field in (("from", "issued_from"), ("to", "issued_before")):
        raw = (args.get(name) or "").strip()
        if raw:
            try:
                day = rules.search_day(raw)
            except rules.DayOutOfRange:
                first, last = rules.SEARCHABLE_DAYS
                errors[name] = _("Enter a date between %(first)s and %(last)s.", first=first.isoformat(),
                                 last=last.isoformat())
                continue
            except ValueError:
                errors[name] = _("Enter a date such as 2026-11-27.")
                continue
            day += timedelta(days=1) if name == "to" else timedelta()
            found[field] = datetime.combine(day, time(), tzinfo=JST)
    for name, field in (("min", "min_total"), ("max", "max_total")):
        raw = (args.get(name) or "").strip()
        if raw:
            try:
                found[field] = rules.parse_amount(raw)
            except ValueError:
                errors[name] = _("Enter a whole number of yen, for example 1000.")
    counterparty = (args.get("q") or "").strip()
    if len(counterparty) > invoices.COUNTERPARTY_LENGTH:
        errors["q"] = _("Enter a name of at most %(count)s characters.", count=invoices.COUNTERPARTY_LENGTH)
    else:
        found["counterparty"] = counterparty
    return invoices.Search(**found), errors


@bp.get("/billing/invoices")
@role_required(*BUYERS)
def invoice_list():
    search, errors = _search()
    rows = postpay_documents.issued(db.session(), account_id=_account_id(), search=search)
    filtered = any(request.args.get(name) for name in ("from", "to", "q", "min", "max"))
    return render_page("billing/invoices.html", documents=rows, errors=errors, filtered=filtered, args=request.args)


@bp.get("/billing/invoices.csv")
@role_required(*BUYERS)
def invoice_export():
    search, errors = _search()
    if errors:
        abort(400)
    rows = postpay_documents.issued(db.session(), account_id=_account_id(), search=search)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([_("Number"), _("Document"), _("Issued (Japan time)"), _("Transaction date (Japan time)"),
                     _("Recipient"), _("Recipient's registration number"), _("Amount excluding tax (yen)"),
                     _("Tax rate (%)"), _("Tax (yen)"), _("Total (yen)"), _("Re-issue of"),
                     _("Issuer's registration number")])
    kinds = {postpay_documents.RECEIPT: _("Receipt (qualified invoice)"), postpay_documents.RETURN: _("Return invoice"),
             postpay_documents.MONTHLY: _("Monthly invoice (qualified invoice)")}
    for document in rows:
        issued = (document.issued_at.astimezone(JST).strftime("%Y-%m-%d %H:%M:%S") if document.issued_at
                  else document.issued_on.isoformat())
        writer.writerow([csv_cell(value) if isinstance(value, str) else value for value in [
            document.number, kinds[document.kind], issued, document.transaction_date.isoformat(),
            document.recipient_name, document.recipient_registration_number or "", document.amount_yen,
            document.tax_rate, document.tax_yen, document.total_yen, document.replaces or "",
            document.issuer_registration_number,
        ]])
    response = make_response("\ufeff" + out.getvalue())  # a BOM, so spreadsheet software reads UTF-8
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    response.headers["Content-Disposition"] = 'attachment; filename="chotto-invoices.csv"'
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.get("/billing/invoices/<number>.pdf")
@role_required(*BUYERS)
def invoice_pdf(number: str):
    found = invoices.invoice_of(db.session(), account_id=_account_id(), number=number)
    language = request.args.get("lang", Language.JA)
    if found is None or language not in list(Language):
        abort(404)
    pdf = documents.pdf_of(db.session(), invoice_id=found.id, language=Language(language), now=clock.now())
    response = make_response(pdf)
    response.headers["Content-Type"] = "application/pdf"
    suffix = "" if language == Language.JA else "-en"
    response.headers["Content-Disposition"] = f'attachment; filename="{found.number}{suffix}.pdf"'
    response.headers["Cache-Control"] = "private, no-store"
    return response
