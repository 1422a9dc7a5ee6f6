"""Sending through the customer API: each send is validated, priced, paid and recorded in
one transaction that locks the account's credit row first (with the idempotency record and
the outbox job that hands it to the carrier), then delivered by the worker.

Test credentials go through every check and land in the test inbox, but charge nothing.

The services take typed requests and return domain results or raise the errors of
`portal.messaging.errors`: they speak no HTTP. A send answers with what the face rendered
from its result, because that answer is what an Idempotency-Key keeps (see StoredAnswer)."""

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TypeVar

from sqlalchemy import Table, false, insert, select, update
from sqlmodel import Session

from portal import db, outbox
from portal.accounts.models import Account, Membership, User
from portal.credentials.models import CredentialMode, Scope
from portal.credentials.service import Principal
from portal.ledger.models import CreditState
from portal.ledger import queries
from portal.ledger import service as ledger
from portal.messaging import riders, rules, segments, spend, validation
from portal.messaging.api_models import (ApiIdempotency, Call, CallStatus, Message, MessageStatus, Price, Product,
                                         UsageProduct)
from portal.messaging.errors import (DestinationNotAllowed, DestinationNotPriced, InvalidField, KeyReused,
                                     ScopeMissing, SpendCap, SpendCapReached)

IDEMPOTENCY_RETENTION = timedelta(hours=24)
CALL_HOLD_LIFETIME = timedelta(hours=24)  # longer than any queue plus the longest call

Given = object  # a field's value as the client sent it: form text, a list of texts, or any JSON value


@dataclass(frozen=True)
class SendSms:
    """An SMS as the client asked for it, field by field under Xoxzo's names. The values are
    unchecked (any JSON type): the service checks them all, so that one refusal names every
    invalid field."""

    recipient: Given = None
    sender: Given = None
    message: Given = None
    callbackurl: Given = None
    tags: Given = None


@dataclass(frozen=True)
class StartCall:
    """A call as the client asked for it: a recording or a text read out (with its language)."""

    caller: Given = None
    recipient: Given = None
    recording_url: Given = None
    tts_message: Given = None
    tts_lang: Given = None
    callbackurl: Given = None
    tags: Given = None


@dataclass(frozen=True)
class Sent:
    """An SMS paid for and queued for the carrier (and the id of the row written with it)."""

    msgid: str
    also_id: int | None = None


@dataclass(frozen=True)
class Also:
    """A row of another table written with an SMS, in the debit's own statement on PostgreSQL
    (the OTP product's code): its columns but the id, which `Sent.also_id` gives back."""

    table: Table
    values: dict


@dataclass(frozen=True)
class CallStarted:
    """A call queued for the carrier, its credit set aside."""

    callid: str


@dataclass(frozen=True)
class StoredAnswer:
    """A face's answer to a request sent with an Idempotency-Key. The service stores it with the
    key, in the transaction that did the work, and gives it back unchanged to a retry: a retry
    gets the first answer to the byte even if the face renders its answers differently since
    (rows stored before hold a status and a body too). The service never reads it."""

    status: int
    body: str


Result = TypeVar("Result")


def request_hash(**fields) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


# -- the shared frame of a paid request ---------------------------------------------------------


def _idempotent(session: Session, principal: Principal, key: str | None, fingerprint: str, now: datetime,
                work: Callable[[ledger.State, list[ledger.LiveLot]], Result],
                render: Callable[[Result], StoredAnswer]) -> StoredAnswer:
    """In one write unit: lock the account, then give back the answer stored under `key`, or
    run `work` (which changes the database and returns the result) and store the face's
    answer to its result under `key`. A refusal leaves nothing of the request behind."""
    with db.write(session):
        state, lots = ledger.lock(session, principal.account_id)
        stored = stored_answer(session, principal.account_id, key, fingerprint, now) if key else None
        if stored is not None:
            return stored
        answer = render(work(state, lots))
        if key:
            keep_answer(session, principal.account_id, key, fingerprint, answer, now)
        return answer


