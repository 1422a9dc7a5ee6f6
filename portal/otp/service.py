"""The OTP services: one unit of work each, keyword-only, `now` passed in, no HTTP.

A code is sent through the messaging service's own send path (`messaging.send_in`, under the
account's credit lock): the SMS is a message like any other, delivered by the worker, landing in
the test inbox for a test credential, debited ¥3 (the `otp` price) for a live one and refunded
like any failed message. A refusal by a fraud guard is recorded (with its reason) in its own
committed unit before RequestBlocked is raised; a wrong code's attempt is counted and committed
before VerificationFailed is raised."""

import hmac
import ipaddress
import json
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import TypeVar

from sqlalchemy import case, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from portal import db, mail, outbox
from portal.accounts.models import Account, Membership, Role, User
from portal.clock import JST
from portal.credentials.models import Credential
from portal.credentials.service import Principal
from portal.ledger import service as ledger
from portal.ledger.models import CreditState
from portal.messaging import rules as messaging_rules
from portal.messaging import segments, validation
from portal.messaging import service as messaging
from portal.messaging.api_models import Call, CallStatus, Message, MessageStatus, Product
from portal.messaging.errors import InsufficientCredit, SpendCapReached
from portal.otp import ownership, rules
from portal.otp.errors import (N_, Failure, InvalidField, NotLiftable, RequestBlocked, ResendTooSoon, ScopeMissing,
                               SiteExists, SiteNotAllowed, SiteNotFound, VerificationFailed)
from portal.otp.models import (SITE_DOMAIN_TAKEN, BlockReason, Channel, CodeStatus, Fallback, OtpBlocked, OtpCode,
                               OtpCredentialSite, OtpSite, TemplateLanguage)

SENDER = "Chotto"
RECHECK_EVERY = timedelta(days=30)
Given = object  # a field's value as the client sent it


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


def _require(principal: Principal) -> None:
    if "otp" not in principal.scopes:
        raise ScopeMissing("otp")


# -- sites --------------------------------------------------------------------------------------


def register_site(*, session: Session, account_id: int, website: Given, now: datetime,
                  display_name: str | None = None, language: TemplateLanguage = TemplateLanguage.JA) -> OtpSite:
    """Register a website (a URL or a domain) with the default settings and a fresh ownership
    token. One site per domain per account: SiteExists otherwise."""
    form = validation.Form({"website": website})
    domain = form.read("website", rules.domain_of)
    form.raise_if_invalid()
    settings = rules.default_settings(display_name or domain, language)
    try:
        with db.write(session):
            if _domain_taken(session, account_id, domain):
                raise SiteExists(domain)
            site = OtpSite(account_id=account_id, domain=domain, ownership_token=secrets.token_urlsafe(32),
                           created_at=now, **_columns(settings))
            session.add(site)
            session.flush()
    except IntegrityError as clash:  # registered by a concurrent request meanwhile
        if db.violated_constraint(clash) == SITE_DOMAIN_TAKEN:
            raise SiteExists(domain) from None
        raise
    return site


def _domain_taken(session: Session, account_id: int, domain: str) -> bool:
    return session.scalars(select(OtpSite.id).where(OtpSite.account_id == account_id,
                                                    OtpSite.domain == domain)).first() is not None


def register_site_by_api(*, session: Session, principal: Principal, website: Given, now: datetime) -> OtpSite:
    """The API's registration: the credential needs the `otp` scope."""
    _require(principal)
    return register_site(session=session, account_id=principal.account_id, website=website, now=now)


def _columns(settings: rules.Settings) -> dict:
    values = asdict(settings)
    values["allowed_countries"] = ",".join(settings.allowed_countries)
    values["display_name"] = settings.display_name.strip()
    return values


