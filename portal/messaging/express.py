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
from sqlalchemy import bindparam, column, func, literal_column, select, table
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
    """The connection was lost while the database ran the send: it may have been committed, or
    be committed still (the server process goes on until it notices). `settle` tells which."""

    def __init__(self, msgid: str, server_pid: int):
        super().__init__(f"connection lost during the express send of {msgid}")
        self.msgid, self.server_pid = msgid, server_pid


# A statement that fails on a healthy connection was rolled back (autocommit). These classes
# mean the database is behind this code (migration 0020 missing, a column renamed): the general
# path can still send. Any other error (a timeout, a lock not granted, a constraint) is raised.
BEHIND_THE_CODE = ("42", "0A")


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
    server_pid = connection.info.backend_pid
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
            raise InDoubt(msgid, server_pid) from error
        if not (error.sqlstate or "").startswith(BEHIND_THE_CODE):
            raise
        log.error("express send failed, sent the general way instead: %s sqlstate=%s", type(error).__name__,
                  error.sqlstate)
        return NotPlain(by_database=False)
    return Sent(msgid) if row is not None else NotPlain(by_database=True)


# The server process of a lost connection, ended before the lookup (waiting up to 3 s): until
# then it may still be waiting for the account's lock and commit the send after a lookup.
_ACTIVITY = table("pg_stat_activity", column("pid"), column("state"), column("query"))
_OURS = (_ACTIVITY.c.pid == bindparam("pid"), _ACTIVITY.c.query.like(literal_column("'%express_sms(%'")))
_END = _compiled(select(func.pg_terminate_backend(_ACTIVITY.c.pid, literal_column("3000"))).where(*_OURS))
_RUNNING = _compiled(select(_ACTIVITY.c.pid).where(*_OURS, _ACTIVITY.c.state != literal_column("'idle'")))


def settle(*, connection: psycopg.Connection, doubt: InDoubt) -> bool | None:
    """On a connection of its own: whether the InDoubt send was committed (True) or never will
    be (False: its server process is gone), None when that cannot be told yet."""
    connection.execute(_END, {"pid": doubt.server_pid})
    if connection.execute(_SENT, {"msgid": doubt.msgid}).fetchone() is not None:
        return True
    still = connection.execute(_RUNNING, {"pid": doubt.server_pid}).fetchone()
    return None if still is not None else False