def stored_answer(session: Session, account_id: int, key: str, fingerprint: str, now: datetime) -> StoredAnswer | None:
    """Inside the caller's unit, the account locked: the answer kept under `key` for the same
    request, None if there is none; KeyReused if the key was used for another request."""
    stored = _stored(session, account_id, key, now)
    if stored is None:
        return None
    if stored.request_hash != fingerprint:
        raise KeyReused(key)
    return StoredAnswer(stored.status, stored.body)


def keep_answer(session: Session, account_id: int, key: str, fingerprint: str, answer: StoredAnswer,
                now: datetime) -> None:
    """Keep the face's answer under `key`, in the unit that did the work."""
    session.add(ApiIdempotency(account_id=account_id, key=key, request_hash=fingerprint, status=answer.status,
                               body=answer.body, created_at=now))


def _stored(session: Session, account_id: int, key: str, now: datetime) -> ApiIdempotency | None:
    """The answer stored under `key` in the last 24 hours; an older one is deleted, which frees the key."""
    stored = session.scalars(select(ApiIdempotency).where(ApiIdempotency.account_id == account_id,
                                                          ApiIdempotency.key == key)).first()
    if stored is not None and stored.created_at <= now - IDEMPOTENCY_RETENTION:
        session.delete(stored)
        session.flush()
        return None
    return stored


_PRICES: dict[str, tuple[float, dict[tuple[str, str], int]]] = {}
PRICE_CACHE_SECONDS = 10.0


PRICE_COLUMNS = (Price.product, Price.country, Price.unit_price)


def _price(session: Session, product: Product, country: str, field: str) -> int:
    """A unit price from the price table, read at most every 10 seconds per process (prices
    change rarely; the hot path saves a round trip)."""
    table = price_table(str(session.get_bind().url), lambda: session.execute(select(*PRICE_COLUMNS)))
    price = table.get((product, country))
    if price is None:
        raise DestinationNotPriced(field, f"Sending to {country} is not available.")
    return price


def price_table(url: str, read: Callable[[], Iterable]) -> dict[tuple[str, str], int]:
    """The prices of the database at `url` by (product, country), as `read()` gives their
    rows (PRICE_COLUMNS) at most every 10 seconds per process, cached in between."""
    loaded_at, table = _PRICES.get(url, (0.0, {}))
    if time.monotonic() - loaded_at > PRICE_CACHE_SECONDS:
        table = {(product, country): price for product, country, price in read()}
        _PRICES[url] = (time.monotonic(), table)
    return table


def _check_destination(session: Session, principal: Principal, number: rules.Number, field: str) -> None:
    if number.country not in principal.allowed_countries:
        raise DestinationNotAllowed(field, f"Sending to {number.country} is not enabled for this account.")
    if principal.mode == "test" or principal.has_purchased:
        return
    own = session.scalars(select(User.phone_e164).join(Membership, Membership.user_id == User.id).where(
        Membership.account_id == principal.account_id, User.phone_verified_at.is_not(None))).all()
    if number.e164 not in own:
        raise DestinationNotAllowed(field, "Until the first purchase, live messages go only to the account's "
                                           "verified mobile numbers.")


def _check_limits(principal: Principal, totals: list[int], daily_cap: int | None) -> None:
    """After the spending is counted (the account is locked, so the totals are exact): over a
    limit, the caller's transaction is rolled back and nothing was spent. Chotto's own sends
    (no credential) count toward the account's day only."""
    day_total, month_total = totals[0], totals[1] if len(totals) > 1 else 0
    if daily_cap is not None and day_total > daily_cap:
        raise SpendCapReached(SpendCap.ACCOUNT_DAILY, daily_cap)
    if principal.monthly_cap is not None and month_total > principal.monthly_cap:
        raise SpendCapReached(SpendCap.CREDENTIAL_MONTHLY, principal.monthly_cap)


def _require(principal: Principal, scope: str) -> None:
    if scope not in principal.scopes:
        raise ScopeMissing(scope)


