"""Codes shown to people as words: a credential's scopes and mode, a member's role, a message's
channel and status. One translatable label per code, used by the templates through filters."""

from types import SimpleNamespace

from babel import Locale
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l

from portal.accounts.models import Role
from portal.credentials.models import CredentialMode, Scope

SCOPE_LABELS = {Scope.SMS: _l("SMS"), Scope.VOICE: _l("Voice calls"), Scope.OTP: _l("OTP"), Scope.READ: _l("Read")}
MODE_LABELS = {CredentialMode.LIVE: _l("Live"), CredentialMode.TEST: _l("Test")}
ROLE_LABELS = {Role.OWNER: _l("Owner"), Role.DEVELOPER: _l("Developer"), Role.BILLING: _l("Billing")}
CHANNEL_LABELS = {"sms": _l("SMS"), "voice": _l("Voice call")}
USAGE_KIND_LABELS = {"sms": _l("SMS"), "voice": _l("Voice call"), "otp": _l("OTP code"), "otp_call": _l("OTP code by voice call")}
MESSAGE_STATUS_LABELS = {
    "QUEUED": _l("Queued"), "DELIVERING": _l("Delivering"), "DELIVERED": _l("Delivered"), "FAIL": _l("Not delivered"),
    "IN PROGRESS": _l("In progress"), "ANSWERED": _l("Answered"), "FAILED": _l("Call failed"),
    "UNKNOWN": _l("Checking with the carrier"),  # messages and calls whose outcome is unknown for now
}

USAGE_STATUS_LABELS = MESSAGE_STATUS_LABELS
UNANSWERED = _l("Not answered")
USAGE_STEP_LABELS = {
    "created": _l("Accepted"), "handed_to_carrier": _l("Handed to the carrier"), "delivered": _l("Delivered"),
    "failed": _l("Not delivered"), "refunded": _l("Refunded"), "call_started": _l("Call started"),
    "call_ended": _l("Call ended"), "code_verified": _l("Code verified"),
    "outcome_unknown": _l("Outcome unknown: checking with the carrier (refunded if it never took the message)"),
}
CODE_STATUS_LABELS = {"active": _l("code not used yet"), "verified": _l("code verified"),
                      "replaced": _l("code replaced by a newer one"), "locked": _l("code locked after wrong tries")}


PUNCTUATION = {
    "ja": SimpleNamespace(colon="：", open="（", close="）", comma="、", dash="：", space="", end=""),
    "en": SimpleNamespace(colon=": ", open=" (", close=")", comma=", ", dash=" — ", space=" ", end="."),
}


def _japanese() -> bool:
    return str(get_locale() or "en") == "ja"


def punctuation() -> SimpleNamespace:
    """The marks templates put between their own pieces (a label and its value, a name and its
    note): full-width on Japanese pages, with no space beside them."""
    return PUNCTUATION["ja" if _japanese() else "en"]


def label(labels: dict, code) -> str:
    """The word for a code; an unknown code is shown as it is rather than breaking the page."""
    return str(labels.get(code, code)) if code is not None else ""


def listing(words) -> str:
    """Words as a list in the page's language: 「SMS、音声通話」 / "SMS, Voice calls"."""
    return punctuation().comma.join(str(word) for word in words)


def country_name(code: str | None) -> str:
    """"JP" → 日本 / Japan; a code Babel does not know is shown as it is."""
    if not code:
        return ""
    return Locale.parse(str(get_locale() or "en")).territories.get(code.upper(), code)


def usage_row_status(row) -> str:
    """A usage row's status; a call that rang out without an answer reads "Not answered" (its
    status says ANSWERED: the carrier connected it for 0 seconds)."""
    return str(UNANSWERED) if row.unanswered else label(USAGE_STATUS_LABELS, row.status)


def register(app) -> None:
    filters = {"scope_label": SCOPE_LABELS, "mode_label": MODE_LABELS, "role_label": ROLE_LABELS,
               "channel_label": CHANNEL_LABELS, "message_status_label": MESSAGE_STATUS_LABELS,
               "usage_kind_label": USAGE_KIND_LABELS, "usage_status_label": USAGE_STATUS_LABELS,
               "usage_step_label": USAGE_STEP_LABELS, "code_status_label": CODE_STATUS_LABELS}
    for name, labels in filters.items():
        app.add_template_filter(lambda code, labels=labels: label(labels, code), name)
    app.add_template_filter(lambda codes: listing(label(SCOPE_LABELS, code) for code in codes), "scope_labels")
    app.add_template_filter(country_name, "country_name")
    app.add_template_filter(usage_row_status, "usage_row_status")
    app.context_processor(lambda: {"mark": punctuation()})
