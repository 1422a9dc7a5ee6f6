"""Sending through the customer API: each send is validated, priced, paid and recorded in
one transaction that locks the account's credit row first (with the idempotency record and
the outbox job that hands it to the carrier), then delivered by the worker.

Test credentials go through every check and land in the test inbox, but charge nothing."""

import hashlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import false, insert, select
from sqlmodel import Session

from portal import outbox
from portal.accounts.models import Membership, User
from portal.clock import JST
from portal.credentials.service import Principal
from portal.ledger import service as ledger
from portal.ledger.rules import MILLI_YEN
from portal.messaging import riders, rules, segments, spend, validation
from portal.messaging.api_models import ApiIdempotency, Call, Message, Price

log = logging.getLogger("portal.messaging")
IDEMPOTENCY_RETENTION = timedelta(hours=24)
CALL_HOLD_LIFETIME = timedelta(hours=24)  # longer than any queue plus the longest call


class KeyReused(Exception):
    """The Idempotency-Key was used before with a different request."""


class Refused(Exception):
    """An answer other than success: `status` and a JSON `body` in the API's error shapes."""

    def __init__(self, status: int, body: dict):
        super().__init__(status)
        self.status, self.body = status, body


@dataclass(frozen=True)
class Answer:
    status: int
    body: str  # JSON text, replayed byte for byte


def request_hash(**fields) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def yen(milli: int) -> float:
    return milli / MILLI_YEN


# -- the shared frame of a paid request ---------------------------------------------------------


def _idempotent(session: Session, principal: Principal, key: str | None, fingerprint: str, now: datetime, work) -> Answer:
    """Lock the account, replay a stored answer for `key`, or run `work` (which returns the
    answer and changes the database) and store its answer in the same transaction."""
    state, lots = ledger.lock(session, principal.account_id)
    if key:
        stored = session.scalars(select(ApiIdempotency).where(ApiIdempotency.account_id == principal.account_id,
                                                              ApiIdempotency.key == key)).first()
        if stored is not None and stored.created_at <= now - IDEMPOTENCY_RETENTION:
            session.delete(stored)
            session.flush()
            stored = None
        if stored is not None:
            session.commit()
            if stored.request_hash != fingerprint:
                raise KeyReused(key)
            return Answer(stored.status, stored.body)
    try:
        answer = work(state, lots)
    except Exception:  # refused, invalid or short of credit: nothing of this request stays
        session.rollback()
        raise
    if key:
        session.add(ApiIdempotency(account_id=principal.account_id, key=key, request_hash=fingerprint,
                                   status=answer.status, body=answer.body, created_at=now))
    session.commit()
    return answer


_PRICES: dict[str, tuple[float, dict[tuple[str, str], int]]] = {}
PRICE_CACHE_SECONDS = 10.0


def _price(session: Session, product: str, country: str, field: str) -> int:
    """A unit price from the price table, read at most every 10 seconds per process (prices
    change rarely; the hot path saves a round trip)."""
    url = str(session.get_bind().url)
    loaded_at, table = _PRICES.get(url, (0.0, {}))
    if time.monotonic() - loaded_at > PRICE_CACHE_SECONDS:
        rows = session.execute(select(Price.product, Price.country, Price.unit_price))
        table = {(product, country): price for product, country, price in rows}
        _PRICES[url] = (time.monotonic(), table)
    price = table.get((product, country))
    if price is None:
        raise rules.Invalid(field, f"Sending to {country} is not available.")
    return price


def _check_destination(session: Session, principal: Principal, number: rules.Number, field: str) -> None:
    if number.country not in principal.allowed_countries:
        raise rules.Invalid(field, f"Sending to {number.country} is not enabled for this account.")
    if principal.mode == "test" or principal.has_purchased:
        return
    own = session.scalars(select(User.phone_e164).join(Membership, Membership.user_id == User.id).where(
        Membership.account_id == principal.account_id, User.phone_verified_at.is_not(None))).all()
    if number.e164 not in own:
        raise rules.Invalid(field, "Until the first purchase, live messages go only to the account's verified "
                                   "mobile numbers.")


def _check_limits(principal: Principal, totals: list[int], daily_cap: int | None) -> None:
    """After the spending is counted (the account is locked, so the totals are exact): over a
    limit, the caller's transaction is rolled back and nothing was spent."""
    day_total, month_total = totals
    if daily_cap is not None and day_total > daily_cap:
        raise Refused(403, {"detail": f"This account's daily spend limit of ¥{daily_cap // MILLI_YEN:,} would be "
                                      "exceeded. Ask support to raise it."})
    if principal.monthly_cap is not None and month_total > principal.monthly_cap:
        raise Refused(403, {"detail": f"This credential's monthly spend cap of ¥{principal.monthly_cap // MILLI_YEN:,} "
                                      "would be exceeded."})