def update_settings(*, session: Session, account_id: int, site_id: int, settings: rules.Settings,
                    now: datetime) -> OtpSite:
    """Replace a site's settings with `settings`, all checked first (InvalidFields names every
    wrong one); codes already sent keep the lifetime and attempts they were sent with."""
    rules.checked(settings)
    with db.write(session):
        site = _own_site(session, account_id, site_id)
        for name, value in _columns(settings).items():
            setattr(site, name, value)
    return site


def site_of(*, session: Session, account_id: int, site_id: int) -> OtpSite:
    with db.read(session):
        return _own_site(session, account_id, site_id)


def sites_of(*, session: Session, account_id: int) -> list[OtpSite]:
    with db.read(session):
        return list(session.scalars(select(OtpSite).where(OtpSite.account_id == account_id).order_by(OtpSite.domain)))


def mark_proven(*, session: Session, account_id: int, site_id: int, proven: bool, now: datetime) -> OtpSite:
    """Record the result of an ownership check (the token file found, or not any more)."""
    with db.write(session):
        site = _own_site(session, account_id, site_id)
        site.checked_at = now
        site.proven_at = (site.proven_at or now) if proven else None
    return site


def check_ownership(*, session: Session, account_id: int, site_id: int, fetch: ownership.Fetch, https: bool,
                    now: datetime) -> bool:
    """Fetch the site's token file (outside any transaction) and record the result: proven
    while the file holds the site's token, unproven again once it does not."""
    site = site_of(session=session, account_id=account_id, site_id=site_id)
    text = fetch(ownership.token_url(site.domain, https=https))
    proven = text is not None and hmac.compare_digest(text.strip().encode(), site.ownership_token.encode())
    mark_proven(session=session, account_id=account_id, site_id=site_id, proven=proven, now=now)
    return proven


def sites_to_recheck(*, session: Session, now: datetime, limit: int = 100) -> list[tuple[int, int]]:
    """(account_id, site_id) of proven sites last checked a month ago or more: the worker
    checks them again."""
    with db.read(session):
        return [tuple(row) for row in session.execute(
            select(OtpSite.account_id, OtpSite.id).where(OtpSite.proven_at.is_not(None),
                                                         OtpSite.checked_at <= now - RECHECK_EVERY)
            .order_by(OtpSite.checked_at).limit(limit))]


def resume_site(*, session: Session, account_id: int, site_id: int, user_id: int, now: datetime) -> OtpSite:
    """An owner lifts the pause: the completion rate is counted afresh from now on."""
    with db.write(session):
        site = _own_site(session, account_id, site_id)
        site.paused_at, site.resumed_at = None, now
        session.execute(update(OtpBlocked).where(OtpBlocked.site_id == site.id, OtpBlocked.reason == BlockReason.PAUSED,
                                                 OtpBlocked.lifted_at.is_(None)).values(lifted_at=now, lifted_by=user_id))
    return site


LIFTABLE = (BlockReason.NUMBER_LIMIT, BlockReason.LOCKED, BlockReason.IP_LIMIT, BlockReason.PREFIX_LIMIT,
            BlockReason.PAUSED)  # a country or an unproven site is lifted by the settings or the proof


def lift_block(*, session: Session, account_id: int, block_id: int, user_id: int, now: datetime) -> OtpBlocked:
    """An owner lifts a block: what was counted against the number, range or IP before now no
    longer counts (a locked number's wrong attempts included); a paused site is resumed.
    NotLiftable for a country or an unproven site."""
    with db.write(session):
        block = session.get(OtpBlocked, block_id, populate_existing=True)
        if block is None or block.account_id != account_id:
            raise SiteNotFound("block")
        if block.reason not in LIFTABLE:
            raise NotLiftable(block.reason)
        if block.reason == BlockReason.PAUSED:
            resume_site(session=session, account_id=account_id, site_id=block.site_id, user_id=user_id, now=now)
        block.lifted_at, block.lifted_by = now, user_id
    return block


def blocked_of(*, session: Session, account_id: int, site_id: int, limit: int = 100) -> list[OtpBlocked]:
    with db.read(session):
        _own_site(session, account_id, site_id)
        return list(session.scalars(select(OtpBlocked).where(OtpBlocked.site_id == site_id)
                                    .order_by(OtpBlocked.id.desc()).limit(limit)))


