"""What rides with an SMS's debit: the message, the outbox job that hands it to the carrier,
and the spend counters, written in the debit's own statement on PostgreSQL (see
`portal.ledger.writes.Rider`), composed from the table definitions."""

from collections.abc import Callable, Sequence
from functools import partial

from sqlalchemy import String, Table, bindparam, cast, insert, literal, select
from sqlalchemy.sql.selectable import CTE
from sqlmodel import Session

from portal import outbox
from portal.ledger import service as ledger
from portal.messaging import spend
from portal.messaging.api_models import Message

MESSAGES, OUTBOX = Message.__table__, outbox.OutboxMessage.__table__
SMS_JOB = outbox.OutboxKind.API_SMS
_MESSAGE_COLUMNS = [column for column in MESSAGES.c if not column.primary_key]


def _message_job_and_counters(line: CTE) -> ledger.RiderRows:
    """The message (every column but the id, from the parameters `r_<column>`), its outbox job
    and two spend counters (the account's day, the credential's month); their new totals are read back."""
    return _message_job_and(line, 2)


def _message_job_and_account_counter(line: CTE) -> ledger.RiderRows:
    """The same with the account's day counter only: a message Chotto sends for the account
    itself (no credential)."""
    return _message_job_and(line, 1)


def _message_job_and(line: CTE, count: int) -> ledger.RiderRows:
    values = {column.name: bindparam(f"r_{column.name}", type_=column.type) for column in _MESSAGE_COLUMNS}
    message = insert(MESSAGES).values(values).returning(MESSAGES.c.id).cte("message")
    payload = literal('{"message_id": ') + cast(message.c.id, String) + literal("}")  # as outbox.enqueue writes it
    created = values["created_at"]
    job = insert(OUTBOX).from_select(
        [OUTBOX.c.kind, OUTBOX.c.payload, OUTBOX.c.created_at, OUTBOX.c.available_at, OUTBOX.c.attempts],
        select(literal(SMS_JOB), payload, created, created, literal(0)).select_from(message),
    ).returning(OUTBOX.c.id).cte("job")
    counters, totals = spend.ctes(count)
    return ledger.RiderRows([message, job, *counters], totals)


def sms_debit(values: dict, counters: list[tuple[str, str]], cost: int,
              fallback: Callable[[Session], Sequence]) -> ledger.Rider:
    """The rider of an SMS's debit: `values` are the message's columns (a column left out is
    NULL, as in a plain INSERT); `fallback` writes the same rows on other databases and
    returns the counters' new totals."""
    params = {f"r_{column.name}": values.get(column.name) for column in _MESSAGE_COLUMNS}
    if len(counters) == 1:
        return ledger.Rider("sms_for_account", _message_job_and_account_counter, params | spend.params(counters, cost),
                            fallback)
    return ledger.Rider("sms", _message_job_and_counters, params | spend.params(counters, cost), fallback)


def _message_job_counters_and(table: Table, line: CTE) -> ledger.RiderRows:
    """_message_job_and_counters with one row of `table` (every column but the id, from the
    parameters `a_<column>`), whose id is read back after the counters' totals."""
    rows = _message_job_and(line, 2)
    values = {column.name: bindparam(f"a_{column.name}", type_=column.type) for column in _columns(table)}
    also = insert(table).values(values).returning(*table.primary_key.columns).cte(f"also_{table.name}")
    return ledger.RiderRows([*rows.ctes, also], [*rows.columns, select(*also.c).scalar_subquery().label("also_id")])


def _columns(table: Table) -> list:
    return [column for column in table.c if not column.primary_key]


def sms_debit_and(table: Table, also: dict, values: dict, counters: list[tuple[str, str]], cost: int,
                  fallback: Callable[[Session], Sequence]) -> ledger.Rider:
    """sms_debit (a credential's send: both counters) with a row of `table` (`also`, its columns
    but the id) in the same statement; `fallback` returns the counters' totals and the row's id."""
    params = {f"r_{column.name}": values.get(column.name) for column in _MESSAGE_COLUMNS}
    params |= {f"a_{column.name}": also.get(column.name) for column in _columns(table)}
    build = _BUILDS.setdefault(table.name, partial(_message_job_counters_and, table))  # one per name
    return ledger.Rider(f"sms_and_{table.name}", build, params | spend.params(counters, cost), fallback)


_BUILDS: dict[str, Callable[[CTE], ledger.RiderRows]] = {}