def _require(principal: Principal, scope: str) -> None:
    if scope not in principal.scopes:
        raise Refused(403, {"detail": f"This credential does not have the {scope} scope."})


def _refuse_if_invalid(session: Session, principal: Principal, form: validation.Form, number: rules.Number | None,
                       product: str) -> None:
    """Refuse a request with invalid fields, naming every one: a well-formed recipient is
    checked against the account's destinations too (what a valid request learns under the lock)."""
    if not form.errors:
        return
    if number is not None:
        form.check(_check_destination, session, principal, number, "recipient")
        if "recipient" not in form.errors:
            form.check(_price, session, product, number.country, "recipient")
        session.rollback()
    form.raise_if_invalid()


# -- SMS -----------------------------------------------------------------------------------------


def send_sms(*, session: Session, principal: Principal, fields: dict, idempotency_key: str | None, base_url: str,
             now: datetime, daily_cap: int | None = None) -> Answer:
    _require(principal, "sms")
    form = validation.Form(fields)
    number = form.read("recipient", partial(rules.phone_number, "recipient"))
    sender = form.read("sender", rules.sender_id)
    split = form.read("message", _parts)
    callback = form.read("callbackurl", rules.callback_url, required=False)
    tags = form.read("tags", rules.tags_of, required=False, lists=True)
    idempotency_key = form.check(rules.idempotency_key, idempotency_key)
    _refuse_if_invalid(session, principal, form, number, "sms")
    body = fields["message"]
    fingerprint = request_hash(op="sms", credential=principal.credential_id, mode=principal.mode, recipient=number.e164,
                               sender=sender, message=body, callback=callback, tags=tags)

    def work(state, lots) -> Answer:
        _check_destination(session, principal, number, "recipient")
        cost = _price(session, "sms", number.country, "recipient") * split.parts if principal.mode == "live" else 0
        msgid = secrets.token_hex(16)
        values = dict(msgid=msgid, account_id=principal.account_id, credential_id=principal.credential_id,
                      mode=principal.mode, sender=sender, recipient=number.e164, country=number.country, body=body,
                      encoding=split.encoding, segments=split.parts, cost=cost, status="QUEUED", tags=",".join(tags),
                      callback_url=callback, created_at=now, updated_at=now)
        if cost:  # the message, its delivery job and the spend counters ride in the debit's statement
            counters = spend.keys(account_id=principal.account_id, credential_id=principal.credential_id, at=now)

            def fallback(db):
                _record(db, values, now)
                return spend.add(db, counters, cost)

            rider = riders.sms_debit(values, counters, cost, fallback)
            ledger.debit_in(session, state, lots, amount=cost, key=f"sms:{msgid}", reason=f"SMS {msgid}", now=now,
                            rider=rider)
            _check_limits(principal, rider.results, daily_cap)
        else:
            _record(session, values, now)
        return Answer(201, json.dumps([{"msgid": msgid}]))

    return _idempotent(session, principal, idempotency_key, fingerprint, now, work)


def _parts(body: str) -> segments.Split:
    try:
        return segments.split(body)
    except segments.TooLong as error:
        raise rules.Invalid("message", f"The message needs {error.parts} parts; at most {segments.MAX_PARTS}.") from None


MESSAGES, OUTBOX = Message.__table__, outbox.OutboxMessage.__table__


def _record(session: Session, values: dict, now: datetime) -> None:
    """The message and the outbox job that hands it to the carrier."""
    message_id = session.execute(insert(MESSAGES).returning(MESSAGES.c.id), values).scalar_one()
    outbox.enqueue(session, kind="api_sms", payload={"message_id": message_id}, now=now)


def message_json(message: Message, base_url: str) -> dict:
    return {
        "msgid": message.msgid, "status": message.status,
        "sent_time": message.created_at.astimezone(JST).strftime("%Y-%m-%d %H:%M:%S"),
        "cost": yen(message.cost), "sender": message.sender, "recipient": message.recipient,
        "url": f"{base_url}/sms/messages/{message.msgid}/", "tags": [t for t in message.tags.split(",") if t],
        "segments": message.segments, "encoding": message.encoding, "test": message.mode == "test",
        "status_time": message.updated_at.astimezone(JST).strftime("%Y-%m-%d %H:%M:%S"),
    }


def message_of(session: Session, *, principal: Principal, msgid: str) -> Message | None:
    found = session.scalars(select(Message).where(Message.msgid == msgid, Message.account_id == principal.account_id,
                                                  Message.mode == principal.mode)).first()
    session.commit()
    return found