def _own_site(session: Session, account_id: int, site_id: int) -> OtpSite:
    site = session.get(OtpSite, site_id, populate_existing=True)
    if site is None or site.account_id != account_id:
        raise SiteNotFound("site")
    return site


def _site_for(session: Session, principal: Principal, domain: str) -> OtpSite:
    site = session.scalars(select(OtpSite).where(OtpSite.account_id == principal.account_id, OtpSite.domain == domain)
                           .execution_options(populate_existing=True)).first()
    if site is None:
        raise SiteNotFound()
    _may_use(session, principal, site.id)
    return site


def _may_use(session: Session, principal: Principal, site_id: int) -> None:
    allowed = set(session.scalars(select(OtpCredentialSite.site_id)
                                  .where(OtpCredentialSite.credential_id == principal.credential_id)))
    if allowed and site_id not in allowed:
        raise SiteNotAllowed()


def limit_credential(*, session: Session, account_id: int, credential_id: int, site_ids: list[int]) -> None:
    """Limit an API credential of the account to these of its sites (none: every site)."""
    with db.write(session):
        credential = session.get(Credential, credential_id)
        if credential is None or credential.account_id != account_id:
            raise SiteNotFound("credential")
        for site_id in site_ids:
            _own_site(session, account_id, site_id)
        session.execute(delete(OtpCredentialSite).where(OtpCredentialSite.credential_id == credential_id))
        session.add_all(OtpCredentialSite(credential_id=credential_id, site_id=site_id) for site_id in set(site_ids))


def sites_of_credential(*, session: Session, account_id: int, credential_id: int) -> list[int]:
    """The ids of the sites a credential is limited to (empty: every site of its account)."""
    with db.read(session):
        return sorted(session.scalars(select(OtpCredentialSite.site_id).join(OtpSite).where(
            OtpCredentialSite.credential_id == credential_id, OtpSite.account_id == account_id)))


# -- events posted to the site's callback URL ------------------------------------------------------


class Event(StrEnum):
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    VERIFIED = "verified"
    FALLBACK_CALLED = "fallback_called"
    BLOCKED = "blocked"


def _event(session: Session, site: OtpSite, credential_id: int, event: Event, now: datetime, *, phone_number: str,
           otp_id: str | None = None, **extra) -> None:
    """Queue a signed POST of the event to the site's callback URL (if it has one), signed like
    the status callbacks with the callback secret of the credential that asked for the code."""
    if not site.callback_url:
        return
    body = {"event": event.value, "website": site.domain, "otp_id": otp_id, "phone_number": phone_number,
            "time": now.astimezone(JST).isoformat(), **extra}
    sid = session.scalar(select(Credential.sid).where(Credential.id == credential_id))
    outbox.enqueue(session, kind=outbox.OutboxKind.CALLBACK, now=now,
                   payload={"url": site.callback_url, "sid": sid, "body": json.dumps(body, ensure_ascii=False)})


