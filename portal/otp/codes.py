"""Requesting a code and verifying it: the fraud guards, one active code per number, the send
through the messaging service's own path, and the atomic count of wrong attempts."""

import ipaddress
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import TypeVar

from sqlalchemy import String, bindparam, case, exists, func, insert, literal_column, or_, select, true, update
from sqlmodel import Session

from portal import db, mail, outbox
from portal.accounts.models import Account, Membership, Role, User
from portal.credentials.service import Principal
from portal.ledger import service as ledger
from portal.messaging import rules as messaging_rules
from portal.messaging import segments, validation
from portal.messaging import service as messaging
from portal.messaging.api_models import Product, UsageProduct
from portal.otp import rules
from portal.otp.errors import (N_, Failure, InvalidField, RequestBlocked, ResendTooSoon, SiteNotAllowed,
                               VerificationFailed)
from portal.otp.events import Event, post_event
from portal.otp.models import BlockReason, Channel, CodeStatus, Fallback, OtpBlocked, OtpCode, OtpCredentialSite, OtpSite, OtpTally
from portal.otp.sites import SITE_FOR, Given, require_scope, site_for, site_with

SENDER = "Chotto"


@dataclass(frozen=True)
class RequestCode:
    """A code request under Xoxzo's field names, unchecked (the service checks every field)."""

    website: Given = None
    phone_number: Given = None
    channel: Given = None  # "sms" (the default) or "voice": a call that reads the code
    ip: Given = None  # the end user's IP address, for the per-IP limit


@dataclass(frozen=True)
class VerifyCode:
    """A code to check: for `website` + `phone_number`, or for the request `otp_id` (or `msgid`)."""

    code: Given = None
    website: Given = None
    phone_number: Given = None
    otp_id: Given = None
    msgid: Given = None


@dataclass(frozen=True)
class Issued:
    """A code sent: `msgid` is the SMS's id and the API's `otp_id`."""

    msgid: str
    expires_at: datetime


@dataclass(frozen=True)
class Verified:
    msgid: str
    phone_number: str
    verified_at: datetime


def request_code(*, session: Session, principal: Principal, request: RequestCode, secret: bytes, caller: str,
                 now: datetime, daily_cap: int | None = None) -> Issued:
    """Send a new code for the site and number, replacing the number's active code (its wrong
    attempts carried over). Refusals: InvalidFields, SiteNotFound, ResendTooSoon,
    RequestBlocked (recorded), InsufficientCredit, SpendCapReached, ScopeMissing."""
    return _request(session, principal, request, secret, caller, now, daily_cap, None, lambda issued: issued)


def request_code_by_api(*, session: Session, principal: Principal, request: RequestCode, secret: bytes, caller: str,
                        now: datetime, idempotency_key: str | None, render: Callable[[Issued], messaging.StoredAnswer],
                        daily_cap: int | None = None) -> messaging.StoredAnswer:
    """request_code with the API's Idempotency-Key: a retry with the same key gets the first
    answer (as the face rendered it) and sends nothing; a refusal keeps nothing under the key."""
    return _request(session, principal, request, secret, caller, now, daily_cap, idempotency_key, render)


Answer = TypeVar("Answer")


