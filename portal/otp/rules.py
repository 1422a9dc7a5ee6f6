"""Pure rules of OTP sites: domains, settings and templates, codes and their keyed hashes,
lifetime, attempts and cooldown, and the fraud guards. No database, no Flask: `now` is passed in."""

import hashlib
import hmac
import math
import re
import secrets
import string
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from urllib.parse import urlsplit

from portal.clock import JST
from portal.messaging import rules as messaging_rules
from portal.messaging import segments
from portal.messaging.errors import InvalidField, InvalidFields
from portal.otp.errors import N_, Failure
from portal.otp.models import CodeStatus, Fallback, TemplateLanguage

DEFAULT_TEMPLATES = {
    TemplateLanguage.JA: "{site}の認証コードは{code}です。{minutes}分以内に入力してください。",
    TemplateLanguage.EN: "Your {site} code is {code}. It expires in {minutes} minutes.",
}
PLACEHOLDERS = ("code", "site", "minutes")
NUMBER_WINDOW = timedelta(minutes=10)  # the per-number limit counts sends in this window
IP_WINDOW = timedelta(hours=1)
PREFIX_WINDOW, PREFIX_LIMIT = timedelta(hours=1), 20
PREFIX_DIGITS = 4  # a prefix is the number without its last four digits
PAUSE_WINDOW, PAUSE_SAMPLE, PAUSE_RATE_PERCENT = timedelta(hours=24), 50, 20
TALLY_HOUR = timedelta(hours=1)
TALLY_MARGIN = timedelta(hours=1)  # for a worker whose clock runs ahead of the web's
DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}|localhost")
DISPLAY_NAME_LENGTH = 40


# -- sites and their settings --------------------------------------------------------------------


def domain_of(raw: str | None) -> str:
    """The domain of a URL or a bare domain: "https://Example.com/login" → "example.com"."""
    text = (raw or "").strip()
    if not text:
        raise InvalidField("website", N_("This field is required."))
    try:
        host = urlsplit(text if "//" in text else f"//{text}").hostname or ""
        host = host.encode("idna").decode("ascii").lower().rstrip(".")
    except ValueError:  # "http://[" and the like; UnicodeError (a label IDNA refuses) is a ValueError too
        host = ""
    if not DOMAIN.fullmatch(host):
        raise InvalidField("website", N_("Enter the address of a website, such as https://example.com."))
    return host


@dataclass(frozen=True)
class Settings:
    """A site's settings as the customer chose them (validated by `checked`)."""

    display_name: str
    template_language: TemplateLanguage = TemplateLanguage.JA
    template: str = DEFAULT_TEMPLATES[TemplateLanguage.JA]
    code_length: int = 6
    lifetime_minutes: int = 5
    max_attempts: int = 5
    resend_cooldown_seconds: int = 30
    fallback: Fallback = Fallback.OFF
    fallback_seconds: int = 60
    fallback_language: TemplateLanguage = TemplateLanguage.JA
    allowed_countries: tuple[str, ...] = ("JP",)
    per_number_limit: int = 5
    per_ip_limit: int = 10
    callback_url: str | None = None


RANGES = {  # field: (lowest, highest)
    "code_length": (4, 8), "lifetime_minutes": (1, 30), "max_attempts": (1, 10), "resend_cooldown_seconds": (0, 600),
    "fallback_seconds": (10, 600), "per_number_limit": (1, 5), "per_ip_limit": (1, 1000),
}


def default_settings(display_name: str, language: TemplateLanguage = TemplateLanguage.JA) -> Settings:
    return Settings(display_name=display_name[:DISPLAY_NAME_LENGTH], template_language=language,
                    template=DEFAULT_TEMPLATES[language])