def messages_of(session: Session, *, principal: Principal, date_filters: list[rules.DateFilter], now: datetime,
                limit: int = 1000) -> list[Message]:
    """The messages of the last 90 days sent in the credential's mode (a test credential never
    sees live messages, nor a live one test messages), newest first."""
    query = select(Message).where(Message.account_id == principal.account_id, Message.mode == principal.mode,
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
    rows = session.scalars(query.order_by(Message.id.desc()).limit(limit)).all()
    session.commit()
    return list(rows)


# -- voice ---------------------------------------------------------------------------------------


def start_call(*, session: Session, principal: Principal, fields: dict, idempotency_key: str | None, now: datetime,
               daily_cap: int | None = None) -> Answer:
    _require(principal, "voice")
    form = validation.Form(fields)
    caller = form.read("caller", rules.caller_number)
    number = form.read("recipient", partial(rules.phone_number, "recipient"))
    recording = form.read("recording_url", _recording_url, required=False) or ""
    tts = form.read("tts_message", rules.tts_message, required=False) or ""
    if _given(fields, "recording_url") == _given(fields, "tts_message"):
        form.add("recording_url", "Give either recording_url or tts_message (with tts_lang).")
    language = ""
    if _given(fields, "tts_message") or _given(fields, "tts_lang"):
        language = form.read("tts_lang", rules.tts_language, required=_given(fields, "tts_message")) or ""
    callback = form.read("callbackurl", rules.callback_url, required=False)
    tags = form.read("tags", rules.tags_of, required=False, lists=True)
    idempotency_key = form.check(rules.idempotency_key, idempotency_key)
    _refuse_if_invalid(session, principal, form, number, "voice")
    fingerprint = request_hash(op="call", credential=principal.credential_id, mode=principal.mode, caller=caller, recipient=number.e164, recording=recording, tts=tts,
                               language=language, callback=callback, tags=tags)

    def work(state, lots) -> Answer:
        _check_destination(session, principal, number, "recipient")
        unit_price = _price(session, "voice", number.country, "recipient")
        callid = secrets.token_hex(16)
        hold_id = None
        if principal.mode == "live":
            hold = rules.call_hold(unit_price)
            hold_id = ledger.hold_in(session, state, lots, amount=hold, key=f"call:{callid}", reason=f"call {callid}",
                                     now=now, lifetime=CALL_HOLD_LIFETIME).id
            counters = spend.keys(account_id=principal.account_id, credential_id=principal.credential_id, at=now)
            _check_limits(principal, spend.add(session, counters, hold), daily_cap)  # the whole hold, until it ends
        call = Call(callid=callid, account_id=principal.account_id, credential_id=principal.credential_id,
                    mode=principal.mode, caller=caller, recipient=number.e164, country=number.country,
                    tts_message=tts or None, tts_lang=language or None, recording_url=recording or None,
                    unit_price=unit_price, hold_id=hold_id, status="QUEUED", tags=",".join(tags), callback_url=callback,
                    created_at=now)
        session.add(call)
        session.flush()
        outbox.enqueue(session, kind="api_call", payload={"call_id": call.id}, now=now)
        return Answer(201, json.dumps([{"callid": callid}]))

    return _idempotent(session, principal, idempotency_key, fingerprint, now, work)


def _given(fields: dict, name: str) -> bool:
    return bool(str(fields.get(name) or "").strip())


def _recording_url(raw: str | None) -> str | None:
    try:
        return rules.callback_url(raw)
    except rules.Invalid:
        raise rules.Invalid("recording_url", "Enter the http:// or https:// address of an MP3 file.") from None


def call_json(call: Call) -> dict:
    def local(moment):
        return moment.astimezone(JST).strftime("%Y-%m-%d %H:%M:%S") if moment else None

    return {"callid": call.callid, "status": call.status, "duration": call.duration,
            "cost": yen(call.cost) if call.ended_at else 0.0,
            "caller": call.caller, "recipient": call.recipient, "start_time": local(call.started_at),
            "end_time": local(call.ended_at), "tags": [t for t in call.tags.split(",") if t],
            "test": call.mode == "test"}


def call_of(session: Session, *, principal: Principal, callid: str) -> Call | None:
    found = session.scalars(select(Call).where(Call.callid == callid, Call.account_id == principal.account_id,
                                               Call.mode == principal.mode)).first()
    session.commit()
    return found


def credits_of(session: Session, *, principal: Principal, now: datetime) -> dict:
    from portal.ledger import queries

    summary = queries.summary(session, account_id=principal.account_id, now=now)
    session.commit()
    return {"credits": yen(summary.available), "held": yen(summary.held), "lots": [
        {"kind": lot.kind, "remaining": yen(lot.remaining), "expires_at": lot.expires_at.astimezone(JST).isoformat()}
        for lot in summary.live_lots]}