def _request(session: Session, principal: Principal, request: RequestCode, secret: bytes, caller: str,
             now: datetime, daily_cap: int | None, key: str | None, render: Callable[[Issued], Answer]) -> Answer:
    require_scope(principal)
    form = validation.Form.of(request)
    domain = form.read("website", rules.domain_of)
    number = form.read("phone_number", partial(messaging_rules.phone_number, "phone_number"))
    channel = form.read("channel", _channel, required=False) or Channel.SMS
    ip = form.read("ip", _ip, required=False)
    key = form.check(messaging_rules.idempotency_key, key)
    form.raise_if_invalid()
    fingerprint = messaging.request_hash(op="otp", credential=principal.credential_id, mode=principal.mode,
                                         website=domain, phone_number=number.e164, channel=channel, ip=ip)
    with db.write(session):
        state, lots = ledger.lock(session, principal.account_id)
        stored = messaging.stored_answer(session, principal.account_id, key, fingerprint, now) if key else None
        if stored is not None:
            return stored
        site, history = _site_and_history(session, principal, domain, number.e164, ip, now)
        blocked = _guard(session, principal, site, number, ip, now, history)
        if blocked is None:
            issued = _issue(session, principal, (state, lots), site, _Asked(domain, number, channel, ip), secret,
                            caller, now, daily_cap, history)
            answer = render(issued)
            if key:
                messaging.keep_answer(session, principal.account_id, key, fingerprint, answer, now)
            return answer
        session.add(OtpBlocked(site_id=site.id, account_id=site.account_id, mode=principal.mode,
                               phone_number=number.e164, ip=ip, reason=blocked.reason, created_at=now))
        post_event(session, site, principal.credential_id, Event.BLOCKED, now, phone_number=number.e164,
                   reason=blocked.reason.value)
    raise blocked


def _channel(raw: str | None) -> Channel:
    text = (raw or "sms").strip().lower()
    if text not in (Channel.SMS, Channel.VOICE):
        raise InvalidField("channel", N_("Use sms or voice."))
    return Channel(text)


def _ip(raw: str | None) -> str | None:
    text = (raw or "").strip()
    if not text:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise InvalidField("ip", N_("Enter the end user's IPv4 or IPv6 address.")) from None


_LATEST = (select(OtpCode).where(OtpCode.site_id == bindparam("site_id"), OtpCode.mode == bindparam("mode"),
                                  OtpCode.phone_number == bindparam("e164"))
           .order_by(OtpCode.id.desc()).limit(1).execution_options(populate_existing=True))


def latest(session: Session, site_id: int, mode: str, e164: str) -> OtpCode | None:
    """The number's newest code for the site (the active one, if any)."""
    return session.scalars(_LATEST, {"site_id": site_id, "mode": mode, "e164": e164}).first()


@dataclass(frozen=True)
class _Previous:
    """What the guards and the new code need of the number's newest code."""

    id: int
    status: CodeStatus
    failures: int
    max_attempts: int
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class _History:
    """What the guards and the new code need of the site's recent history for one request,
    read under the account's lock (nothing changes it meanwhile): with the site itself, the
    number's newest code, when an owner last lifted each kind of block and (live) how many codes
    were decided and verified; and the codes sent in the limits' windows to the number's prefix
    or from the IP (in the same statement on PostgreSQL, in a second one on SQLite)."""

    previous: _Previous | None
    lifted: dict[str, datetime | None]  # by limit (BlockReason value), and "carried"
    sent: list[tuple[datetime, str, str, str | None]]  # created_at, phone_number, prefix, ip
    decided: int = 0
    verified: int = 0


BLOCKS, CODES, TALLIES = OtpBlocked.__table__, OtpCode.__table__, OtpTally.__table__
_LONGEST_WINDOW = max(rules.NUMBER_WINDOW, rules.IP_WINDOW, rules.PREFIX_WINDOW)
_CARRIED = "carried"  # the blocks whose lifting drops the failures a new code takes over
_SITE_ID = OtpSite.__table__.c.id


def _constant(value: str):
    """A constant written into the statement, not a parameter: psycopg prepares the statement
    after a few runs and PostgreSQL may then keep a generic plan, which knows neither a
    parameter's value nor how few codes have it (with a parameter for the status, it counted
    a day of codes by their time instead of the few verified ones by their status). Written
    when the statement is compiled, once: a literal_execute parameter had SQLAlchemy render the
    whole statement's text again on every request. Only names from the models' enums come
    here (letters and underscores: nothing to quote)."""
    if not value.replace("_", "").isalpha():
        raise ValueError(f"not a plain name: {value!r}")
    return literal_column(f"'{value}'", String)