def checked(settings: Settings) -> Settings:
    """The settings, or InvalidFields naming every value out of its range (the template too)."""
    errors: dict[str, list[str]] = {}
    for field in fields(settings):
        if field.name in RANGES:
            low, high = RANGES[field.name]
            value = getattr(settings, field.name)
            if not isinstance(value, int) or not low <= value <= high:
                errors[field.name] = [N_("This value is outside the allowed range.")]
    name = settings.display_name.strip()
    if not name or len(name) > DISPLAY_NAME_LENGTH:
        errors["display_name"] = [N_("Use 1 to 40 characters.")]
    if any(not re.fullmatch(r"[A-Z]{2}", country) for country in settings.allowed_countries) \
            or not settings.allowed_countries:
        errors["allowed_countries"] = [N_("Choose at least one country.")]
    if settings.fallback != Fallback.OFF and "fallback_seconds" not in errors and "lifetime_minutes" not in errors \
            and settings.fallback_seconds >= settings.lifetime_minutes * 60:
        errors["fallback_seconds"] = [N_("The call must come before the code expires.")]
    try:
        messaging_rules.callback_url(settings.callback_url)
    except InvalidField as invalid:
        errors["callback_url"] = invalid.reasons
    try:  # with the longest code and lifetime where those are wrong themselves
        template_parts(settings.template, site=name,
                       code_length=settings.code_length if "code_length" not in errors else RANGES["code_length"][1],
                       minutes=settings.lifetime_minutes if "lifetime_minutes" not in errors else 30)
    except InvalidField as invalid:
        errors["template"] = invalid.reasons
    if errors:
        raise InvalidFields(errors)
    return settings


def template_parts(template: str, *, site: str, code_length: int, minutes: int) -> segments.Split:
    """How the template splits once filled in: it must name {code}, use no other placeholder
    than {code}, {site} and {minutes}, and fit one SMS segment."""
    try:
        found = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
                 if name is not None]
        names = [name for name, _, _ in found]
        bad = [name for name, spec, conversion in found if name not in PLACEHOLDERS or spec or conversion]
    except ValueError:
        bad = ["{"]
    if bad:
        raise InvalidField("template", N_("Use only the placeholders {code}, {site} and {minutes}."))
    if "code" not in names:
        raise InvalidField("template", N_("The template must contain {code}."))
    try:
        split = segments.split(render(template, code="0" * code_length, site=site, minutes=minutes))
    except segments.TooLong:
        split = None
    if split is None or split.parts > 1:
        raise InvalidField("template", N_("The message must fit in one SMS segment (70 characters in Japanese, "
                                          "160 in English)."))
    return split


def spoken(code: str, *, site: str, language: TemplateLanguage) -> str:
    """What a fallback call reads out: the code digit by digit, twice."""
    if language == TemplateLanguage.JA:
        digits = "、".join(code)
        return f"{site}の認証コードをお知らせします。{digits}。繰り返します。{digits}。"
    digits = ", ".join(code)
    return f"Your {site} code is {digits}. Again: {digits}."


MASK = "*"
SPOKEN_DIGITS = re.compile(r"\d(?:(?:、|, )\d)+")


def masked(code: str) -> str:
    """A code as it is kept once sent: only its length."""
    return MASK * len(code)


def masked_spoken(text: str) -> str:
    """A call's text with the digits it read out hidden."""
    return SPOKEN_DIGITS.sub(lambda found: re.sub(r"\d", MASK, found.group(0)), text)


def render(template: str, *, code: str, site: str, minutes: int) -> str:
    return template.replace("{code}", code).replace("{site}", site).replace("{minutes}", str(minutes))


# -- codes ------------------------------------------------------------------------------------------


def new_code(length: int) -> str:
    """`length` decimal digits from the operating system's CSPRNG, leading zeros kept."""
    return f"{secrets.randbelow(10 ** length):0{length}d}"


def code_hash(secret: bytes, msgid: str, code: str) -> str:
    """The keyed hash stored in place of a code, bound to its request (the msgid)."""
    return hmac.new(secret, f"otp:{msgid}:{code}".encode(), hashlib.sha256).hexdigest()


def matches(secret: bytes, msgid: str, typed: str, stored_hash: str) -> bool:
    """Compared in constant time, whatever was typed."""
    return hmac.compare_digest(code_hash(secret, msgid, typed.strip()), stored_hash)


def expires_at(now: datetime, lifetime_minutes: int) -> datetime:
    return now + timedelta(minutes=lifetime_minutes)


def is_expired(expiry: datetime, now: datetime) -> bool:
    return now >= expiry


@dataclass(frozen=True)
class CodeState:
    """What `refusal` needs to know of a stored code."""

    status: CodeStatus
    failures: int
    max_attempts: int
    expires_at: datetime


def refusal(code: CodeState | None, now: datetime) -> Failure | None:
    """Why no code typed now can be accepted for this code, or None while it can be checked."""
    if code is None or code.status == CodeStatus.REPLACED:
        return Failure.NO_ACTIVE_CODE
    if code.status == CodeStatus.VERIFIED:
        return Failure.ALREADY_USED
    if code.status == CodeStatus.LOCKED or code.failures >= code.max_attempts:
        return Failure.TOO_MANY_ATTEMPTS
    if is_expired(code.expires_at, now):
        return Failure.EXPIRED
    return None


