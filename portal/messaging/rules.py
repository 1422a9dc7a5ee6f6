"""Pure rules of the customer API: phone numbers, sender ids, tags, the `sent_date` filter,
callback URLs, and what a call costs. No database, no Flask."""

import math
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from urllib.parse import urlsplit

import phonenumbers

from portal.clock import JST
from portal.messaging.errors import InvalidField

HISTORY_DAYS = 90
CALL_MINIMUM_HOLD = 50_000  # milli-yen: a call needs at least ¥50 available
MAX_TAGS, MAX_TAG_LENGTH = 10, 50
SENDER = re.compile(r"[A-Za-z0-9]{1,10}|[0-9]{1,15}")  # ASCII only: \d and isalnum() take any script's digits
CALLER = re.compile(r"\+?[0-9]{6,15}")
TTS_LANGUAGES = ("ja", "en", "zh", "ko", "es", "fr", "de", "it", "pt", "ru")
TTS_MESSAGE_MAX_LENGTH = 1000  # characters: about two minutes read out


@dataclass(frozen=True)
class Number:
    e164: str
    country: str  # ISO 3166 region, e.g. "JP"


def phone_number(field: str, raw: str) -> Number:
    """A valid number in E.164 ("+819012345678"), or a Japanese national one ("090-1234-5678").
    An international number must be written exactly: "+8109012345678" (the trunk 0 kept
    after +81) is refused rather than silently corrected."""
    text = (raw or "").strip()
    if not text:
        raise InvalidField(field, "This field is required.")
    digits = re.sub(r"[\s\-().]", "", text)
    if not re.fullmatch(r"\+?\d{4,16}", digits):
        raise InvalidField(field, "Enter a phone number in E.164 form, such as +819012345678.")
    read = _read_number(digits)
    if read is None:
        raise InvalidField(field, "Enter a phone number in E.164 form, such as +819012345678.")
    e164, region, valid = read
    if not valid or (digits.startswith("+") and digits != e164):
        raise InvalidField(field, f"{text} is not a valid phone number.")
    return Number(e164, region)


@lru_cache(maxsize=4096)
def _read_number(digits: str) -> tuple[str, str, bool] | None:
    """What libphonenumber reads in `digits` (E.164 form, region, validity), None if nothing:
    a pure function of the digits, and a tenth of a millisecond, so each process keeps the
    numbers it read last (a send's recipient is often the one before)."""
    try:
        parsed = phonenumbers.parse(digits, None if digits.startswith("+") else "JP")
    except phonenumbers.NumberParseException:
        return None
    return (phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164),
            phonenumbers.region_code_for_number(parsed), phonenumbers.is_valid_number(parsed))


def caller_number(raw: str) -> str:
    """A voice caller as Xoxzo takes it: international digits with or without "+"
    ("814512345678", "+814512345678"), or a Japanese national number ("03-1234-5678"). It is
    the number shown to the person called, so it must be a possible number for its country,
    not necessarily one in service."""
    text = (raw or "").strip()
    if not text:
        raise InvalidField("caller", "This field is required.")
    digits = re.sub(r"[\s\-().]", "", text)
    if not CALLER.fullmatch(digits):
        raise InvalidField("caller", "Enter a phone number in E.164 form, such as +819012345678.")
    national = digits.startswith("0")
    international = "+" + digits.removeprefix("+")
    try:
        parsed = phonenumbers.parse(digits if national else international, "JP")
    except phonenumbers.NumberParseException:
        raise InvalidField("caller", f"{text} is not a valid phone number.") from None
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if not phonenumbers.is_possible_number(parsed) or (not national and e164 != international):
        raise InvalidField("caller", f"{text} is not a valid phone number.")
    return e164


def sender_id(raw: str) -> str:
    text = (raw or "").strip().removeprefix("+")
    if not text:
        raise InvalidField("sender", "This field is required.")
    if not SENDER.fullmatch(text):
        raise InvalidField("sender", "Use up to 10 letters and digits, or up to 15 digits.")
    return text


def tts_message(raw: str) -> str:
    text = (raw or "").strip()
    if len(text) > TTS_MESSAGE_MAX_LENGTH:
        raise InvalidField("tts_message", f"Use at most {TTS_MESSAGE_MAX_LENGTH:,} characters.")
    return text


def tts_language(raw: str) -> str:
    language = (raw or "").strip()
    if language not in TTS_LANGUAGES:
        raise InvalidField("tts_lang", "Use a language code such as ja or en.")
    return language