def _lifted(reasons: list[BlockReason], where, name: str):
    return (select(func.max(BLOCKS.c.lifted_at))
            .where(BLOCKS.c.site_id == _SITE_ID, BLOCKS.c.mode == bindparam("mode"),
                   BLOCKS.c.reason.in_([_constant(reason.value) for reason in reasons]), where)
            .scalar_subquery().label(name))


_BY_NUMBER = BLOCKS.c.phone_number == bindparam("e164")
# An E.164 prefix is "+" and digits: nothing in it for LIKE to take as a wildcard.
_LIFTED = [
    _lifted([BlockReason.LOCKED, BlockReason.NUMBER_LIMIT], _BY_NUMBER, _CARRIED),
    _lifted([BlockReason.NUMBER_LIMIT], _BY_NUMBER, BlockReason.NUMBER_LIMIT.value),
    _lifted([BlockReason.IP_LIMIT], BLOCKS.c.ip == bindparam("ip"), BlockReason.IP_LIMIT.value),
    _lifted([BlockReason.PREFIX_LIMIT], BLOCKS.c.phone_number.startswith(bindparam("prefix")),
            BlockReason.PREFIX_LIMIT.value),
]
_PREVIOUS = CODES.alias("previous")
_PREVIOUS_COLUMNS = [_PREVIOUS.c[name].label(f"previous_{name}") for name in
                     ("id", "status", "failures", "max_attempts", "created_at", "expires_at")]
_NEWEST = (select(func.max(CODES.c.id)).where(CODES.c.site_id == _SITE_ID, CODES.c.mode == bindparam("mode"),
                                              CODES.c.phone_number == bindparam("e164"))
           .correlate(OtpSite).scalar_subquery())


def _tally(column, since: str):
    return (select(func.coalesce(func.sum(column), 0))
            .where(TALLIES.c.site_id == _SITE_ID, TALLIES.c.hour >= bindparam(since, type_=TALLIES.c.hour.type))
            .scalar_subquery())


# The completion rate from the tallies first: the hours the window touches hold at most as many
# decided codes as were sent in them, the hours wholly inside it at least as many verified ones.
# Only when those bounds cannot rule out a pause are the window's codes counted one by one.
_UNSETTLED = ((_tally(TALLIES.c.sent, "since_hour") >= rules.PAUSE_SAMPLE)
              & (_tally(TALLIES.c.verified, "since") * 100 < _tally(TALLIES.c.sent, "since_hour")
                 * rules.PAUSE_RATE_PERCENT))


def _counted(*where):
    # created_at >= since implies expires_at >= since: the index on expiry bounds the scan
    return (select(func.count()).select_from(CODES)
            .where(CODES.c.site_id == _SITE_ID, CODES.c.mode == _constant("live"),
                   CODES.c.expires_at >= bindparam("since"), CODES.c.created_at >= bindparam("since"), *where)
            .scalar_subquery())


def _status(*statuses: CodeStatus):
    return or_(*(CODES.c.status == _constant(status.value) for status in statuses))


_DECIDED = (_counted(_status(CodeStatus.VERIFIED, CodeStatus.LOCKED))
            + _counted(_status(CodeStatus.ACTIVE), CODES.c.expires_at <= bindparam("now")))
_COMPLETION = [case((_UNSETTLED, _DECIDED), else_=0).label("decided"),
               case((_UNSETTLED, _counted(_status(CodeStatus.VERIFIED))), else_=0).label("verified")]
_HEAD = {  # by mode: the completion rate pauses live sites only
    mode: SITE_FOR.add_columns(*_LIFTED, *_PREVIOUS_COLUMNS, *(_COMPLETION if mode == "live" else []))
    .outerjoin_from(OtpSite, _PREVIOUS, _PREVIOUS.c.id == _NEWEST)
    for mode in ("live", "test")}
_SENT_COLUMNS = (CODES.c.created_at, CODES.c.phone_number, CODES.c.prefix, CODES.c.ip)
_SENT_WHERE = (CODES.c.mode == bindparam("mode"), CODES.c.created_at > bindparam("since_sent"))
_SENT_BY = {False: CODES.c.prefix == bindparam("prefix"),  # by whether the request names an IP
            True: or_(CODES.c.prefix == bindparam("prefix"), CODES.c.ip == bindparam("ip"))}