def _refuse_if_invalid(session: Session, principal: Principal, form: validation.Form, number: rules.Number | None,
                       product: Product) -> None:
    """Refuse a request with invalid fields, naming every one: a well-formed recipient is
    checked against the account's destinations too (what a valid request learns under the lock)."""
    if not form.errors:
        return
    if number is not None:
        with db.read(session):
            form.check(_check_destination, session, principal, number, "recipient")
            if "recipient" not in form.errors:
                form.check(_price, session, product, number.country, "recipient")
    form.raise_if_invalid()


def chotto_principal(session: Session, *, account_id: int) -> Principal:
    """Chotto itself sending for the account (a balance alert), inside the caller's unit: no
    credential (the message's credential_id is NULL, so no credential's listing shows it and
    no credential's monthly spend counts it), live, under the account's own destination rules
    (its allowed countries; before the first purchase only its members' verified numbers)."""
    countries, purchased = session.execute(
        select(Account.allowed_countries, CreditState.has_purchased)
        .join(CreditState, CreditState.account_id == Account.id).where(Account.id == account_id)).one()
    return Principal(credential_id=None, sid=None, account_id=account_id, mode=CredentialMode.LIVE,
                     scopes=frozenset({Scope.SMS}), monthly_cap=None,
                     allowed_countries=tuple(c for c in (countries or "JP").split(",") if c),
                     has_purchased=bool(purchased))


# -- SMS -----------------------------------------------------------------------------------------


def send_sms(*, session: Session, principal: Principal, request: SendSms, idempotency_key: str | None, now: datetime,
             render: Callable[[Sent], StoredAnswer], daily_cap: int | None = None) -> StoredAnswer:
    """Send one SMS. Answers with the face's `render`ing of the send, or with the answer
    stored for the first request under the same Idempotency-Key."""
    _require(principal, "sms")
    form = validation.Form.of(request)
    number = form.read("recipient", partial(rules.phone_number, "recipient"))
    sender = form.read("sender", rules.sender_id)
    split = form.read("message", _parts)
    callback = form.read("callbackurl", rules.callback_url, required=False)
    tags = form.read("tags", rules.tags_of, required=False, lists=True)
    idempotency_key = form.check(rules.idempotency_key, idempotency_key)
    _refuse_if_invalid(session, principal, form, number, Product.SMS)
    body = request.message
    fingerprint = request_hash(op="sms", credential=principal.credential_id, mode=principal.mode, recipient=number.e164,
                               sender=sender, message=body, callback=callback, tags=tags)

    def work(state, lots) -> Sent:
        return send_in(session, principal, state, lots, number=number, sender=sender, body=body, split=split,
                       product=Product.SMS, callback=callback, tags=tags, now=now, daily_cap=daily_cap)

    return _idempotent(session, principal, idempotency_key, fingerprint, now, work, render)


def send_in(session: Session, principal: Principal, state: ledger.State, lots: list[ledger.LiveLot], *,
            number: rules.Number, sender: str, body: str, split: segments.Split, product: Product, now: datetime,
            callback: str | None = None, tags: list[str] = (), daily_cap: int | None = None,
            site_id: int | None = None, msgid: str | None = None, also: Also | None = None) -> Sent:
    """Record, pay and queue one SMS inside the caller's unit of work, the account locked by the
    caller (`ledger.lock`): the send path of the API, shared with the OTP product. An SMS is
    priced per segment, an OTP message (`Product.OTP`, with its `site_id`) per message. A live
    send is debited under the key "sms:<msgid>", which is what refunds a failed message. The
    caller may choose the msgid (a fresh random one otherwise) and a row to write `also`."""
    _check_destination(session, principal, number, "recipient")
    unit_price = _price(session, product, number.country, "recipient")
    per = split.parts if product == Product.SMS else 1
    cost = unit_price * per if principal.mode == "live" else 0
    msgid = msgid or secrets.token_hex(16)
    values = dict(msgid=msgid, account_id=principal.account_id, credential_id=principal.credential_id,
                  mode=principal.mode, product=UsageProduct.OTP if product == Product.OTP else UsageProduct.SMS,
                  otp_site_id=site_id, sender=sender, recipient=number.e164, country=number.country, body=body,
                  encoding=split.encoding, segments=split.parts, cost=cost, status=MessageStatus.QUEUED,
                  tags=",".join(tags), callback_url=callback, created_at=now, updated_at=now)
    if cost:  # the message, its delivery job and the spend counters ride in the debit's statement
        counters = spend.keys(account_id=principal.account_id, credential_id=principal.credential_id, at=now)

        def fallback(db_session):
            _record(db_session, values, now)
            return [*spend.add(db_session, counters, cost), *([_also(db_session, also)] if also else [])]

        rider = (riders.sms_debit(values, counters, cost, fallback) if also is None
                 else riders.sms_debit_and(also.table, also.values, values, counters, cost, fallback))
        ledger.debit_in(session, state, lots, amount=cost, key=f"sms:{msgid}",
                        reason=f"{'OTP' if product == Product.OTP else 'SMS'} {msgid}", now=now, rider=rider)
        _check_limits(principal, rider.results, daily_cap)
        return Sent(msgid, rider.results[len(counters)] if also else None)
    _record(session, values, now)
    return Sent(msgid, _also(session, also) if also else None)