# -- requesting a code --------------------------------------------------------------------------


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
    _require(principal)
    form = validation.Form(asdict(request))
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
        site = _site_for(session, principal, domain)
        blocked = _guard(session, principal, site, number, ip, now)
        if blocked is None:
            issued = _issue(session, principal, (state, lots), site, _Asked(domain, number, channel, ip), secret,
                            caller, now, daily_cap)
            answer = render(issued)
            if key:
                messaging.keep_answer(session, principal.account_id, key, fingerprint, answer, now)
            return answer
        session.add(OtpBlocked(site_id=site.id, account_id=site.account_id, mode=principal.mode,
                               phone_number=number.e164, ip=ip, reason=blocked.reason, created_at=now))
        _event(session, site, principal.credential_id, Event.BLOCKED, now, phone_number=number.e164,
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


def _latest(session: Session, site_id: int, mode: str, e164: str) -> OtpCode | None:
    return session.scalars(select(OtpCode).where(OtpCode.site_id == site_id, OtpCode.mode == mode,
                                                 OtpCode.phone_number == e164)
                           .order_by(OtpCode.id.desc()).execution_options(populate_existing=True)).first()


def _sent_since(session: Session, site: OtpSite, mode: str, since: datetime, *where) -> list[datetime]:
    return list(session.scalars(select(OtpCode.created_at).where(OtpCode.site_id == site.id, OtpCode.mode == mode,
                                                                 OtpCode.created_at > since, *where)))


def _guard(session: Session, principal: Principal, site: OtpSite, number: messaging_rules.Number, ip: str | None,
           now: datetime) -> RequestBlocked | None:
    """The first guard the request breaks, in the order a customer would look for it; the
    cooldown is a plain refusal (ResendTooSoon), not a block."""
    if site.paused_at is not None:
        return RequestBlocked(BlockReason.PAUSED)
    if number.country not in site.countries:
        return RequestBlocked(BlockReason.COUNTRY)
    if site.proven_at is None and number.e164 not in _own_numbers(session, site.account_id):
        return RequestBlocked(BlockReason.UNPROVEN)
    mode = principal.mode
    previous = _latest(session, site.id, mode, number.e164)
    if previous is not None:
        wait = rules.cooldown_left(previous.created_at, site.resend_cooldown_seconds, now)
        if wait:
            raise ResendTooSoon(wait)
        if _carried(session, site, mode, previous, now) >= site.max_attempts:
            return RequestBlocked(BlockReason.LOCKED, rules.cooldown_left(previous.created_at,
                                                                          int(rules.NUMBER_WINDOW.total_seconds()), now))
    prefix = rules.prefix_of(number.e164)
    limits = [
        (BlockReason.NUMBER_LIMIT, site.per_number_limit, rules.NUMBER_WINDOW, OtpCode.phone_number == number.e164,
         OtpBlocked.phone_number == number.e164),
        (BlockReason.IP_LIMIT, site.per_ip_limit, rules.IP_WINDOW, OtpCode.ip == ip, OtpBlocked.ip == ip) if ip else None,
        (BlockReason.PREFIX_LIMIT, rules.PREFIX_LIMIT, rules.PREFIX_WINDOW, OtpCode.prefix == prefix,
         OtpBlocked.phone_number.startswith(prefix, autoescape=True)),
    ]
    for reason, limit, window, sent, blocked in filter(None, limits):
        since = max(filter(None, [now - window, _lifted_at(session, site, mode, [reason], blocked)]))
        wait = rules.over_limit(_sent_since(session, site, mode, since, sent), limit=limit, window=window, now=now)
        if wait is not None:
            return RequestBlocked(reason, wait)
    decided = _completion_too_low(session, site, now) if mode == "live" else None
    if decided:
        site.paused_at = now
        _tell_owners_paused(session, site, decided, now)
        return RequestBlocked(BlockReason.PAUSED)
    return None


def _lifted_at(session: Session, site: OtpSite, mode: str, reasons: list[BlockReason], where) -> datetime | None:
    """When an owner last lifted a block of these reasons for the same number, range or IP."""
    return session.scalar(select(func.max(OtpBlocked.lifted_at)).where(
        OtpBlocked.site_id == site.id, OtpBlocked.mode == mode, OtpBlocked.reason.in_(reasons), where))


def _carried(session: Session, site: OtpSite, mode: str, previous: OtpCode, now: datetime) -> int:
    """The wrong attempts a new code takes over from `previous`: none once an owner lifted a
    block of the number after `previous` was sent."""
    lifted = _lifted_at(session, site, mode, [BlockReason.LOCKED, BlockReason.NUMBER_LIMIT],
                        OtpBlocked.phone_number == previous.phone_number)
    if lifted is not None and lifted >= previous.created_at:
        return 0
    return rules.carried_failures(_state(previous), previous.created_at, now)


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


def _completion_too_low(session: Session, site: OtpSite, now: datetime) -> int | None:
    """How many decided codes show too low a completion rate (None while the rate is fine):
    live codes of the last 24 hours (since the site was last resumed) whose outcome is known."""
    since = max(filter(None, [now - rules.PAUSE_WINDOW, site.resumed_at]))
    decided = or_(OtpCode.status.in_([CodeStatus.VERIFIED, CodeStatus.LOCKED]),
                  (OtpCode.status == CodeStatus.ACTIVE) & (OtpCode.expires_at <= now))
    row = session.execute(select(func.count(), func.count().filter(OtpCode.status == CodeStatus.VERIFIED)).where(
        OtpCode.site_id == site.id, OtpCode.mode == "live", OtpCode.created_at >= since, decided)).one()
    return row[0] if rules.should_pause(row[0], row[1]) else None


@dataclass(frozen=True)
class _Asked:
    """A request's checked fields."""

    domain: str
    number: messaging_rules.Number
    channel: Channel
    ip: str | None


def _issue(session: Session, principal: Principal, locked: tuple[ledger.State, list[ledger.LiveLot]], site: OtpSite,
           asked: _Asked, secret: bytes, caller: str, now: datetime, daily_cap: int | None) -> Issued:
    number = asked.number
    previous = _latest(session, site.id, principal.mode, number.e164)
    failures = _carried(session, site, principal.mode, previous, now) if previous else 0
    if previous is not None and previous.status == CodeStatus.ACTIVE:
        previous.status, previous.fallback_text = CodeStatus.REPLACED, None
        session.flush()  # before the new code takes the number's one active place
    code = rules.new_code(site.code_length)
    msgid = _deliver(session, principal, locked, site, asked, code, caller, now, daily_cap)
    expiry = rules.expires_at(now, site.lifetime_minutes)
    fallback = site.fallback if asked.channel == Channel.SMS else Fallback.OFF  # a call needs no call after it
    spoken = None if fallback == Fallback.OFF else rules.spoken(code, site=site.display_name,
                                                                 language=site.fallback_language)
    issued = OtpCode(msgid=msgid, site_id=site.id, account_id=site.account_id, credential_id=principal.credential_id,
                     mode=principal.mode, phone_number=number.e164, prefix=rules.prefix_of(number.e164),
                     channel=asked.channel, code_hash=rules.code_hash(secret, msgid, code), status=CodeStatus.ACTIVE,
                     failures=min(failures, site.max_attempts), max_attempts=site.max_attempts, ip=asked.ip,
                     created_at=now, expires_at=expiry, fallback_text=spoken,
                     masked_body=_text(site, rules.masked(code)) if asked.channel == Channel.SMS else None)
    session.add(issued)
    session.flush()
    _event(session, site, principal.credential_id, Event.SENT, now, phone_number=number.e164, otp_id=msgid)
    if fallback == Fallback.AFTER_DELAY:
        job = outbox.enqueue(session, kind=outbox.OutboxKind.OTP_FALLBACK, payload={"code_id": issued.id}, now=now)
        job.available_at = now + timedelta(seconds=site.fallback_seconds)
    return Issued(msgid, expiry)


def _deliver(session: Session, principal: Principal, locked: tuple[ledger.State, list[ledger.LiveLot]],
             site: OtpSite, asked: _Asked, code: str, caller: str, now: datetime, daily_cap: int | None) -> str:
    """Send the code by SMS (¥3) or read it out in a call (the voice price), through the
    messaging send path; the SMS's msgid or the call's callid is the code's otp_id."""
    try:
        if asked.channel == Channel.VOICE:
            spoken = rules.spoken(code, site=site.display_name, language=site.fallback_language)
            return messaging.call_in(session, principal, *locked, caller=caller, number=asked.number, tts=spoken,
                                     language=str(site.fallback_language), now=now, daily_cap=daily_cap).callid
        body = _text(site, code)
        return messaging.send_in(session, principal, *locked, number=asked.number, sender=SENDER, body=body,
                                 split=segments.split(body), product=Product.OTP, now=now, daily_cap=daily_cap).msgid
    except InvalidField as refused:  # the account's own destination rules, named as this API names the number
        raise InvalidField("phone_number", *refused.reasons) from None


def _text(site: OtpSite, code: str) -> str:
    return rules.render(site.template, code=code, site=site.display_name, minutes=site.lifetime_minutes)


def _state(code: OtpCode | None) -> rules.CodeState | None:
    if code is None:
        return None
    return rules.CodeState(code.status, code.failures, code.max_attempts, code.expires_at)


# -- verifying a code ---------------------------------------------------------------------------

CODES = OtpCode.__table__


def verify_code(*, session: Session, principal: Principal, request: VerifyCode, secret: bytes,
                now: datetime) -> Verified:
    """Check a code typed by the end user. A wrong code uses one of the code's attempts
    (counted atomically: concurrent checks can never use more); VerificationFailed names the
    reason (wrong, expired, too many attempts, already used, no active code)."""
    _require(principal)
    form = validation.Form(asdict(request))
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
            code = session.scalars(select(OtpCode).where(
                OtpCode.msgid == str(request_id).strip(), OtpCode.account_id == principal.account_id,
                OtpCode.mode == principal.mode).execution_options(populate_existing=True)).first()
            if code is not None:
                _may_use(session, principal, code.site_id)
        else:
            site = _site_for(session, principal, domain)
            code = _latest(session, site.id, principal.mode, number.e164)
        outcome = _check(session, code, typed, secret, now)
    if isinstance(outcome, VerificationFailed):
        raise outcome
    return outcome


def _typed(raw: str | None) -> str:
    text = (raw or "").strip()
    if not text.isascii() or not text.isdigit() or len(text) > 8:
        raise InvalidField("code", N_("Enter the code of 4 to 8 digits."))
    return text


def _check(session: Session, code: OtpCode | None, typed: str, secret: bytes,
           now: datetime) -> Verified | VerificationFailed:
    refused = rules.refusal(_state(code), now)
    if refused is not None:
        return VerificationFailed(refused)
    usable = (CODES.c.id == code.id, CODES.c.status == CodeStatus.ACTIVE, CODES.c.failures < CODES.c.max_attempts)
    if rules.matches(secret, code.msgid, typed, code.code_hash):
        used = session.execute(update(CODES).where(*usable, CODES.c.expires_at > now)
                               .values(status=CodeStatus.VERIFIED, verified_at=now, fallback_text=None)
                               .returning(CODES.c.id)).first()
        if used is not None:
            _event(session, session.get(OtpSite, code.site_id), code.credential_id, Event.VERIFIED, now,
                   phone_number=code.phone_number, otp_id=code.msgid)
            return Verified(code.msgid, code.phone_number, now)
    else:
        counted = session.execute(update(CODES).where(*usable).values(
            failures=CODES.c.failures + 1,
            status=case((CODES.c.failures + 1 >= CODES.c.max_attempts, CodeStatus.LOCKED.value),
                        else_=CODES.c.status),
            fallback_text=case((CODES.c.failures + 1 >= CODES.c.max_attempts, None), else_=CODES.c.fallback_text),
        ).returning(CODES.c.failures, CODES.c.max_attempts)).first()
        if counted is not None:
            return VerificationFailed(Failure.WRONG, counted.max_attempts - counted.failures)
    session.refresh(code)  # another check changed it meanwhile
    return VerificationFailed(rules.refusal(_state(code), now) or Failure.NO_ACTIVE_CODE)


# -- the voice fallback (run by the worker) --------------------------------------------------------


def after_sms(*, session: Session, message_id: int, caller: str, now: datetime) -> str | None:
    """After an SMS's delivery attempt, for an OTP message: its delivery reported once to the
    site's callback URL, and a failed one followed at once by the site's fallback call.
    Returns the call's id, if one was queued."""
    with db.read(session):
        row = session.execute(select(OtpCode.id, Message.status).join(Message, Message.msgid == OtpCode.msgid).where(
            Message.id == message_id, OtpCode.delivery_event.is_(None),
            Message.status.in_([MessageStatus.DELIVERED, MessageStatus.FAIL]))).first()
    if row is None:  # not an OTP message, still on its way, or reported already
        return None
    event = Event.FAILED if row.status == MessageStatus.FAIL else Event.DELIVERED
    with db.write(session):
        reported = session.execute(update(CODES).where(CODES.c.id == row.id, CODES.c.delivery_event.is_(None))
                                   .values(delivery_event=event.value).returning(CODES.c.id)).first()
        if reported is not None:
            code = session.get(OtpCode, row.id, populate_existing=True)
            if code.masked_body is not None:
                messaging.redact_in(session, msgid=code.msgid, text=code.masked_body)
            _event(session, session.get(OtpSite, code.site_id), code.credential_id, event, now,
                   phone_number=code.phone_number, otp_id=code.msgid)
    if event == Event.FAILED:
        return call_fallback(session=session, code_id=row.id, caller=caller, now=now)
    return None


def after_call(*, session: Session, call_id: int) -> None:
    """After a call ended: the code it read out (a code by voice, or a fallback) is hidden."""
    with db.read(session):
        row = session.execute(select(Call.callid, Call.tts_message).join(
            OtpCode, or_(OtpCode.msgid == Call.callid, OtpCode.fallback_callid == Call.callid)).where(
            Call.id == call_id, Call.ended_at.is_not(None))).first()
    if row is None or not row.tts_message or rules.masked_spoken(row.tts_message) == row.tts_message:
        return
    with db.write(session):
        messaging.redact_in(session, callid=row.callid, text=rules.masked_spoken(row.tts_message))


def call_fallback(*, session: Session, code_id: int, caller: str, now: datetime) -> str | None:
    """Queue the call that reads the code out, unless the code was verified, replaced, locked
    or has expired meanwhile, or was already called: at most one call per code, paid like any
    call through the credential that asked for the code. The text read out is forgotten once
    the call is queued (or can no longer come). Returns the call's id, if one was queued."""
    with db.write(session):
        account_id = session.scalar(select(OtpCode.account_id).where(OtpCode.id == code_id))
        if account_id is None:
            return None
        state, lots = ledger.lock(session, account_id)
        code = session.get(OtpCode, code_id, populate_existing=True)
        principal = _principal_of(session, code.credential_id)
        if code.fallback_text is None or principal is None or rules.refusal(_state(code), now) is not None:
            code.fallback_text = None
            return None
        site = session.get(OtpSite, code.site_id)
        number = messaging_rules.phone_number("phone_number", code.phone_number)
        try:
            with session.begin_nested():  # a refused call leaves nothing of itself
                started = messaging.call_in(session, principal, state, lots, caller=caller, number=number,
                                            tts=code.fallback_text, language=str(site.fallback_language), now=now)
        except (InsufficientCredit, SpendCapReached, InvalidField):
            code.fallback_text = None
            return None
        code.fallback_text, code.fallback_callid = None, started.callid
        _event(session, site, code.credential_id, Event.FALLBACK_CALLED, now, phone_number=code.phone_number,
               otp_id=code.msgid, callid=started.callid)
        return started.callid


def _principal_of(session: Session, credential_id: int) -> Principal | None:
    """The credential that asked for the code, as the API saw it; None once revoked."""
    row = session.execute(select(Credential, Account.allowed_countries, CreditState.has_purchased)
                          .join(Account, Account.id == Credential.account_id)
                          .join(CreditState, CreditState.account_id == Credential.account_id)
                          .where(Credential.id == credential_id, Credential.revoked_at.is_(None))).first()
    if row is None:
        return None
    credential, countries, purchased = row
    return Principal(credential.id, credential.sid, credential.account_id, credential.mode,
                     frozenset(credential.scope_list), credential.monthly_cap,
                     tuple(c for c in (countries or "JP").split(",") if c), bool(purchased))


# -- logs and statistics (for the site's pages) -----------------------------------------------------


@dataclass(frozen=True)
class LogLine:
    """One request of a site: a code sent (status from rules.outcome) or a blocked one."""

    at: datetime
    phone_number: str
    mode: str
    channel: str  # sms, or "sms+voice" when the fallback called
    status: str  # verified, failed, replaced, expired, delivered, sent, or blocked
    reason: BlockReason | None  # why it was blocked
    msgid: str | None
    cost: int  # milli-yen


def _codes(session: Session, site_id: int, since: datetime, limit: int | None = None):
    query = (select(OtpCode, Message.status, Message.cost, Call.cost, Call.status)
             .outerjoin(Message, Message.msgid == OtpCode.msgid)
             .outerjoin(Call, or_(Call.callid == OtpCode.fallback_callid, Call.callid == OtpCode.msgid))
             .where(OtpCode.site_id == site_id, OtpCode.created_at >= since).order_by(OtpCode.id.desc()))
    return session.execute(query.limit(limit) if limit else query).all()


def log_of(*, session: Session, account_id: int, site_id: int, now: datetime, limit: int = 100,
           days: int = 90) -> list[LogLine]:
    """The site's newest requests, codes and blocked ones together, newest first."""
    since = now - timedelta(days=days)
    with db.read(session):
        _own_site(session, account_id, site_id)
        lines = [LogLine(code.created_at, code.phone_number, code.mode,
                         "sms+voice" if code.fallback_callid else code.channel.value,
                         rules.outcome(code.status, code.expires_at, _delivery(code, status, call_status), now), None,
                         code.msgid, (sms_cost or 0) + (call_cost or 0))
                 for code, status, sms_cost, call_cost, call_status in _codes(session, site_id, since, limit)]
        blocked = session.scalars(select(OtpBlocked).where(OtpBlocked.site_id == site_id, OtpBlocked.created_at >= since)
                                  .order_by(OtpBlocked.id.desc()).limit(limit))
        lines += [LogLine(b.created_at, b.phone_number, b.mode, "sms", "blocked", b.reason, None, 0) for b in blocked]
    return sorted(lines, key=lambda line: line.at, reverse=True)[:limit]


def _delivery(code: OtpCode, message_status: str | None, call_status: str | None) -> str | None:
    """How the code reached the phone, in the SMS's terms: a code read out in an answered call
    was delivered, in a failed one it failed."""
    if code.channel == Channel.VOICE:
        return {CallStatus.ANSWERED: MessageStatus.DELIVERED, CallStatus.FAILED: MessageStatus.FAIL}.get(call_status)
    return message_status


def statistics_of(*, session: Session, account_id: int, site_id: int, now: datetime, days: int = 30,
                  mode: str = "live") -> list[rules.Day]:
    """By Japan day, newest first: requests, blocked, delivered, verified, the completion rate,
    fallback calls and cost, for the live (or test) requests of the last `days` days."""
    since = now - timedelta(days=days)
    with db.read(session):
        _own_site(session, account_id, site_id)
        sent = []
        for code, status, sms_cost, call_cost, call_status in _codes(session, site_id, since):
            delivery = _delivery(code, status, call_status)
            if code.mode == mode:
                sent.append(rules.Sent(code.created_at, rules.outcome(code.status, code.expires_at, delivery, now),
                                       delivery == MessageStatus.DELIVERED, code.fallback_callid is not None,
                                       (sms_cost or 0) + (call_cost or 0)))
        blocked = session.scalars(select(OtpBlocked.created_at).where(
            OtpBlocked.site_id == site_id, OtpBlocked.mode == mode, OtpBlocked.created_at >= since))
        return rules.by_day(sent, list(blocked))