_SENT = {by_ip: select(*_SENT_COLUMNS).where(CODES.c.site_id == bindparam("site_id"), *_SENT_WHERE, by)
         for by_ip, by in _SENT_BY.items()}


def _sent_alongside(by_ip: bool):
    """PostgreSQL: the codes of _SENT as one row of arrays (one per column, in the same order),
    read beside the site by a LATERAL subquery: the history in one statement, not two."""
    return (select(*(func.array_agg(column).label(f"sent_{column.name}") for column in _SENT_COLUMNS))
            .where(CODES.c.site_id == _SITE_ID, *_SENT_WHERE, _SENT_BY[by_ip]).lateral("sent"))


_HEAD_AND_SENT = {(mode, by_ip): head.join_from(OtpSite, sent, true()).add_columns(*sent.c)
                  for mode, head in _HEAD.items() for by_ip in (False, True)
                  for sent in [_sent_alongside(by_ip)]}


def _site_and_history(session: Session, principal: Principal, domain: str, e164: str, ip: str | None,
                      now: datetime) -> tuple[OtpSite, _History]:
    """The site (SiteNotFound, SiteNotAllowed) with its history for the number: in one
    statement on PostgreSQL, two on SQLite (which has no LATERAL)."""
    mode = principal.mode
    since = now - rules.PAUSE_WINDOW  # or since the owner resumed the site: the statement takes the later one
    params = {"mode": mode, "e164": e164, "ip": ip, "prefix": rules.prefix_of(e164), "now": now,
              "since_sent": now - _LONGEST_WINDOW}
    # resumed_at is the site's own column: known once the site is read, so the window is bound
    # in Python below when it is later than a day ago, and the statement is read again then
    alongside = session.get_bind().dialect.name == "postgresql"
    head = _HEAD_AND_SENT[mode, ip is not None] if alongside else _HEAD[mode]
    site, found = site_with(session, principal, domain, head, params | _since(since))
    if mode == "live" and site.resumed_at is not None and site.resumed_at > since:
        site, found = site_with(session, principal, domain, head, params | _since(site.resumed_at))
    row = found._mapping
    previous = (_Previous(*(row[f"previous_{name}"] for name in ("id", "status", "failures", "max_attempts",
                                                                   "created_at", "expires_at")))
                if row["previous_id"] is not None else None)
    if alongside:
        sent = zip(*(row[f"sent_{column.name}"] or () for column in _SENT_COLUMNS))
    else:
        sent = session.execute(_SENT[ip is not None], params | {"site_id": site.id}).all()
    lifted = {name: row[name] for name in (_CARRIED, BlockReason.NUMBER_LIMIT.value, BlockReason.IP_LIMIT.value,
                                           BlockReason.PREFIX_LIMIT.value)}
    return site, _History(previous, lifted, [tuple(line) for line in sent], row.get("decided") or 0,
                          row.get("verified") or 0)


def _since(since: datetime) -> dict:
    """The window's start, and the start of the UTC hour it falls in (the tallies' hours)."""
    return {"since": since, "since_hour": since.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)}


