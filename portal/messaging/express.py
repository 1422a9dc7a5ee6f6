"""The express send (PostgreSQL): a live SMS in the plain case, authenticated, paid, recorded
and queued by one call of the database function express_sms (migration 0020), a transaction
of its own, so one round trip with its commit and no ORM. The plain case: valid fields, no
Idempotency-Key, the unit price in this process's price cache, and in the database a live
credential without an IP allow-list, an account that has bought credit, no lot due to be
written off, enough credit, no balance threshold crossed and the spending limits kept.

Anything else, and anything the function finds not plain, answers None having written
nothing: the caller then sends through `service.send_sms`, which knows every rule and gives
every refusal its answer. Both write the same rows (tests/integration/test_express_send.py
compares them); the burn order lives in the function as `ledger.rules.burn_key`."""

import secrets
from datetime import datetime
from functools import partial

from portal.credentials.service import IP_LENGTH, LAST_USED_EVERY
from portal.ledger.steps import fingerprint
from portal.messaging import rules, spend
from portal.messaging.api_models import Product
from portal.messaging.service import SendSms, Sent, cached_price, _parts
from portal.messaging.validation import Form

_PARAMETERS = ("sid", "digest", "now", "msgid", "recipient", "country", "sender", "body", "encoding", "segments", "tags",
               "callback_url", "cost", "request_hash", "reason", "day", "month", "daily_cap", "used_before", "ip")
EXPRESS_SMS = ("SELECT message_id FROM express_sms("
               + ", ".join(f"%({name})s" for name in _PARAMETERS) + ")").encode()


def send_sms(*, connection, prices: str, sid: str, digest: str, request: SendSms, ip: str, now: datetime,
             daily_cap: int | None) -> Sent | None:
    """The SMS sent in one statement on `connection` (a psycopg connection in autocommit), or
    None when it is not the plain case, nothing written. `prices` names the price cache (the
    database's URL, as `service._price` keys it)."""
    form = Form.of(request)
    number = form.read("recipient", partial(rules.phone_number, "recipient"))
    sender = form.read("sender", rules.sender_id)
    split = form.read("message", _parts)
    callback = form.read("callbackurl", rules.callback_url, required=False)
    tags = form.read("tags", rules.tags_of, required=False, lists=True)
    if form.errors:
        return None
    unit_price = cached_price(prices, Product.SMS, number.country)
    if unit_price is None:
        return None
    cost = unit_price * split.parts
    msgid = secrets.token_hex(16)
    reason = f"SMS {msgid}"
    day, month = spend.periods(now)
    row = connection.execute(EXPRESS_SMS, {
        "sid": sid, "digest": digest, "now": now, "msgid": msgid, "recipient": number.e164, "country": number.country,
        "sender": sender, "body": request.message, "encoding": split.encoding.value, "segments": split.parts,
        "tags": ",".join(tags or ()), "callback_url": callback, "cost": cost,
        "request_hash": fingerprint(op="debit", amount=cost, reason=reason), "reason": reason, "day": day,
        "month": month, "daily_cap": daily_cap, "used_before": now - LAST_USED_EVERY, "ip": ip[:IP_LENGTH],
    }, prepare=True).fetchone()
    return Sent(msgid) if row is not None else None