def _also(session: Session, also: Also) -> int:
    return session.execute(insert(also.table).returning(*also.table.primary_key.columns), also.values).scalar_one()


def _parts(body: str) -> segments.Split:
    try:
        return segments.split(body)
    except segments.TooLong as error:
        raise InvalidField("message", f"The message needs {error.parts} parts; at most {segments.MAX_PARTS}.") from None


MESSAGES, OUTBOX = Message.__table__, outbox.OutboxMessage.__table__


def _record(session: Session, values: dict, now: datetime) -> None:
    """The message and the outbox job that hands it to the carrier."""
    message_id = session.execute(insert(MESSAGES).returning(MESSAGES.c.id), values).scalar_one()
    outbox.enqueue(session, kind="api_sms", payload={"message_id": message_id}, now=now)


def redact_in(session: Session, *, msgid: str | None = None, callid: str | None = None, text: str) -> None:
    """Inside the caller's unit: once handed to the carrier, keep `text` in place of an SMS's
    body or a call's text to read out (an OTP code must not stay readable in them)."""
    if msgid is not None:
        session.execute(update(Message).where(Message.msgid == msgid).values(body=text))
    if callid is not None:
        session.execute(update(Call).where(Call.callid == callid).values(tts_message=text))


def message_of(session: Session, *, principal: Principal, msgid: str) -> Message | None:
    """A message sent through a credential of the account, in the credential's mode (not one
    Chotto sent for the account itself, such as a balance alert)."""
    with db.read(session):
        return session.scalars(select(Message).where(Message.msgid == msgid, Message.account_id == principal.account_id,
                                                     Message.mode == principal.mode,
                                                     Message.credential_id.is_not(None))).first()


def messages_of(session: Session, *, principal: Principal, date_filters: list[rules.DateFilter], now: datetime,
                limit: int = 1000) -> list[Message]:
    """The messages of the last 90 days sent in the credential's mode (a test credential never
    sees live messages, nor a live one test messages), newest first: the newest `limit` of
    them, as the list has no pages (a client narrows it with `sent_date`). The messages Chotto
    sent for the account itself (credential NULL: balance alerts) are not the API's."""
    query = select(Message).where(Message.account_id == principal.account_id, Message.mode == principal.mode,
                                  Message.credential_id.is_not(None),
                                  Message.created_at >= now - timedelta(days=rules.HISTORY_DAYS))
    for date_filter in date_filters:
        bounds = date_filter.bounds()
        if bounds is None:
            query = query.where(false())
            continue
        start, end = bounds
        if start is not None:
            query = query.where(Message.created_at >= start)
        if end is not None:
            query = query.where(Message.created_at < end)
    with db.read(session):
        return list(session.scalars(query.order_by(Message.id.desc()).limit(limit)))


# -- voice ---------------------------------------------------------------------------------------