def _guard(session: Session, principal: Principal, site: OtpSite, number: messaging_rules.Number, ip: str | None,
           now: datetime, history: _History) -> RequestBlocked | None:
    """The first guard the request breaks, in the order a customer would look for it; the
    cooldown is a plain refusal (ResendTooSoon), not a block."""
    if site.paused_at is not None:
        return RequestBlocked(BlockReason.PAUSED)
    if number.country not in site.countries:
        return RequestBlocked(BlockReason.COUNTRY)
    if site.proven_at is None and number.e164 not in _own_numbers(session, site.account_id):
        return RequestBlocked(BlockReason.UNPROVEN)
    previous = history.previous
    if previous is not None:
        wait = rules.cooldown_left(previous.created_at, site.resend_cooldown_seconds, now)
        if wait:
            raise ResendTooSoon(wait)
        if _carried(history, now) >= site.max_attempts:
            forgotten_in = rules.cooldown_left(previous.created_at, int(rules.NUMBER_WINDOW.total_seconds()), now)
            return RequestBlocked(BlockReason.LOCKED, forgotten_in)
    prefix = rules.prefix_of(number.e164)
    limits = [
        (BlockReason.NUMBER_LIMIT, site.per_number_limit, rules.NUMBER_WINDOW,
         [at for at, phone, _prefix, _ip in history.sent if phone == number.e164]),
        (BlockReason.IP_LIMIT, site.per_ip_limit, rules.IP_WINDOW,
         [at for at, _phone, _prefix, sent_ip in history.sent if sent_ip == ip]) if ip else None,
        (BlockReason.PREFIX_LIMIT, rules.PREFIX_LIMIT, rules.PREFIX_WINDOW,
         [at for at, _phone, sent_prefix, _ip in history.sent if sent_prefix == prefix]),
    ]
    for reason, limit, window, sent in filter(None, limits):
        since = max(filter(None, [now - window, history.lifted[reason.value]]))
        wait = rules.over_limit([at for at in sent if at > since], limit=limit, window=window, now=now)
        if wait is not None:
            return RequestBlocked(reason, wait)
    decided = _completion_too_low(history) if principal.mode == "live" else None
    if decided:
        site.paused_at = now
        _tell_owners_paused(session, site, decided, now)
        return RequestBlocked(BlockReason.PAUSED)
    return None


def _carried(history: _History, now: datetime) -> int:
    """The wrong attempts a new code takes over from the number's newest code: none once an
    owner lifted a block of the number after that code was sent."""
    previous = history.previous
    if previous is None:
        return 0
    lifted = history.lifted[_CARRIED]
    if lifted is not None and lifted >= previous.created_at:
        return 0
    return rules.carried_failures(state_of(previous), previous.created_at, now)


def _own_numbers(session: Session, account_id: int) -> set[str]:
    return set(session.scalars(select(User.phone_e164).join(Membership, Membership.user_id == User.id).where(
        Membership.account_id == account_id, User.phone_verified_at.is_not(None))))


def _tell_owners_paused(session: Session, site: OtpSite, decided: int, now: datetime) -> None:
    account = session.get(Account, site.account_id)
    owners = session.scalars(select(User).join(Membership, Membership.user_id == User.id).where(
        Membership.account_id == site.account_id, Membership.role == Role.OWNER))
    for owner in owners:
        mail.queue(session, to=owner.email, template="otp_site_paused", language=owner.language, now=now, site=site,
                   account=account, decided=decided)


def _completion_too_low(history: _History) -> int | None:
    """How many decided codes show too low a completion rate (None while the rate is fine)."""
    return history.decided if rules.should_pause(history.decided, history.verified) else None


@dataclass(frozen=True)
class _Asked:
    """A request's checked fields."""

    domain: str
    number: messaging_rules.Number
    channel: Channel
    ip: str | None


