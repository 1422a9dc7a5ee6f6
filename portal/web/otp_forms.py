"""The OTP sites' forms: labels and the shape of each value; the ranges and the template's rules
are the OTP service's (portal.otp.rules), which names every wrong setting."""

from urllib.parse import urlsplit

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, RadioField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, Optional, Regexp, ValidationError

from portal.otp import rules
from portal.otp.models import Fallback, TemplateLanguage

TEMPLATE_LANGUAGES = [SelectChoice(TemplateLanguage.JA, _l("In Japanese")),
                      SelectChoice(TemplateLanguage.EN, _l("In English"))]
NUMBERS = ("code_length", "lifetime_minutes", "max_attempts", "resend_cooldown_seconds", "fallback_seconds",
           "per_number_limit", "per_ip_limit")


def _range_hint(name: str, text):
    low, high = rules.RANGES[name]
    return _l("%(text)s (%(low)s–%(high)s)", text=text, low=low, high=high)


def number_field(name: str, label, hint):
    return StringField(label, validators=[InputRequired(), Length(max=6)], description=_range_hint(name, hint))


class SiteForm(FlaskForm):
    website = StringField(_l("Website"), validators=[InputRequired(), Length(max=300)],
                          description=_l("Its address, such as https://example.com, or just the domain."))
    display_name = StringField(_l("Display name (optional)"), validators=[Optional(), Length(max=rules.DISPLAY_NAME_LENGTH)],
                               description=_l("The name in the message, {site}. The domain if empty."))


def _callback(form, field) -> None:
    text = (field.data or "").strip()
    parts = urlsplit(text)
    if text and (parts.scheme not in ("http", "https") or not parts.hostname or len(text) > 2000):
        raise ValidationError(_l("Enter an http:// or https:// address."))


class SettingsForm(FlaskForm):
    display_name = StringField(_l("Display name"), validators=[InputRequired(), Length(max=rules.DISPLAY_NAME_LENGTH)],
                               description=_l("Shown in the message as {site}."))
    template_language = SelectField(_l("Message language"), choices=TEMPLATE_LANGUAGES)
    template = TextAreaField(
        _l("Message template"), validators=[InputRequired(), Length(max=500)],
        description=_l("Must contain {code}; may contain {site} and {minutes}. It must fit in one SMS segment."))
    code_length = number_field("code_length", _l("Code length"), _l("digits"))
    lifetime_minutes = number_field("lifetime_minutes", _l("Code lifetime"), _l("minutes"))
    max_attempts = number_field("max_attempts", _l("Attempts"), _l("wrong codes allowed before the code is dead"))
    resend_cooldown_seconds = number_field("resend_cooldown_seconds", _l("Resend cooldown"),
                                           _l("seconds before the same number can get another code"))
    fallback = RadioField(
        _l("When to call"), default=Fallback.OFF, validators=[InputRequired()],
        choices=[SelectChoice(Fallback.OFF, _l("Off")),
                 SelectChoice(Fallback.AFTER_DELAY, _l("Call and read the code when it is not verified in time (at once if the SMS fails)")),
                 SelectChoice(Fallback.ON_FAILURE, _l("Call and read the code only when the SMS fails"))])
    fallback_seconds = number_field("fallback_seconds", _l("Call after"), _l("seconds without a verification"))
    fallback_language = SelectField(_l("Language of the call"), choices=TEMPLATE_LANGUAGES)
    allowed_countries = StringField(
        _l("Allowed countries"), validators=[InputRequired(), Length(max=200),
                                             Regexp(r"^[A-Za-z]{2}([\s,]+[A-Za-z]{2})*[\s,]*$",
                                                    message=_l("Use two-letter country codes, such as JP, US."))],
        description=_l("Two-letter country codes separated by commas. Codes to other countries are blocked."))
    per_number_limit = number_field("per_number_limit", _l("Codes per number"), _l("in 10 minutes"))
    per_ip_limit = number_field("per_ip_limit", _l("Codes per end-user IP address"), _l("in an hour"))
    callback_url = StringField(
        _l("Callback URL (optional)"), validators=[Optional(), _callback],
        description=_l("Signed events (sent, delivered, verified, failed, fallback called, blocked) are posted here."))

    def settings(self) -> rules.Settings:
        """The form's values as the service takes them; a number that is not one is passed as
        typed, for the service to name."""
        numbers = {name: _integer(getattr(self, name).data) for name in NUMBERS}
        countries = tuple(dict.fromkeys(code.upper() for code in
                                        (self.allowed_countries.data or "").replace(",", " ").split()))
        return rules.Settings(
            display_name=self.display_name.data or "", template_language=TemplateLanguage(self.template_language.data),
            template=(self.template.data or "").strip(), fallback=Fallback(self.fallback.data),
            fallback_language=TemplateLanguage(self.fallback_language.data), allowed_countries=countries,
            callback_url=(self.callback_url.data or "").strip() or None, **numbers)

    def fill(self, site) -> None:
        for name in ("display_name", "template_language", "template", "fallback", "fallback_language", *NUMBERS):
            getattr(self, name).data = getattr(site, name)
        self.allowed_countries.data = ", ".join(site.countries)
        self.callback_url.data = site.callback_url or ""


def _integer(text: str | None) -> int | str:
    try:
        return int((text or "").strip())
    except ValueError:
        return text or ""


class TryVerifyForm(FlaskForm):
    code = StringField(_l("The code from the SMS"), validators=[InputRequired(), Length(max=20)])
    msgid = HiddenField(validators=[InputRequired(), Regexp(r"^[0-9a-f]{32}$")])