def start_call(*, session: Session, principal: Principal, request: StartCall, idempotency_key: str | None,
               now: datetime, render: Callable[[CallStarted], StoredAnswer],
               daily_cap: int | None = None) -> StoredAnswer:
    """Start one call: ¥50 or a minute's price set aside until it ends. Answers like send_sms."""
    _require(principal, "voice")
    form = validation.Form.of(request)
    caller = form.read("caller", rules.caller_number)
    number = form.read("recipient", partial(rules.phone_number, "recipient"))
    recording = form.read("recording_url", _recording_url, required=False) or ""
    tts = form.read("tts_message", rules.tts_message, required=False) or ""
    if _given(request.recording_url) == _given(request.tts_message):
        form.add("recording_url", "Give either recording_url or tts_message (with tts_lang).")
    language = ""
    if _given(request.tts_message) or _given(request.tts_lang):
        language = form.read("tts_lang", rules.tts_language, required=_given(request.tts_message)) or ""
    callback = form.read("callbackurl", rules.callback_url, required=False)
    tags = form.read("tags", rules.tags_of, required=False, lists=True)
    idempotency_key = form.check(rules.idempotency_key, idempotency_key)
    _refuse_if_invalid(session, principal, form, number, Product.VOICE)
    fingerprint = request_hash(op="call", credential=principal.credential_id, mode=principal.mode, caller=caller,
                               recipient=number.e164, recording=recording, tts=tts, language=language,
                               callback=callback, tags=tags)

    def work(state, lots) -> CallStarted:
        return call_in(session, principal, state, lots, caller=caller, number=number, tts=tts, language=language,
                       recording=recording, callback=callback, tags=tags, now=now, daily_cap=daily_cap)

    return _idempotent(session, principal, idempotency_key, fingerprint, now, work, render)


def call_in(session: Session, principal: Principal, state: ledger.State, lots: list[ledger.LiveLot], *, caller: str,
            number: rules.Number, tts: str, language: str, now: datetime, recording: str = "",
            callback: str | None = None, tags: list[str] = (), daily_cap: int | None = None,
            product: UsageProduct = UsageProduct.VOICE, site_id: int | None = None) -> CallStarted:
    """Queue one call inside the caller's unit of work, the account locked by the caller: a
    live call sets ¥50 or a minute's price aside until it ends. Shared with the OTP product
    (`UsageProduct.OTP_CALL` with the code's `site_id`: a code read out, or its fallback call)."""
    _check_destination(session, principal, number, "recipient")
    unit_price = _price(session, Product.VOICE, number.country, "recipient")
    callid = secrets.token_hex(16)
    hold_id = None
    if principal.mode == "live":
        hold = rules.call_hold(unit_price)
        hold_id = ledger.hold_in(session, state, lots, amount=hold, key=f"call:{callid}", reason=f"call {callid}",
                                 now=now, lifetime=CALL_HOLD_LIFETIME).id
        counters = spend.keys(account_id=principal.account_id, credential_id=principal.credential_id, at=now)
        _check_limits(principal, spend.add(session, counters, hold), daily_cap)  # the whole hold, until it ends
    call = Call(callid=callid, account_id=principal.account_id, credential_id=principal.credential_id,
                mode=principal.mode, product=product, otp_site_id=site_id, caller=caller, recipient=number.e164, country=number.country,
                tts_message=tts or None, tts_lang=language or None, recording_url=recording or None,
                unit_price=unit_price, hold_id=hold_id, status=CallStatus.QUEUED, tags=",".join(tags),
                callback_url=callback, created_at=now)
    session.add(call)
    session.flush()
    outbox.enqueue(session, kind="api_call", payload={"call_id": call.id}, now=now)
    return CallStarted(callid)


def _given(value: Given) -> bool:
    return bool(str(value or "").strip())


def _recording_url(raw: str | None) -> str | None:
    try:
        return rules.callback_url(raw)
    except InvalidField:
        raise InvalidField("recording_url", "Enter the http:// or https:// address of an MP3 file.") from None


def call_of(session: Session, *, principal: Principal, callid: str) -> Call | None:
    with db.read(session):
        return session.scalars(select(Call).where(Call.callid == callid, Call.account_id == principal.account_id,
                                                  Call.mode == principal.mode)).first()


def credits_of(session: Session, *, principal: Principal, now: datetime) -> queries.Summary:
    """The account's available and held credit and its live lots."""
    with db.read(session):
        return queries.summary(session, account_id=principal.account_id, now=now)
