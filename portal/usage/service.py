"""The usage history's public services: one read unit each (the export's stream one short
read unit per batch), keyword-only, no Flask. The pages import everything from here."""

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import date, datetime

from sqlalchemy import select
from sqlmodel import Session

from portal import db
from portal.accounts.models import Account
from portal.usage import export as csv_export
from portal.usage import queries, retention, statement
from portal.usage.queries import (Breakdown, CallbackAnswer, Choice, Choices, DayTotal, Detail, Page, Share, Step,
                                  Totals, UsageRow)
from portal.usage.rules import Filters, InvalidFilter, Position, filters_from
from portal.usage.statement import Statement, StatementLine

__all__ = ["Breakdown", "CallbackAnswer", "Choice", "Choices", "DayTotal", "Detail", "Filters", "InvalidFilter",
           "Page", "Share", "Statement", "StatementLine", "Step", "Totals", "UsageRow", "breakdown", "choices",
           "daily", "detail", "export", "export_filename", "filters_from", "monthly_statement", "page", "purge",
           "totals"]

MAX_PAGE = 200


def page(session: Session, *, account_id: int, filters: Filters, after: str | None, limit: int = 50, role: str,
         now: datetime) -> Page:
    """One page of the account's usage, newest first, continuing after the cursor `after`
    (InvalidFilter for a cursor that is not one). Every role sees numbers masked in the list;
    `role` and `now` are taken so that the list and the detail are called alike."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidFilter("limit", f"Show between 1 and {MAX_PAGE} rows.")
    with db.read(session):
        return queries.page(session, account_id, filters, after, limit)


def totals(session: Session, *, account_id: int, filters: Filters) -> Totals:
    with db.read(session):
        return queries.totals(session, account_id, filters)


def daily(session: Session, *, account_id: int, filters: Filters) -> list[DayTotal]:
    """Every day of the range, days without usage as zeros."""
    with db.read(session):
        return queries.daily(session, account_id, filters)


def breakdown(session: Session, *, account_id: int, filters: Filters) -> Breakdown:
    with db.read(session):
        return queries.breakdown(session, account_id, filters)


def choices(session: Session, *, account_id: int) -> Choices:
    with db.read(session):
        return queries.choices(session, account_id)


def detail(session: Session, *, account_id: int, kind: str, ref: str, role: str) -> Detail | None:
    """One message or call of the account (None if it is not the account's): its timeline,
    cost, credential and callbacks; the full number for owners and developers only."""
    with db.read(session):
        return queries.detail(session, account_id, kind, ref, role)


def export_filename(filters: Filters) -> str:
    return csv_export.filename(filters)


def export(sessions: Callable[[], AbstractContextManager[Session]], *, account_id: int, filters: Filters,
           batch: int = csv_export.BATCH) -> Iterator[bytes]:
    """The CSV of every row the filters match, oldest first, as chunks of bytes.

    `sessions` opens a session of its own for each read (pass `db.job_session`, and wrap the
    generator in Flask's `stream_with_context` so it may reach the app's engine), so the
    request's own session stays free for whatever the view still does. Nothing is read before
    the first chunk is asked for.

    No transaction stays open while the client reads: the rows are read in keyset batches of
    `batch` (by created_at, table, id), each batch a short read transaction of its own whose
    connection goes back to the pool before the batch is handed on. What the export holds
    consistent: the account's language, its credential and site names and, per table, the
    highest id of the account's rows are read at the start; a row written after that (a higher
    id) is left out, so a busy account's file ends where the download began, and every row
    appears exactly once (a row's created_at and id never change). A row that changes while the
    file is read (a message delivered or refunded, a call ending) shows what it was when its
    batch was read: the batches already sent keep the earlier state, the ones not yet read show
    the later one. A row purged meanwhile (older than 13 months) is missing if its batch had
    not been read yet."""
    with sessions() as session, db.read(session):
        language = str(session.scalar(select(Account.language).where(Account.id == account_id)) or "en")
        credentials, sites = queries.names(session, account_id)
        bound = queries.last_ids(session, account_id, filters)
    yield csv_export.header(language)
    after = None
    while True:
        with sessions() as session, db.read(session):
            query = queries.oldest_first(session, account_id, filters, bound=bound, after=after, limit=batch)
            rows = session.execute(query).all() if query is not None else []
        if rows:
            yield b"".join(csv_export.lines(rows, credentials=credentials, sites=sites, language=language))
        if len(rows) < batch:
            return
        last = rows[-1]
        after = Position(last.created_at, last.src, last.id)


def monthly_statement(session: Session, *, account_id: int, month: date) -> Statement:
    """The 利用明細 of the Japan-time month `month` falls in."""
    with db.read(session):
        return statement.monthly(session, account_id, month)


def purge(session: Session, *, now: datetime, batch: int = 5000) -> int:
    """Delete usage older than 13 months in bounded batches (the worker's daily pass)."""
    return retention.purge(session, now=now, batch=batch)