def carried_failures(previous: CodeState | None, previous_sent_at: datetime | None, now: datetime) -> int:
    """A new code takes over the wrong attempts of the code it replaces (sent in the last 10
    minutes), so asking again never buys more guesses; a verified code leaves nothing."""
    if previous is None or previous_sent_at is None or previous.status == CodeStatus.VERIFIED:
        return 0
    return previous.failures if now - previous_sent_at < NUMBER_WINDOW else 0


def cooldown_left(last_sent_at: datetime | None, cooldown_seconds: int, now: datetime) -> int:
    """Whole seconds until the number may get another code (0: now)."""
    if last_sent_at is None:
        return 0
    return max(0, math.ceil((last_sent_at + timedelta(seconds=cooldown_seconds) - now).total_seconds()))


# -- fraud guards -----------------------------------------------------------------------------------


def prefix_of(e164: str) -> str:
    return e164[:-PREFIX_DIGITS]


def over_limit(sent_at: list[datetime], *, limit: int, window: timedelta, now: datetime) -> int | None:
    """None if one more send stays within `limit` sends per `window`; else the whole seconds
    until it does (when the oldest send that counts leaves the window)."""
    recent = sorted(moment for moment in sent_at if now - moment < window)
    if len(recent) < limit:
        return None
    frees_at = recent[len(recent) - limit] + window
    return max(1, math.ceil((frees_at - now).total_seconds()))


def should_pause(decided: int, verified: int) -> bool:
    """A site is paused when fewer than 20% of at least 50 decided codes (verified, or past
    their lifetime, or locked) were verified."""
    return decided >= PAUSE_SAMPLE and verified * 100 < PAUSE_RATE_PERCENT * decided


# -- logs and statistics ----------------------------------------------------------------------------


def outcome(status: CodeStatus, expiry: datetime, message_status: str | None, now: datetime) -> str:
    """A request's status in the site's log: verified, failed (the SMS, or every attempt used
    up), replaced, expired, delivered or sent."""
    if status == CodeStatus.VERIFIED:
        return "verified"
    if message_status == "FAIL" or status == CodeStatus.LOCKED:
        return "failed"
    if status == CodeStatus.REPLACED:
        return "replaced"
    if is_expired(expiry, now):
        return "expired"
    return "delivered" if message_status == "DELIVERED" else "sent"


@dataclass(frozen=True)
class Sent:
    """One code as the statistics count it."""

    at: datetime
    outcome: str
    delivered: bool
    fallback_called: bool
    cost: int  # milli-yen: the SMS and the fallback call


@dataclass
class Day:
    day: date  # in Japan time
    requests: int = 0  # codes sent
    blocked: int = 0
    delivered: int = 0
    verified: int = 0
    fallback_calls: int = 0
    cost: int = 0  # milli-yen

    @property
    def completion_percent(self) -> int | None:
        """Verified codes per code sent, rounded down; None on a day without any."""
        return self.verified * 100 // self.requests if self.requests else None


def by_day(sent: list[Sent], blocked_at: list[datetime]) -> list[Day]:
    """Each Japan day with any request, newest first."""
    days: dict[date, Day] = {}
    for code in sent:
        day = days.setdefault(code.at.astimezone(JST).date(), Day(code.at.astimezone(JST).date()))
        day.requests += 1
        day.delivered += code.delivered
        day.verified += code.outcome == "verified"
        day.fallback_calls += code.fallback_called
        day.cost += code.cost
    for moment in blocked_at:
        local = moment.astimezone(JST).date()
        days.setdefault(local, Day(local)).blocked += 1
    return sorted(days.values(), key=lambda day: day.day, reverse=True)


def tallies_purge_before(now: datetime) -> datetime:
    """The completion guard reads a site's tallies from the UTC hour its window (PAUSE_WINDOW,
    or less after a resume) starts in: the tally of hour H is read until H + 1 h + PAUSE_WINDOW.
    The retention pass deletes the tallies of hours before this instant, an hour (TALLY_MARGIN)
    after the last request could read them: the tally of hour H goes at H + 26 h and a second."""
    return now - PAUSE_WINDOW - TALLY_HOUR - TALLY_MARGIN
