"""Every refusal of the OTP services, by the rule it breaks. The services speak no HTTP: the API
maps these to status codes, and the pages to messages.

Each reason has an English text marked for translation with `N_` (a marker only: the domain
imports no Flask); the pages translate it with gettext, the API answers it in English."""

from enum import StrEnum

from portal.messaging.errors import InsufficientCredit, InvalidField, InvalidFields, ScopeMissing, SpendCapReached
from portal.otp.models import BlockReason

__all__ = ["BLOCK_TEXTS", "FAILURE_TEXTS", "Failure", "InsufficientCredit", "InvalidField", "InvalidFields", "N_",
           "NotLiftable", "RESEND_TEXT", "RequestBlocked", "ResendTooSoon", "ScopeMissing", "SiteExists",
           "SiteNotAllowed", "SiteNotFound", "SpendCapReached", "VerificationFailed"]


def N_(text: str) -> str:
    """Marks `text` for the catalog; translated where it is shown."""
    return text


class SiteNotFound(InvalidField):
    """No site of this account has this domain (field `website`)."""

    def __init__(self, field: str = "website"):
        super().__init__(field, N_("No website with this domain is registered for this account."))


class SiteExists(InvalidField):
    """The account already registered this domain (Xoxzo: `{"website": ["… already exists."]}`)."""

    def __init__(self, domain: str):
        super().__init__("website", N_("A website with this domain already exists."))
        self.domain = domain


RESEND_TEXT = N_("A code was sent to this number a moment ago. Wait before requesting another.")


class SiteNotAllowed(Exception):
    """The credential is limited to other sites of the account."""

    text = N_("This credential may not be used for this website.")


class ResendTooSoon(Exception):
    """The site's resend cooldown for this number has not passed yet."""

    text = RESEND_TEXT

    def __init__(self, retry_after_seconds: int):
        super().__init__(f"retry after {retry_after_seconds} s")
        self.retry_after_seconds = retry_after_seconds


BLOCK_TEXTS = {
    BlockReason.COUNTRY: N_("This site does not send codes to that country."),
    BlockReason.UNPROVEN: N_("Until the ownership of the website is proven, codes go only to the account's "
                             "verified mobile numbers."),
    BlockReason.NUMBER_LIMIT: N_("Too many codes were sent to this number. Try again later."),
    BlockReason.IP_LIMIT: N_("Too many codes were requested from this IP address. Try again later."),
    BlockReason.PREFIX_LIMIT: N_("Too many codes were sent to numbers in this range. Try again later."),
    BlockReason.PAUSED: N_("This site is paused: too few of its codes were verified. An owner can resume it in "
                           "the portal."),
    BlockReason.LOCKED: N_("Too many wrong codes were entered for this number. Try again later."),
}


class RequestBlocked(Exception):
    """A fraud guard (or the ownership rule) refused the request; it was recorded with its
    reason. `retry_after_seconds` is set for the limits that lift by themselves."""

    def __init__(self, reason: BlockReason, retry_after_seconds: int | None = None):
        super().__init__(reason.value)
        self.reason, self.retry_after_seconds = reason, retry_after_seconds

    @property
    def text(self) -> str:
        return BLOCK_TEXTS[self.reason]


class NotLiftable(Exception):
    """A block by the site's countries or by the ownership rule: the settings or the proof lift it."""

    text = N_("This block follows from the site's settings: change the allowed countries or prove the ownership.")

    def __init__(self, reason: BlockReason):
        super().__init__(reason.value)
        self.reason = reason


class Failure(StrEnum):
    """Why a code was not accepted."""

    WRONG = "wrong"
    EXPIRED = "expired"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    ALREADY_USED = "already_used"
    NO_ACTIVE_CODE = "no_active_code"


FAILURE_TEXTS = {
    Failure.WRONG: N_("The code is wrong."),
    Failure.EXPIRED: N_("The code has expired. Request a new one."),
    Failure.TOO_MANY_ATTEMPTS: N_("Too many wrong codes were entered. Request a new code later."),
    Failure.ALREADY_USED: N_("The code was already used."),
    Failure.NO_ACTIVE_CODE: N_("No code was requested for this number."),
}


class VerificationFailed(Exception):
    """The code was not accepted; `attempts_left` after a wrong one."""

    def __init__(self, reason: Failure, attempts_left: int | None = None):
        super().__init__(reason.value)
        self.reason, self.attempts_left = reason, attempts_left

    @property
    def text(self) -> str:
        return FAILURE_TEXTS[self.reason]
