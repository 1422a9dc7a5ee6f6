"""Mobile-number verification by a 6-digit SMS code.

A code lives 10 minutes and is stored as a keyed hash; every code sent is a challenge of its
own and ends the one before. Codes to one number are 60 seconds apart (so a mistyped number
can be corrected at once); a user gets 10 codes a day, whatever the numbers, and 5 wrong
checks an hour: a new code, even for another number, keeps the failure count. After the
fifth failure nothing is sent or checked for an hour. The SMS is worded by the caller, in
the user's language only.
"""

import logging
import re
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

import phonenumbers
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from portal import db, formats, outbox
from portal.accounts import tokens
from portal.accounts.errors import (
    ChallengeLocked,
    CodeExpired,
    NoChallenge,
    PhoneInvalid,
    PhoneTaken,
    ResendTooSoon,
    TooManyCodes,
    WrongCode,
)
from portal.accounts.models import PHONE_TAKEN, PhoneChallenge, User
from portal.ledger import service as ledger
from portal.outbox import OutboxKind

log = logging.getLogger("portal.auth")

CODE_TTL = timedelta(minutes=10)
RESEND_COOLDOWN = timedelta(seconds=60)  # between two codes to the same number
MAX_FAILURES = 5
MAX_SENDS = 10  # codes a user is sent within SENDS_COUNTED_FOR, whatever the numbers
SENDS_COUNTED_FOR = timedelta(days=1)
LOCKED_FOR = timedelta(hours=1)
SENDER = "Chotto"


def normalise_phone(raw: str, *, region: str = "JP") -> str:
    """E.164 for a valid mobile number; national Japanese numbers are accepted as typed."""
    try:
        number = phonenumbers.parse(raw.strip(), region)
    except phonenumbers.NumberParseException:
        raise PhoneInvalid() from None
    if raw.strip().startswith("+") and not _digits_match(raw, number):
        raise PhoneInvalid()  # "+81 0 80…": a trunk 0 has no place after the country code
    kind = phonenumbers.number_type(number)
    mobile = kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)
    if not phonenumbers.is_valid_number(number) or not mobile:
        raise PhoneInvalid()
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _digits_match(raw: str, number: phonenumbers.PhoneNumber) -> bool:
    zeros = "0" * (number.number_of_leading_zeros or 1) if number.italian_leading_zero else ""
    return re.sub(r"\D", "", raw) == f"{number.country_code}{zeros}{number.national_number}"


def _code_hash(secret: str, challenge_key: str, code: str) -> str:
    return tokens.keyed_hash(secret, "phone", challenge_key, code)


def _open_challenge(session: Session, user_id: int) -> PhoneChallenge | None:
    query = select(PhoneChallenge).where(PhoneChallenge.user_id == user_id).order_by(PhoneChallenge.id.desc())
    return session.scalars(query.execution_options(populate_existing=True)).first()


def _lock_user(session: Session, user_id: int) -> None:
    """Serialise one user's sends and checks (PostgreSQL row lock; SQLite: BEGIN IMMEDIATE)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(User.id).where(User.id == user_id).with_for_update())


def _failures_last_hour(session: Session, user_id: int, now: datetime) -> int:
    """Wrong codes typed by this user in the last hour, whatever the number: switching
    numbers does not reset them."""
    failures = session.scalar(select(func.coalesce(func.sum(PhoneChallenge.failures), 0)).where(
        PhoneChallenge.user_id == user_id, PhoneChallenge.created_at > now - LOCKED_FOR))
    return int(failures)


def _check_daily_limit(session: Session, user_id: int, now: datetime) -> None:
    """TooManyCodes once the user was sent MAX_SENDS codes in a day, with the wait until the
    oldest of them stops counting."""
    counted = select(PhoneChallenge.created_at, PhoneChallenge.sends).where(
        PhoneChallenge.user_id == user_id, PhoneChallenge.created_at > now - SENDS_COUNTED_FOR)
    rows = session.execute(counted.order_by(PhoneChallenge.created_at)).all()
    if sum(sends for _, sends in rows) >= MAX_SENDS:
        raise TooManyCodes(int((rows[0].created_at + SENDS_COUNTED_FOR - now).total_seconds()) + 1)


def _check_cooldown(session: Session, user_id: int, e164: str, now: datetime) -> None:
    """ResendTooSoon while the last code to this number is under RESEND_COOLDOWN old; a code
    to another number (a mistyped one) does not hold a corrected number back."""
    last = session.scalar(select(func.max(PhoneChallenge.sent_at)).where(
        PhoneChallenge.user_id == user_id, PhoneChallenge.phone_e164 == e164))
    wait = last + RESEND_COOLDOWN - now if last is not None else timedelta(0)
    if wait > timedelta(0):
        raise ResendTooSoon(int(wait.total_seconds()) + 1)


def send_code(*, session: Session, user_id: int, account_id: int | None, phone: str, secret: str,
              wording: Callable[[str, str], str], now: datetime) -> PhoneChallenge:
    """Send a code to `phone` (raw input) as a new challenge that ends the user's open one.
    `account_id` is the test inbox the code is shown in (None: in no test inbox);
    `wording(code, language)` is the SMS text in the user's language."""
    e164 = normalise_phone(phone)
    with db.write(session):
        _lock_user(session, user_id)
        if _verified_elsewhere(session, e164, user_id):
            raise PhoneTaken()
        if _failures_last_hour(session, user_id, now) >= MAX_FAILURES:
            raise ChallengeLocked()
        _check_daily_limit(session, user_id, now)
        _check_cooldown(session, user_id, e164, now)
        previous = _open_challenge(session, user_id)
        if previous is not None and previous.closed_at is None:
            previous.closed_at = now
        code = f"{secrets.randbelow(10**6):06d}"
        challenge = PhoneChallenge(
            user_id=user_id, phone_e164=e164, code_hash=_code_hash(secret, f"{user_id}:{e164}", code), created_at=now,
            sent_at=now, expires_at=now + CODE_TTL, sends=1,
        )
        session.add(challenge)
        language = session.get(User, user_id).language
        _queue_sms(session, account_id=account_id, e164=e164, body=wording(code, language), now=now)
    log.info("phone code sent user_id=%s challenge_id=%s", user_id, challenge.id)
    return challenge


