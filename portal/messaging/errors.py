"""Every refusal of the messaging services, by the rule it breaks. The services raise these and
never answer HTTP: the API maps each to its status code and Xoxzo's error shape.

Field errors name the field as the client spelled it ("recipient", "callbackurl",
"Idempotency-Key"), since the client must know which value to correct; their reasons are
the validation rules' own words."""

from enum import StrEnum

from portal.ledger.rules import InsufficientCredit

__all__ = ["InvalidField", "DestinationNotAllowed", "DestinationNotPriced", "InvalidFields", "ScopeMissing",
           "SpendCap", "SpendCapReached", "KeyReused", "InsufficientCredit"]


class InvalidField(ValueError):
    """A field's value is wrong: `field` names it and `reasons` say why."""

    def __init__(self, field: str, reason: str, *more: str):
        super().__init__(reason)
        self.field, self.reason, self.reasons = field, reason, [reason, *more]


class DestinationNotAllowed(InvalidField):
    """The recipient's country is not enabled for the account, or a live send of an account
    that has not bought yet goes to a number that is not one of its verified ones."""


class DestinationNotPriced(InvalidField):
    """Nothing is sold to the recipient's country: the price table has no price for it."""


class InvalidFields(ValueError):
    """Every invalid field of one request, each with its reasons, in the order they were read."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__(", ".join(errors))
        self.errors = errors


class ScopeMissing(Exception):
    """The credential was not given the scope (sms, voice) this request needs."""

    def __init__(self, scope: str):
        super().__init__(scope)
        self.scope = scope


class SpendCap(StrEnum):
    ACCOUNT_DAILY = "account daily"  # set for every account by the operator (API_DAILY_SPEND_CAP_YEN)
    CREDENTIAL_MONTHLY = "credential monthly"  # set by the customer on a credential


class SpendCapReached(Exception):
    """The spending would exceed `cap`, of `limit` milli-yen; nothing was spent."""

    def __init__(self, cap: SpendCap, limit: int):
        super().__init__(cap, limit)
        self.cap, self.limit = cap, limit


class KeyReused(Exception):
    """The Idempotency-Key was used before with a different request."""