def _issue(session: Session, principal: Principal, locked: tuple[ledger.State, list[ledger.LiveLot]], site: OtpSite,
           asked: _Asked, secret: bytes, caller: str, now: datetime, daily_cap: int | None, history: _History) -> Issued:
    number = asked.number
    previous = history.previous  # read under the account's lock, which every request for the number takes
    failures = _carried(history, now)
    if previous is not None and previous.status == CodeStatus.ACTIVE:  # before the new code takes its place
        session.execute(_REPLACE, {"code_id": previous.id})
    code = rules.new_code(site.code_length)
    expiry = rules.expires_at(now, site.lifetime_minutes)
    fallback = site.fallback if asked.channel == Channel.SMS else Fallback.OFF  # a call needs no call after it
    spoken = None if fallback == Fallback.OFF else rules.spoken(code, site=site.display_name,
                                                                 language=site.fallback_language)

    def columns(msgid: str) -> dict:  # the code's row, bound to its request
        return dict(msgid=msgid, site_id=site.id, account_id=site.account_id, credential_id=principal.credential_id,
                    mode=principal.mode, phone_number=number.e164, prefix=rules.prefix_of(number.e164),
                    channel=asked.channel, code_hash=rules.code_hash(secret, msgid, code), status=CodeStatus.ACTIVE,
                    failures=min(failures, site.max_attempts), max_attempts=site.max_attempts, ip=asked.ip,
                    created_at=now, expires_at=expiry, fallback_text=spoken,
                    masked_body=_text(site, rules.masked(code)) if asked.channel == Channel.SMS else None)

    msgid, code_id = _deliver(session, principal, locked, site, asked, code, caller, now, daily_cap, columns)
    post_event(session, site, principal.credential_id, Event.SENT, now, phone_number=number.e164, otp_id=msgid)
    if fallback == Fallback.AFTER_DELAY:
        job = outbox.enqueue(session, kind=outbox.OutboxKind.OTP_FALLBACK, payload={"code_id": code_id}, now=now)
        job.available_at = now + timedelta(seconds=site.fallback_seconds)
    return Issued(msgid, expiry)


_REPLACE = (update(CODES).where(CODES.c.id == bindparam("code_id"), CODES.c.status == CodeStatus.ACTIVE)
            .values(status=CodeStatus.REPLACED, fallback_text=None))
_INSERT = insert(CODES).returning(CODES.c.id)


def _deliver(session: Session, principal: Principal, locked: tuple[ledger.State, list[ledger.LiveLot]],
             site: OtpSite, asked: _Asked, code: str, caller: str, now: datetime, daily_cap: int | None,
             columns: Callable[[str], dict]) -> tuple[str, int]:
    """Send the code by SMS (¥3) or read it out in a call (the voice price), through the
    messaging send path, and store it (`columns(otp_id)`: its row): the SMS's msgid or the
    call's callid is the code's otp_id. An SMS's code is written in the debit's own statement."""
    try:
        if asked.channel == Channel.VOICE:
            spoken = rules.spoken(code, site=site.display_name, language=site.fallback_language)
            callid = messaging.call_in(session, principal, *locked, caller=caller, number=asked.number, tts=spoken,
                                       language=str(site.fallback_language), now=now, daily_cap=daily_cap,
                                       product=UsageProduct.OTP_CALL, site_id=site.id).callid
            return callid, session.execute(_INSERT, columns(callid)).scalar_one()
        body = _text(site, code)
        msgid = secrets.token_hex(16)
        sent = messaging.send_in(session, principal, *locked, number=asked.number, sender=SENDER, body=body,
                                 split=segments.split(body), product=Product.OTP, now=now, daily_cap=daily_cap,
                                 site_id=site.id, msgid=msgid, also=messaging.Also(CODES, columns(msgid)))
        return sent.msgid, sent.also_id
    except InvalidField as refused:  # the account's own destination rules, named as this API names the number
        raise InvalidField("phone_number", *refused.reasons) from None


def _text(site: OtpSite, code: str) -> str:
    return rules.render(site.template, code=code, site=site.display_name, minutes=site.lifetime_minutes)


def state_of(code: OtpCode | _Previous | None) -> rules.CodeState | None:
    """What the rules need to know of a stored code."""
    if code is None:
        return None
    return rules.CodeState(code.status, code.failures, code.max_attempts, code.expires_at)


# -- verifying a code ---------------------------------------------------------------------------

