"""Forms: field checks and labels; the domain rules live in the services."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.form import _Auto
from wtforms.fields.choices import SelectChoice
from wtforms import (BooleanField, EmailField, HiddenField, PasswordField, RadioField, SelectField, SelectMultipleField,
                     StringField, TelField, TextAreaField)
from wtforms.validators import Email, InputRequired, Length, Optional, Regexp

from portal import formats
from portal.accounts.models import AccountKind, Language, Role, TaxResidency
from portal.accounts.passwords import MAX_LENGTH
from portal.billing.rules import JAPAN_TAX_RATE
from portal.credentials.models import CredentialMode, Scope
from portal.web import kept
from portal.web.labels import ROLE_LABELS

PASSWORD_MESSAGES = {
    "too_short": _l("Use at least 15 characters. A few random words make a strong, memorable password."),
    "too_long": _l("Use at most 128 characters."),
    "too_common": _l("This password is on a list of commonly used passwords. Choose another."),
    "contains_context": _l("Do not use your e-mail name or the service name in your password."),
    "too_repetitive": _l("This password repeats one or two characters. Choose another."),
}
LANGUAGE_CHOICES = [SelectChoice(Language.JA, "日本語"), SelectChoice(Language.EN, "English")]


class Form(FlaskForm):
    """Every form of the portal: shown again after an expired form, an ended session or a rate
    limit, it is filled with what was typed (portal.web.kept)."""

    class Meta:
        def wrap_formdata(self, form, formdata):
            if formdata is _Auto and not form.is_submitted():
                return kept.formdata_for_this_page()
            return super().wrap_formdata(form, formdata)


def password_field(label):
    return PasswordField(label, validators=[InputRequired(), Length(max=MAX_LENGTH * 4)])


class SignUpForm(Form):
    name = StringField(_l("Your name"), validators=[InputRequired(), Length(max=100)])
    email = EmailField(_l("E-mail address"), validators=[InputRequired(), Email(), Length(max=254)])
    password = password_field(_l("Password"))
    account_kind = RadioField(
        _l("Who is the customer?"),
        choices=[SelectChoice(AccountKind.INDIVIDUAL, _l("Myself (individual)")),
                 SelectChoice(AccountKind.COMPANY, _l("A company or organisation"))],
        default=AccountKind.INDIVIDUAL,
        validators=[InputRequired()],
    )
    account_name = StringField(_l("Company or organisation name"), validators=[Optional(), Length(max=200)])
    tax_residency = SelectField(
        _l("Tax residency"),
        choices=[SelectChoice(TaxResidency.JP, _l("Japan")), SelectChoice(TaxResidency.OVERSEAS, _l("Outside Japan"))],
        default=TaxResidency.JP,
    )
    language = SelectField(_l("Language for e-mails"), choices=LANGUAGE_CHOICES)

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        if self.account_kind.data == AccountKind.COMPANY and not (self.account_name.data or "").strip():
            self.account_name.errors = [*self.account_name.errors, _l("Enter the company or organisation name.")]
            valid = False
        return valid


class LogInForm(Form):
    email = EmailField(_l("E-mail address"), validators=[InputRequired(), Length(max=254)])
    password = PasswordField(_l("Password"), validators=[InputRequired(), Length(max=MAX_LENGTH * 4)])
    next = HiddenField()


class EmailForm(Form):
    email = EmailField(_l("E-mail address"), validators=[InputRequired(), Email(), Length(max=254)])


class NewPasswordForm(Form):
    password = password_field(_l("New password"))


class ChangePasswordForm(Form):
    current_password = PasswordField(_l("Current password"), validators=[InputRequired()])
    new_password = password_field(_l("New password"))
    end_other_sessions = BooleanField(_l("Sign out of all other sessions"), default=True)


class SignUpPasswordForm(Form):
    password = PasswordField(
        _l("The password you chose when you signed up"), validators=[InputRequired(), Length(max=MAX_LENGTH * 4)]
    )


class ReauthenticateForm(Form):
    password = PasswordField(_l("Password"), validators=[InputRequired()])
    next = HiddenField()


class PhoneForm(Form):
    phone = TelField(
        _l("Mobile number"),
        validators=[InputRequired(), Length(max=20)],
        description=_l("A Japanese mobile number such as 090-1234-5678, or any number in +81… form."),
    )


class CodeForm(Form):
    code = StringField(
        _l("6-digit code"),
        validators=[InputRequired(), Regexp(r"^\s*\d{6}\s*$", message=_l("Enter the 6 digits from the SMS."))],
    )


class InviteForm(Form):
    email = EmailField(_l("E-mail address"), validators=[InputRequired(), Email(), Length(max=254)])
    role = SelectField(_l("Role"), choices=[SelectChoice(value, label) for value, label in ROLE_LABELS.items()],
                       default=Role.DEVELOPER)


class RoleForm(Form):
    role = SelectField(_l("Role"), choices=[SelectChoice(value, label) for value, label in ROLE_LABELS.items()])


class AcceptInvitationForm(Form):
    name = StringField(_l("Your name"), validators=[InputRequired(), Length(max=100)])
    password = password_field(_l("Password"))
    language = SelectField(_l("Language"), choices=LANGUAGE_CHOICES)


class ProfileForm(Form):
    name = StringField(_l("Your name"), validators=[InputRequired(), Length(max=100)])
    language = SelectField(_l("Language"), choices=LANGUAGE_CHOICES)


class ActionForm(Form):
    """A button that only needs the CSRF token."""


class BillingProfileForm(Form):
    legal_name = StringField(
        _l("Legal name"), validators=[InputRequired(), Length(max=200)],
        description=_l("The company's registered name, or your full name: invoices are addressed to it."),
    )
    postal_code = StringField(_l("Postal code"), validators=[InputRequired(), Length(max=20)], filters=[formats.postal_code])
    address = StringField(_l("Address"), validators=[InputRequired(), Length(max=300)])
    billing_email = EmailField(
        _l("Billing e-mail"), validators=[InputRequired(), Email(), Length(max=254)],
        description=_l("Receipts and payment notices go to this address."),
    )
    tax_residency = RadioField(
        _l("Tax residency"),
        choices=[SelectChoice(TaxResidency.JP, _l("Japan (%(rate)s%% consumption tax is added)", rate=JAPAN_TAX_RATE)),
                 SelectChoice(TaxResidency.OVERSEAS, _l("Outside Japan (no Japanese consumption tax)"))],
        default=TaxResidency.JP, validators=[InputRequired()],
    )
    registration_number = StringField(
        _l("Qualified invoice registration number (optional)"),
        validators=[Optional(), Regexp(r"^\s*[Tt]\s*\d{13}\s*$", message=_l("Enter T followed by 13 digits, for example T1234567890123."))],
        description=_l("Only if your business is a registered qualified invoice issuer."),
    )
    next = HiddenField()


class AmountForm(Form):
    """The amount of credit to buy; GET (no CSRF) so the confirmation screen has an address."""

    class Meta:
        csrf = False

    amount = StringField(_l("Amount of credit (yen, tax excluded)"), validators=[InputRequired()])
    intent = HiddenField()  # the purchase's one-time token, carried into the confirmation screen's address


class PayForm(Form):
    amount = HiddenField(validators=[InputRequired()])
    total = HiddenField(validators=[InputRequired()])  # what the customer confirmed
    intent = HiddenField(validators=[InputRequired(), Length(max=64)])  # the form's one-time token


class CredentialForm(Form):
    name = StringField(_l("Name"), validators=[InputRequired(), Length(max=100)],
                       description=_l("Where it is used, for example: production web server."))
    mode = RadioField(
        _l("Kind"),
        choices=[SelectChoice(CredentialMode.TEST,
                              _l("Test: everything is checked and recorded in the test inbox; nothing is sent or charged")),
                 SelectChoice(CredentialMode.LIVE, _l("Live: messages and calls are sent and charged"))],
        default=CredentialMode.TEST, validators=[InputRequired()],
    )
    scopes = SelectMultipleField(
        _l("Scopes"),
        choices=[SelectChoice(Scope.SMS, _l("SMS")), SelectChoice(Scope.VOICE, _l("Voice calls")),
                 SelectChoice(Scope.OTP, _l("OTP")), SelectChoice(Scope.READ, _l("Read (status, lists, credit)"))],
        default=[Scope.SMS, Scope.VOICE, Scope.READ], validators=[InputRequired(message=_l("Choose at least one scope."))],
    )
    networks = TextAreaField(
        _l("Allowed IP addresses (optional)"), validators=[Optional(), Length(max=4000)],
        description=_l("One address or CIDR range per line, e.g. 203.0.113.0/24. Empty: any address."),
    )
    expires = SelectField(
        _l("Expires"),
        choices=[SelectChoice("0", _l("Never (revoke it when it is no longer needed)")),
                 SelectChoice("30", _l("In 30 days")), SelectChoice("90", _l("In 90 days")),
                 SelectChoice("365", _l("In a year"))],
        default="0",
    )
    monthly_cap = StringField(
        _l("Monthly spend cap in yen (optional)"), validators=[Optional(), Length(max=12)],
        description=_l("Sends that would take this credential over the cap in a calendar month are refused."),
    )
    sites = SelectMultipleField(_l("OTP sites this credential may use"), coerce=int, validate_choice=False)


class RotateForm(Form):
    overlap = SelectField(
        _l("Keep the current token working for"),
        choices=[SelectChoice("0", _l("No overlap: stop it now")), SelectChoice("1", _l("1 hour")),
                 SelectChoice("24", _l("1 day")), SelectChoice("72", _l("3 days")), SelectChoice("168", _l("7 days"))],
        default="24",
    )


class CredentialSitesForm(Form):
    """The OTP sites a credential may use; none ticked: every site. The choices are not checked
    here: the service refuses a site that is not the account's."""

    sites = SelectMultipleField(_l("OTP sites this credential may use"), coerce=int, validate_choice=False)


