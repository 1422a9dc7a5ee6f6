"""The express send (PostgreSQL): a live SMS in the plain case, authenticated, paid, recorded
and queued by one call of the database function express_sms (migration 0020), a transaction
of its own, so one round trip with its commit and no ORM. The plain case: valid fields, no
Idempotency-Key, a priced destination, and in the database a live credential with the sms
scope and without an IP allow-list, an account that has bought credit and may send to the
country, no lot due to be written off, enough credit, no balance threshold moving and the
spending limits kept.

Anything else answers NotPlain, having written nothing: the caller then sends through
`service.send_sms`, which knows every rule and gives every refusal its answer. Both write the
same rows (tests/api/test_express_send.py compares them). The function repeats, in SQL, the
ledger's burn order and write-off rules (`ledger.rules.burn_key`, `is_live`, `is_due`), the
threshold moves (`ledger.writes._thresholds_moved`) and the spending limits
(`service._check_limits`): a change to one of those is a change to migration 0020's function."""

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import psycopg
from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect

from portal.credentials.service import IP_LENGTH, LAST_USED_EVERY
from portal.ledger.steps import fingerprint
from portal.messaging import rules, spend
from portal.messaging.api_models import Message, Product
from portal.messaging.service import PRICE_COLUMNS, SendSms, Sent, _parts, price_table
from portal.messaging.validation import Form

log = logging.getLogger("portal.messaging")

_PARAMETERS = ("sid", "digest", "now", "msgid", "recipient", "country", "sender", "body", "encoding", "segments", "tags",
               "callback_url", "cost", "request_hash", "reason", "day", "month", "daily_cap", "used_before", "ip")


def _compiled(statement) -> bytes:
    """A Core statement as psycopg runs it (named %(parameters)s), compiled once."""
    return str(statement.compile(dialect=psycopg_dialect())).encode()


EXPRESS_SMS = _compiled(select(func.express_sms(*map(bindparam, _PARAMETERS)).table_valued("message_id")))
_PRICES = _compiled(select(*PRICE_COLUMNS))
_SENT = _compiled(select(Message.id).where(Message.msgid == bindparam("msgid")))


@dataclass(frozen=True)
class NotPlain:
    """Not the plain case; nothing was written. `by_database`: the credential's or the
    account's state said so (likely again for a while), not this request's own fields."""

    by_database: bool


class InDoubt(Exception):
    """The connection was lost while the database ran the send: it may have been committed.
    The msgid it would have is known; `sent` tells, on a connection of its own."""

    def __init__(self, msgid: str):
        super().__init__(f"connection lost during the express send of {msgid}")
        self.msgid = msgid


def send_sms(*, connection: psycopg.Connection, prices: str, sid: str, digest: str, request: SendSms, ip: str,
             now: datetime, daily_cap: int | None) -> Sent | NotPlain:
    """The SMS sent in one statement on `connection` (a psycopg connection in autocommit), or
    NotPlain with nothing written. `prices` names the price cache (the database's URL, as
    `service._price` keys it). InDoubt when the connection is lost during the statement."""
    form = Form.of(request)
    number = form.read("recipient", partial(rules.phone_number, "recipient"))
    sender = form.read("sender", rules.sender_id)
    split = form.read("message", _parts)
    callback = form.read("callbackurl", rules.callback_url, required=False)
    tags = form.read("tags", rules.tags_of, required=False, lists=True)
    if form.errors:
        return NotPlain(by_database=False)
    unit_price = price_table(prices, lambda: connection.execute(_PRICES)).get((Product.SMS, number.country))
    if unit_price is None:
        return NotPlain(by_database=False)
    cost = unit_price * split.parts
    msgid = secrets.token_hex(16)
    reason = f"SMS {msgid}"
    day, month = spend.periods(now)
    try:
        row = connection.execute(EXPRESS_SMS, {
            "sid": sid, "digest": digest, "now": now, "msgid": msgid, "recipient": number.e164,
            "country": number.country, "sender": sender, "body": request.message, "encoding": split.encoding.value,
            "segments": split.parts, "tags": ",".join(tags or ()), "callback_url": callback, "cost": cost,
            "request_hash": fingerprint(op="debit", amount=cost, reason=reason), "reason": reason, "day": day,
            "month": month, "daily_cap": daily_cap, "used_before": now - LAST_USED_EVERY, "ip": ip[:IP_LENGTH],
        }, prepare=True).fetchone()
    except psycopg.Error as error:
        if connection.closed or connection.broken:
            raise InDoubt(msgid) from error
        # the statement failed and, in autocommit, was rolled back: a bug or a database behind
        # this code (migration 0020 missing), not the customer's: the general path sends
        log.error("express send failed, sent the general way instead: %s sqlstate=%s", type(error).__name__,
                  getattr(error, "sqlstate", None))
        return NotPlain(by_database=False)
    return Sent(msgid) if row is not None else NotPlain(by_database=True)


def sent(*, connection: psycopg.Connection, msgid: str) -> bool:
    """Whether the message `msgid` was recorded (an InDoubt send looked up afterwards)."""
    return connection.execute(_SENT, {"msgid": msgid}).fetchone() is not None
