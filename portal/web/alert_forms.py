"""The alert settings' forms: labels and the shape of each value. How many thresholds, which
addresses a webhook may use and which numbers may receive an SMS are the alerts service's rules
(portal.alerts), which names every wrong setting."""

import re
from urllib.parse import urlsplit

from flask_babel import lazy_gettext as _l
from wtforms import BooleanField, EmailField, SelectField, SelectMultipleField, StringField
from wtforms.validators import Email, InputRequired, Length, Optional, ValidationError

from portal.web.forms import Form

THRESHOLD_FIELDS = ("threshold_1", "threshold_2", "threshold_3")
MAX_THRESHOLD_YEN = 1_000_000
YEN = re.compile(r"^[¥￥]?\s*(\d{1,3}(,\d{3})+|\d+)\s*(円)?$")


def whole_yen(text: str | None) -> int | None:
    """"¥1,000", "1000" or "1000円" → 1000; None when empty; ValueError when not whole yen."""
    raw = (text or "").strip()
    if not raw:
        return None
    match = YEN.match(raw)
    if not match:
        raise ValueError(raw)
    return int(match.group(1).replace(",", ""))


def _yen(form, field) -> None:
    try:
        value = whole_yen(field.data)
    except ValueError:
        raise ValidationError(_l("Enter a whole number of yen, for example 1000.")) from None
    if value is not None and not 1 <= value <= MAX_THRESHOLD_YEN:
        raise ValidationError(_l("Enter an amount from ¥1 to ¥1,000,000."))


def threshold_field(label, hint):
    return StringField(label, validators=[Optional(), Length(max=20), _yen], description=hint)


class ThresholdsForm(Form):
    threshold_1 = threshold_field(_l("First threshold"), _l("in yen"))
    threshold_2 = threshold_field(_l("Second threshold"), _l("in yen, optional"))
    threshold_3 = threshold_field(_l("Third threshold"), _l("in yen, optional"))

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        seen = set()
        for name in THRESHOLD_FIELDS:
            field = getattr(self, name)
            if field.errors:
                continue
            value = whole_yen(field.data)
            if value is not None and value in seen:
                field.errors = [_l("This threshold is already set above.")]
                valid = False
            seen.add(value)
        return valid

    def yen(self) -> list[int]:
        """The thresholds entered, in the order typed, empty fields left out."""
        return [value for value in (whole_yen(getattr(self, name).data) for name in THRESHOLD_FIELDS)
                if value is not None]

    def fill(self, thresholds) -> None:
        for name, threshold in zip(THRESHOLD_FIELDS, thresholds):
            getattr(self, name).data = f"{threshold.yen}"


class RecipientsForm(Form):
    all_members = BooleanField(_l("Every owner and billing member, also those who join later"))
    member_ids = SelectMultipleField(_l("Or these members"), coerce=int, validate_choice=False)


class AddressForm(Form):
    address = EmailField(_l("Another e-mail address"), validators=[InputRequired(), Email(), Length(max=254)],
                         description=_l("It receives a link to confirm, and no alert until it is confirmed."))


def _webhook(form, field) -> None:
    text = (field.data or "").strip()
    parts = urlsplit(text)
    if text and (parts.scheme not in ("http", "https") or not parts.hostname or len(text) > 2000):
        raise ValidationError(_l("Enter an http:// or https:// address."))


def _days(form, field) -> None:
    text = (field.data or "").strip()
    if form.run_out.data and not (text.isascii() and text.isdigit() and 1 <= int(text) <= 90):
        raise ValidationError(_l("Enter a number of days from 1 to 90."))


class ChannelsForm(Form):
    email = BooleanField(_l("E-mail to the recipients above"))
    webhook_url = StringField(
        _l("Webhook URL (optional)"), validators=[Optional(), _webhook],
        description=_l("Each alert is posted here as JSON, signed like the API callbacks."))
    sms = BooleanField(_l("SMS to a verified mobile number"),
                       description=_l("Off unless you turn it on: each alert SMS is charged like any SMS you send."))
    sms_number = SelectField(_l("Mobile number for the SMS"), validate_choice=False)
    expiry_warnings = BooleanField(_l("Warn 7 days and 1 day before credit expires"))
    run_out = BooleanField(_l("Warn when credit will run out soon at the recent pace"))
    run_out_days = StringField(_l("Warn when it runs out within"), validators=[_days],
                               description=_l("days (1–90)"))

    def fill(self, settings) -> None:
        self.email.data = settings.email
        self.webhook_url.data = settings.webhook_url or ""
        self.sms.data = settings.sms
        self.sms_number.data = settings.sms_number or ""
        self.expiry_warnings.data = settings.expiry_warnings
        self.run_out.data = settings.run_out_days is not None
        self.run_out_days.data = str(settings.run_out_days if settings.run_out_days is not None else 7)
