"""Engine and sessions: one session per request and one per worker job.

SQLite runs in WAL mode and every transaction starts with BEGIN IMMEDIATE, so two writers queue
on the database lock instead of failing with "database is locked" half-way through.
"""

from contextlib import contextmanager
from datetime import timezone

from flask import current_app, g
from sqlalchemy import DateTime, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session


class UTCDateTime(TypeDecorator):
    """Stores UTC, always returns timezone-aware datetimes, refuses naive ones."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        _make_sqlite_serial(engine)
        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        connect_args={"connect_timeout": 5},
    )


def _make_sqlite_serial(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def init_app(app) -> None:
    app.extensions["portal.engine"] = make_engine(app.config["DATABASE_URL"])
    app.teardown_appcontext(_close_request_session)


def engine() -> Engine:
    return current_app.extensions["portal.engine"]


def session() -> Session:
    """The request's (or job's) session, opened on first use."""
    if "db_session" not in g:
        g.db_session = Session(engine(), expire_on_commit=False)
    return g.db_session


def _close_request_session(_exc):
    db_session = g.pop("db_session", None)
    if db_session is not None:
        db_session.close()


@contextmanager
def job_session(bind: Engine | None = None):
    """A session for one unit of work outside a request (worker job, CLI command)."""
    with Session(bind or engine(), expire_on_commit=False) as db_session:
        yield db_session
