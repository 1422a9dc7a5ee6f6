"""The alerts' pure rules: thresholds crossed by a balance change, which warnings are due,
unsubscribe tokens. Amounts in milli-yen unless named in yen."""

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

from portal.alerts.models import NoticeKind
from portal.ledger.forecast import RUNS_OUT, Forecast
from portal.ledger.rules import MILLI_YEN

def N_(text: str) -> str:
    """Marks `text` for the catalog; the page translates it where it is shown."""
    return text


MAX_THRESHOLDS = 3
MAX_THRESHOLD_YEN = 1_000_000
EXPIRY_WARNINGS = ((NoticeKind.EXPIRY_1D, timedelta(days=1)), (NoticeKind.EXPIRY_7D, timedelta(days=7)))
RUN_OUT_DAYS = range(1, 91)


@dataclass(frozen=True)
class Threshold:
    amount: int
    armed: bool


def crossed(before: int, after: int, thresholds: Sequence[Threshold]) -> tuple[list[int], list[int]]:
    """The amounts an available balance going from `before` to `after` crosses downwards
    (armed, at or below `before`, above `after`: one notice each crossing) and the ones it
    re-arms (not armed, at or below `after`). The ledger applies the same rule in SQL
    (portal.ledger.writes._thresholds_moved); the tests hold the two together."""
    down = sorted(t.amount for t in thresholds if t.armed and after < t.amount <= before)
    rearmed = sorted(t.amount for t in thresholds if not t.armed and t.amount <= after)
    return down, rearmed


def armed_at_setup(balance: int, amount: int) -> bool:
    """A threshold set while the balance is already below it is not armed: no notice for that."""
    return balance >= amount


def threshold_errors(yen: Sequence[int]) -> list[str]:
    """The English reasons (marked N_, translated by the page) a list of thresholds is refused."""
    errors = []
    if len(yen) > MAX_THRESHOLDS:
        errors.append(N_("At most three thresholds."))
    if any(not 1 <= amount <= MAX_THRESHOLD_YEN for amount in yen):
        errors.append(N_("Each threshold is a whole number of yen from 1 to 1,000,000."))
    if len(set(yen)) != len(yen):
        errors.append(N_("Each threshold only once."))
    return errors


def to_milli(yen: int) -> int:
    return yen * MILLI_YEN


def expiry_warning_due(expires_at: datetime, now: datetime) -> NoticeKind | None:
    """The expiry warning a lot with credit left is due for now: 1 day before, else 7 days."""
    if expires_at <= now:
        return None
    for kind, ahead in EXPIRY_WARNINGS:
        if expires_at - now <= ahead:
            return kind
    return None


def run_out_due(forecast: Forecast, days: int | None, now: datetime) -> bool:
    """Credit runs out (not expires) at the recent pace within `days` days."""
    return (days is not None and forecast.spending and forecast.ending == RUNS_OUT
            and forecast.lasts_until is not None and forecast.lasts_until - now <= timedelta(days=days))


def unsubscribe_token(secret: str, account_id: int, recipient: str, topic: str) -> str:
    message = f"{account_id}:{topic}:{recipient}".encode()
    mac = hmac.new(secret.encode(), b"alerts-unsubscribe:" + message, hashlib.sha256).hexdigest()[:32]
    return f"{account_id}.{topic}.{mac}.{recipient.encode().hex()}"


def read_unsubscribe_token(secret: str, token: str) -> tuple[int, str, str] | None:
    """(account_id, recipient, topic) when the token is genuine, else None."""
    try:
        account, topic, mac, recipient_hex = token.split(".", 3)
        account_id, recipient = int(account), bytes.fromhex(recipient_hex).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    if not hmac.compare_digest(unsubscribe_token(secret, account_id, recipient, topic), token):
        return None
    return account_id, recipient, topic


# -- what went wrong, in words for the pages ------------------------------------------------------

NO_CREDIT = "insufficient credit"  # how last_error begins when the account could not pay for an alert SMS
NOT_SENDABLE = "destination refused"  # … when the account may not send to the alert's number (any more)
CARRIER_FAILED = N_("The carrier could not deliver the SMS; its price was given back.")
_WEBHOOK_STATUS = re.compile(r"webhook answered (\d{3})")


def readable_error(channel: str, last_error: str | None) -> tuple[str, dict] | None:
    """What the history page says of a delivery's last error (an English text marked for the
    catalog, and its values), from the technical text the worker kept (an exception's repr,
    or a reason this module's constants begin): the technical text stays for the operators."""
    if not last_error:
        return None
    if last_error.startswith(NO_CREDIT):
        return N_("There was not enough credit to pay for the SMS, so it was not sent. Nothing was charged."), {}
    if last_error.startswith(NOT_SENDABLE):
        return N_("This account may not send an SMS to this number, so it was not sent. Nothing was charged."), {}
    mail = channel == "email"
    if found := _WEBHOOK_STATUS.search(last_error):
        return N_("Your server answered with HTTP status %(status)s instead of 2xx."), {"status": found.group(1)}
    if "no signing secret" in last_error:
        return N_("The webhook has no signing secret: save the webhook again."), {}
    if "CallbackRefused" in last_error:
        return N_("The webhook address cannot be reached from the internet (it does not resolve, or it is a "
                  "private address)."), {}
    if "SMTPServerDisconnected" in last_error or "SMTPConnectError" in last_error:
        return N_("The mail server could not be reached."), {}
    if "SMTPRecipientsRefused" in last_error or "SMTPSenderRefused" in last_error:
        return N_("The mail server refused this address."), {}
    if "SMTP" in last_error:
        return N_("The mail server refused the message."), {}
    if "Timeout" in last_error or "timed out" in last_error:
        return (N_("The mail server did not answer in time.") if mail else N_("Your server did not answer in time.")), {}
    if any(word in last_error for word in ("Connection", "gaierror", "OSError", "unreachable")):
        return (N_("The mail server could not be reached.") if mail else N_("Your server could not be reached.")), {}
    return N_("The delivery failed (an unexpected error: Chotto's operators can see its details)."), {}