def verify_code(*, session: Session, principal: Principal, request: VerifyCode, secret: bytes,
                now: datetime) -> Verified:
    """Check a code typed by the end user. A wrong code uses one of the code's attempts
    (counted atomically: concurrent checks can never use more); VerificationFailed names the
    reason (wrong, expired, too many attempts, already used, no active code)."""
    require_scope(principal)
    form = validation.Form.of(request)
    typed = form.read("code", _typed)
    request_id = request.otp_id or request.msgid
    if request_id is not None:
        form.read("otp_id" if request.otp_id is not None else "msgid", str.strip)
        domain = number = None
    else:
        domain = form.read("website", rules.domain_of)
        number = form.read("phone_number", partial(messaging_rules.phone_number, "phone_number"))
    form.raise_if_invalid()
    with db.write(session):
        if request_id is not None:
            found = session.execute(_BY_REQUEST, {"msgid": str(request_id).strip(), "account_id": principal.account_id,
                                                  "mode": principal.mode, "credential_id": principal.credential_id}
                                    ).first()
            code = found[0] if found is not None else None
            if found is not None and found.limited and not found.allowed:
                raise SiteNotAllowed()
        else:
            site = site_for(session, principal, domain)
            code = latest(session, site.id, principal.mode, number.e164)
        outcome = _check(session, code, typed, secret, now)
    if isinstance(outcome, VerificationFailed):
        raise outcome
    return outcome


def _typed(raw: str | None) -> str:
    text = (raw or "").strip()
    if not text.isascii() or not text.isdigit() or len(text) > 8:
        raise InvalidField("code", N_("Enter the code of 4 to 8 digits."))
    return text


_CREDENTIAL_SITES = OtpCredentialSite.__table__
_BY_REQUEST = (select(OtpCode,  # and, as site_for answers, whether the credential may use the code's site
                      exists().where(_CREDENTIAL_SITES.c.credential_id == bindparam("credential_id")).label("limited"),
                      exists().where(_CREDENTIAL_SITES.c.credential_id == bindparam("credential_id"),
                                     _CREDENTIAL_SITES.c.site_id == OtpCode.site_id).label("allowed"))
               .where(OtpCode.msgid == bindparam("msgid"), OtpCode.account_id == bindparam("account_id"),
                                     OtpCode.mode == bindparam("mode"))
               .limit(1).execution_options(populate_existing=True))
_USABLE = (CODES.c.id == bindparam("code_id"), CODES.c.status == CodeStatus.ACTIVE,
           CODES.c.failures < CODES.c.max_attempts)
_USE = (update(CODES).where(*_USABLE, CODES.c.expires_at > bindparam("now"))
        .values(status=CodeStatus.VERIFIED, verified_at=bindparam("used_at", type_=CODES.c.verified_at.type),
                fallback_text=None)
        .returning(CODES.c.id))
_LAST_ATTEMPT = CODES.c.failures + 1 >= CODES.c.max_attempts
_COUNT_WRONG = (update(CODES).where(*_USABLE).values(
    failures=CODES.c.failures + 1,
    status=case((_LAST_ATTEMPT, CodeStatus.LOCKED.value), else_=CODES.c.status),
    fallback_text=case((_LAST_ATTEMPT, None), else_=CODES.c.fallback_text),
).returning(CODES.c.failures, CODES.c.max_attempts))


def _check(session: Session, code: OtpCode | None, typed: str, secret: bytes,
           now: datetime) -> Verified | VerificationFailed:
    refused = rules.refusal(state_of(code), now)
    if refused is not None:
        return VerificationFailed(refused)
    if rules.matches(secret, code.msgid, typed, code.code_hash):
        used = session.execute(_USE, {"code_id": code.id, "now": now, "used_at": now}).first()
        if used is not None:
            post_event(session, session.get(OtpSite, code.site_id), code.credential_id, Event.VERIFIED, now,
                       phone_number=code.phone_number, otp_id=code.msgid)
            return Verified(code.msgid, code.phone_number, now)
    else:
        counted = session.execute(_COUNT_WRONG, {"code_id": code.id}).first()
        if counted is not None:
            return VerificationFailed(Failure.WRONG, counted.max_attempts - counted.failures)
    session.refresh(code)  # another check changed it meanwhile
    return VerificationFailed(rules.refusal(state_of(code), now) or Failure.NO_ACTIVE_CODE)