def _verified_elsewhere(session: Session, e164: str, user_id: int) -> bool:
    query = select(User.id).where(User.phone_e164 == e164, User.phone_verified_at.is_not(None), User.id != user_id)
    return session.scalars(query).first() is not None


def _queue_sms(session: Session, *, account_id: int | None, e164: str, body: str, now: datetime) -> None:
    payload = {"account_id": account_id, "recipient": e164, "sender": SENDER, "body": body}
    outbox.enqueue(session, kind=OutboxKind.SMS, payload=payload, now=now)


def check_code(
    *, session: Session, user_id: int, account_id: int | None, code: str, secret: str, trial_amount: int, now: datetime
) -> User:
    """Verify the user's number with the code they typed. With the e-mail already verified,
    the account in use gets its trial credit (once per account, once per number). A wrong code
    is counted in the unit of work and refused after it has committed, so the count outlives
    the refusal (which is why this must not run inside a caller's unit)."""
    db.outside_units(session)
    try:
        with db.write(session):
            challenge, failures = _checkable_challenge(session, user_id, now)
            expected = _code_hash(secret, f"{user_id}:{challenge.phone_e164}", code.strip())
            right = tokens.same(expected, challenge.code_hash)
            if right:
                user = _verify(session, challenge, account_id=account_id, trial_amount=trial_amount, now=now)
            else:
                failures = _count_failure(challenge, failures + 1, now)
    except IntegrityError as error:
        if db.violated_constraint(error) != PHONE_TAKEN:
            raise
        raise PhoneTaken() from None  # another account verified the same number at the same moment
    if right:
        log.info("phone verified user_id=%s", user_id)
        return user
    log.info("phone code wrong user_id=%s failures_last_hour=%s", user_id, failures)
    if failures >= MAX_FAILURES:
        raise ChallengeLocked()
    raise WrongCode(MAX_FAILURES - failures)


def _checkable_challenge(session: Session, user_id: int, now: datetime) -> tuple[PhoneChallenge, int]:
    """The user's open challenge, locked, and their wrong codes in the last hour."""
    _lock_user(session, user_id)
    challenge = _open_challenge(session, user_id)
    if challenge is None or challenge.verified_at is not None:
        raise NoChallenge()
    failures = _failures_last_hour(session, user_id, now)
    if failures >= MAX_FAILURES:
        raise ChallengeLocked()
    if challenge.closed_at is not None:
        raise NoChallenge()
    if now >= challenge.expires_at:
        raise CodeExpired()
    return challenge, failures


def _count_failure(challenge: PhoneChallenge, failures: int, now: datetime) -> int:
    challenge.failures += 1
    if failures >= MAX_FAILURES:
        challenge.closed_at = now
    return failures


def _verify(session: Session, challenge: PhoneChallenge, *, account_id: int | None, trial_amount: int,
            now: datetime) -> User:
    user = session.get(User, challenge.user_id)
    if _verified_elsewhere(session, challenge.phone_e164, user.id):
        raise PhoneTaken()
    user.phone_e164 = challenge.phone_e164
    user.phone_verified_at = now
    challenge.verified_at = now
    challenge.closed_at = now
    session.flush()
    if account_id is not None and user.email_verified_at is not None:
        ledger.grant_trial_in(session, account_id=account_id, phone_e164=user.phone_e164, amount=trial_amount, now=now)
    return user


def display_number(e164: str) -> str:
    """A number as people write it: 090-1234-5678 for a Japanese one, +44 7911 123456 otherwise
    (the one formatter pages and mail use too, as the |phone filter)."""
    return formats.phone_number(e164)


def latest_phone(*, session: Session, user_id: int) -> str | None:
    """The number of the user's open challenge, for "send the code again"."""
    with db.read(session):
        challenge = _open_challenge(session, user_id)
    if challenge is None or challenge.closed_at is not None:
        return None
    return challenge.phone_e164