def tags_of(raw) -> list[str]:
    if raw in (None, ""):
        return []
    items = raw if isinstance(raw, list) else str(raw).split(",")
    tags = [str(item).strip() for item in items if str(item).strip()]
    if any("," in tag for tag in tags):
        raise InvalidField("tags", "A tag cannot contain a comma.")
    if len(tags) > MAX_TAGS or any(len(tag) > MAX_TAG_LENGTH for tag in tags):
        raise InvalidField("tags", f"Use at most {MAX_TAGS} tags of at most {MAX_TAG_LENGTH} characters.")
    return tags


def idempotency_key(raw: str | None) -> str | None:
    """The Idempotency-Key header, if the client sent one."""
    if raw is None:
        return None
    key = raw.strip()
    if not key or len(key) > 255:
        raise InvalidField("Idempotency-Key", "Use 1 to 255 characters.")
    return key


def callback_url(raw: str | None) -> str | None:
    text = (raw or "").strip()
    if not text:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(text) > 2000:
        raise InvalidField("callbackurl", "Enter an http:// or https:// address.")
    return text


@dataclass(frozen=True)
class DateFilter:
    operator: str  # ==, >=, >, <=, <
    day: date

    def bounds(self) -> tuple[datetime | None, datetime | None] | None:
        """The moments [start, end) of Japan's calendar days that match, None for a side
        without a bound; None in all when no moment can match (after 9999-12-31, before 0001-01-01)."""
        start = datetime.combine(self.day, time(), tzinfo=JST) if self.day > date.min else None
        end = datetime.combine(self.day + timedelta(days=1), time(), tzinfo=JST) if self.day < date.max else None
        if (self.operator == ">" and end is None) or (self.operator == "<" and start is None):
            return None
        return {"==": (start, end), ">=": (start, None), ">": (end, None), "<": (None, start), "<=": (None, end)}[
            self.operator]


def sent_dates(args, today: date) -> list[DateFilter]:
    """Every `sent_date` parameter among `args` (name, value pairs), each a filter that must
    hold: `sent_date=2026-10-31`, `sent_date=>=2026-10-31` (also `<`, `<=`, `>`), or the
    operator moved into the parameter name by clients that build `?sent_date>=2026-10-31`. A
    date more than 90 days back is refused (Xoxzo's rule). All bad ones are reported at once."""
    filters, problems = [], []
    for key, value in args:
        if key.startswith("sent_date"):
            try:
                filters.append(_sent_date(key[len("sent_date"):], value, today))
            except InvalidField as invalid:
                problems.append(invalid.reason)
    if problems:
        raise InvalidField("sent_date", *problems)
    return filters


def _sent_date(operator: str, value: str, today: date) -> DateFilter:
    """`operator` is "", or an operator the client put in the name ("sent_date>=…")."""
    if value == "":
        text = operator
    elif operator in ("", ">=", "<=", "=") or operator.endswith("="):
        text = operator + value  # "sent_date=>=2026-10-31" or an encoded "sent_date%3E%3D=2026-10-31"
    else:
        text = operator + "=" + value  # "sent_date>=2026-10-31" read as name "sent_date>", value "2026-10-31"
    match = re.fullmatch(r"\s*(>=|<=|>|<|=)?\s*([0-9]{4}-[0-9]{2}-[0-9]{2})\s*", text)
    if not match:
        raise InvalidField("sent_date",
                           f"{text.strip()} is not a date such as 2026-10-31, optionally after >=, >, <= or <.")
    operator = {"=": "==", None: "=="}.get(match.group(1), match.group(1))
    try:
        day = date.fromisoformat(match.group(2))
    except ValueError:
        raise InvalidField("sent_date", f"{match.group(2)} is not a date.") from None
    if day < today - timedelta(days=HISTORY_DAYS):
        raise InvalidField("sent_date", f"{day.isoformat()} is more than {HISTORY_DAYS} days ago: only the last "
                                   f"{HISTORY_DAYS} days can be listed.")
    return DateFilter(operator, day)


def call_minutes(duration_seconds: int) -> int:
    """Voice is priced per started minute; an unanswered call (0 s) costs nothing."""
    return math.ceil(max(duration_seconds, 0) / 60)


def call_hold(unit_price: int) -> int:
    """The credit set aside when a call starts: at least ¥50 (and at least one minute)."""
    return max(CALL_MINIMUM_HOLD, unit_price)