class SendTestSMSForm(Form):
    """The dashboard's "send a test SMS" button. `attempt` is new on every rendering of the
    button and keys the send, so a double click or a resubmitted page sends once."""

    attempt = HiddenField(validators=[InputRequired(), Regexp(r"^[A-Za-z0-9_-]{16,64}$")])


class PostpayApplicationForm(Form):
    """A company's application for invoice billing (請求書後払い)."""

    legal_name = StringField(_l("Legal name"), validators=[InputRequired(), Length(max=200)],
                             description=_l("The company's registered name: invoices are addressed to it."))
    address = StringField(_l("Address"), validators=[InputRequired(), Length(max=300)])
    registration_number = StringField(
        _l("Qualified invoice registration number (optional)"),
        validators=[Optional(), Regexp(r"^\s*[Tt]\s*\d{13}\s*$", message=_l("Enter T followed by 13 digits, for example T1234567890123."))],
    )
    contact_name = StringField(_l("Billing contact"), validators=[InputRequired(), Length(max=100)],
                               description=_l("The person invoices and reminders are meant for."))
    contact_email = EmailField(_l("Billing contact's e-mail"), validators=[InputRequired(), Email(), Length(max=254)])
    expected_monthly_yen = StringField(
        _l("Expected monthly usage (¥, tax excluded)"), validators=[InputRequired(), Regexp(r"^\s*[0-9,，０-９]{1,12}\s*$", message=_l("Enter an amount in yen, for example 50000."))],
    )
