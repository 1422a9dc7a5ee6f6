"""Engine and sessions: one session per request and one per worker job.

SQLite runs in WAL mode and every transaction starts with BEGIN IMMEDIATE, so two writers queue
on the database lock instead of failing with "database is locked" half-way through.

PostgreSQL fails fast when it cannot answer (connect and statement timeouts, TCP keepalives, a
short wait for a pooled connection), so a request gets a 503 within seconds instead of hanging;
a connection found dead is invalidated with its pool, so the next request connects afresh.
Neither engine puts statement parameters into its errors (they carry phone numbers and bodies).
"""

import re
import select as select_module
import sqlite3
import traceback
from contextlib import contextmanager
from datetime import timezone
from enum import StrEnum

import psycopg
from flask import current_app, g, has_app_context
from sqlalchemy import Column, DateTime, PrimaryKeyConstraint, String, Table, UniqueConstraint, create_engine, event, exc
from sqlalchemy.engine import Engine
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session, SQLModel


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


def utc_column(nullable: bool = False) -> Column:
    """A timezone-aware UTC timestamp column, the only kind of time the tables store."""
    return Column(UTCDateTime(), nullable=nullable)


class EnumText(TypeDecorator):
    """A name from a closed set (a StrEnum) stored as its text and read back as the member: a
    value outside the set fails when it is read, never passes on as a plain string."""

    impl = String
    cache_ok = True

    def __init__(self, enum: type[StrEnum], length: int):
        super().__init__(length)
        self.enum = enum

    def process_result_value(self, value, dialect):
        return None if value is None else self.enum(value)


def enum_column(enum: type[StrEnum], length: int, nullable: bool = False) -> Column:
    """A column holding one of `enum`'s names (a text column of `length` in the schema)."""
    return Column(EnumText(enum, length), nullable=nullable)


CONNECT_TIMEOUT_SECONDS = 3
STATEMENT_TIMEOUT_MS = 4000
POOL_TIMEOUT_SECONDS = 3
SQLITE_BUSY_TIMEOUT_MS = 30000
UNAVAILABLE_SQLITE = ("database is locked", "database table is locked", "disk i/o error", "unable to open database",
                      "database or disk is full")


def make_engine(url: str, *, statement_timeout_ms: int = STATEMENT_TIMEOUT_MS,
                busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS, pre_ping: bool = True) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, hide_parameters=True,
                               connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False})
        _make_sqlite_serial(engine, busy_timeout_ms)
        return engine
    _cache_long_statements()
    engine = create_engine(
        url,
        hide_parameters=True,
        pool_pre_ping=False,  # pinged on checkout unless the request said it retries (_ping_on_checkout)
        pool_size=10,
        max_overflow=20,
        pool_timeout=POOL_TIMEOUT_SECONDS,
        pool_recycle=1800,
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "options": f"-c statement_timeout={statement_timeout_ms}",
            "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 1, "keepalives_count": 3,
            "tcp_user_timeout": (statement_timeout_ms or STATEMENT_TIMEOUT_MS) + 1000,
        },
    )
    if pre_ping:
        _ping_on_checkout(engine)
    _begin_with_first_statement(engine)
    return engine


_NO_PING = "portal_no_pool_ping"


def skip_pool_ping() -> None:
    """For the rest of this request, a pooled connection is not pinged when it is checked out:
    the API's first statement (leading_read) runs once more on a fresh connection instead, a
    round trip fewer on every request. Pages, the worker and commands keep the ping, so a
    restarted server never fails their first statement (the worker marks a delivery sent on a
    checked-out connection after talking to the mail server: a dead one would send it twice)."""
    g.setdefault(_NO_PING, True)


def _ping_on_checkout(engine: Engine) -> None:
    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection, _record, _proxy):
        if has_app_context() and g.get(_NO_PING):
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:  # the pool drops this connection and checks out a fresh one
            raise exc.DisconnectionError() from error


BEGIN_WITH_IT = "portal_begin_with_it"  # an execution option: see _begin_with_first_statement


def _begin_with_first_statement(engine: Engine) -> None:
    """A statement run with the execution option BEGIN_WITH_IT on a connection outside any
    transaction (the API's leading read) is sent with its BEGIN in one pipeline: one exchange
    with the server (one Sync, one ReadyForQuery) instead of two. psycopg itself would send its
    BEGIN with a Sync of its own, pipeline or not; it sends none on a connection in autocommit,
    so the connection is put in autocommit for this statement and the BEGIN is ours. psycopg
    commits and rolls back whatever transaction the server has open, autocommit or not. The
    connection leaves autocommit when it goes back to the pool (a request's session hands it
    back when its transaction ends), and one still in autocommit is never handed out again, so
    nothing else runs outside a transaction. (A "begin" listener would do it too, but any
    connection event makes SQLAlchemy dispatch events on every statement of the engine.)"""
    from psycopg.pq import TransactionStatus

    idle = TransactionStatus.IDLE

    @event.listens_for(engine, "do_execute")
    def _pipelined(cursor, statement, parameters, context):
        raw = cursor.connection
        if not context.execution_options.get(BEGIN_WITH_IT) or raw.pgconn.transaction_status != idle:
            return False  # psycopg begins as usual (or the transaction is already open)
        raw.autocommit = True
        with raw.pipeline():
            raw.execute(b"BEGIN")
            cursor.execute(statement, parameters)
        return True

    def _out_of_autocommit(raw) -> None:
        if raw is not None and not raw.closed and raw.autocommit and raw.pgconn.transaction_status == idle:
            raw.autocommit = False

    @event.listens_for(engine, "checkin")
    def _pooled_in_a_transaction(dbapi_connection, _record):
        _out_of_autocommit(dbapi_connection)

    @event.listens_for(engine, "checkout")
    def _never_in_autocommit(dbapi_connection, _record, _proxy):
        if dbapi_connection.autocommit:  # it could not leave autocommit at checkin: use a fresh one
            raise exc.DisconnectionError("a pooled connection was left in autocommit")


def _cache_long_statements() -> None:
    """psycopg turns a statement's %(name)s placeholders into $n with a regular expression and
    keeps the result only for statements of at most 4096 characters and 50 parameters. The send
    path's one-statement debit and the OTP request's history are longer: each request paid for
    their conversion again (about a third of the OTP request's CPU time in psycopg). Their text
    is the same on every request (compiled once by SQLAlchemy), so caching them is as correct
    as caching the short ones; the limits are psycopg's module settings, raised if present."""
    from psycopg import _queries

    if hasattr(_queries, "MAX_CACHED_STATEMENT_LENGTH") and hasattr(_queries, "MAX_CACHED_STATEMENT_PARAMS"):
        _queries.MAX_CACHED_STATEMENT_LENGTH = max(_queries.MAX_CACHED_STATEMENT_LENGTH, 32_768)
        _queries.MAX_CACHED_STATEMENT_PARAMS = max(_queries.MAX_CACHED_STATEMENT_PARAMS, 256)


def _make_sqlite_serial(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # A read unit never takes the write lock; everything else (write units and any
        # transaction begun outside a unit) takes it at BEGIN, so writers queue instead of failing.
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


READ_ONLY = "portal_read_only"
_DEPTH = "portal.unit_depth"
_LEADING = "portal.leading_read"  # the transaction a leading read left open for the next unit


def leading_read(session: Session, statement, params: dict) -> list:
    """The rows of the first statement of a request (the API's authentication), read so that
    the request's next unit of work continues its transaction on PostgreSQL (a commit and a
    begin fewer on every API request, and the BEGIN is sent with the statement, see
    _begin_with_first_statement; at READ COMMITTED each statement sees what is committed
    when it starts, so the unit sees what it would have seen in a transaction of its own).
    On SQLite it is a read unit of its own: a write unit there must begin with BEGIN IMMEDIATE.

    The API skips the pool's ping (skip_pool_ping): a pooled connection found dead (the server
    restarted since it was last used) fails this first statement, the pool is invalidated, and
    the statement is run once more on a fresh connection. Nothing had been done in the
    transaction."""
    for attempt in (1, 2):
        try:
            if session.get_bind().dialect.name != "postgresql" or session.info.get(_DEPTH, 0):
                with read(session):
                    return session.execute(statement, params).all()
            if session.in_transaction():
                session.commit()
            # Core on the session's connection: the ORM's execute adds nothing to a Core statement
            # but its cost, and a request's session has nothing to flush before its first statement
            rows = session.connection().execute(statement, params, execution_options={BEGIN_WITH_IT: True}).all()
            session.info[_LEADING] = session.get_transaction()
            return rows
        except exc.DBAPIError as error:
            session.rollback()
            if attempt == 2 or not error.connection_invalidated:
                raise
    raise AssertionError("unreachable")


def _end_transaction_before_unit(session: Session) -> bool:
    """A unit runs in a transaction of its own, but continues the one a leading read left open
    (True then)."""
    if not session.in_transaction():
        return False
    if session.info.get(_LEADING) is session.get_transaction() and not (session.new or session.dirty or session.deleted):
        return True
    session.commit()
    return False


@contextmanager
def write(session: Session):
    """One write unit of work: the service's changes are committed once, at the end, or rolled
    back on any error. A unit inside a unit joins the outer one (only the outermost commits);
    a transaction left open before the unit (reads outside any unit) is ended first, so on
    SQLite the unit begins with BEGIN IMMEDIATE and queues behind other writers."""
    depth = session.info.get(_DEPTH, 0)
    if depth:
        yield session
        return
    _end_transaction_before_unit(session)
    session.info[_DEPTH] = 1
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.info[_DEPTH] = 0


def outside_units(session: Session) -> None:
    """For a service whose own units must commit whatever its caller does next (a failure
    count that has to survive the refusal the caller raises): inside another unit they would
    join it and be rolled back with it, so it refuses to run there."""
    if session.info.get(_DEPTH, 0):
        raise RuntimeError("this service commits units of its own: call it outside any unit of work")


@contextmanager
def read(session: Session, *, snapshot: bool = False):
    """One read unit of work: it writes nothing and never holds the write lock (on SQLite a
    plain deferred BEGIN); the transaction ends when the unit does. Inside a write unit it
    simply reads in that unit's transaction. With `snapshot`, every read of the unit sees the
    same moment (PostgreSQL: REPEATABLE READ; a SQLite read transaction is one already)."""
    if session.info.get(_DEPTH, 0):
        yield session
        return
    if snapshot and session.in_transaction():
        session.commit()  # the isolation level is chosen when the transaction begins
    continued = _end_transaction_before_unit(session)
    session.info[_DEPTH] = 1
    options = {READ_ONLY: True}
    if snapshot and session.get_bind().dialect.name == "postgresql":
        options["isolation_level"] = "REPEATABLE READ"
    try:
        if not continued:
            session.connection(execution_options=options)
        yield session
        if session.new or session.dirty or session.deleted:
            raise RuntimeError("a read unit of work changed rows; use db.write()")
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.info[_DEPTH] = 0


def init_app(app) -> None:
    app.extensions["portal.engine"] = make_engine(
        app.config["DATABASE_URL"],
        statement_timeout_ms=app.config["DATABASE_STATEMENT_TIMEOUT_MS"],
        busy_timeout_ms=app.config.get("SQLITE_BUSY_TIMEOUT_MS", SQLITE_BUSY_TIMEOUT_MS),
        pre_ping=app.config.get("DATABASE_POOL_PRE_PING", True),  # the API skips it: see skip_pool_ping
    )
    app.teardown_appcontext(_close_request_session)


def engine() -> Engine:
    return current_app.extensions["portal.engine"]


def session() -> Session:
    """The request's (or job's) session, opened on first use."""
    if "db_session" not in g:
        g.db_session = Session(engine(), expire_on_commit=False)
    return g.db_session


@contextmanager
def statement_connection():
    """PostgreSQL: a pooled connection's own driver connection (psycopg) in autocommit, for a
    statement that is a transaction of its own, so one round trip with its commit (the express
    send, portal.messaging.express). Not pinged: a pooled connection the server has closed
    since its last use (a restart) has its end of the socket readable while it sits idle: it is
    dropped with the rest of the pool (they were all open to the same server) and a fresh one
    connected. An error leaves as SQLAlchemy's DBAPIError, as from any statement (a 503 when
    the database is unavailable), and drops the connection; the pool takes it out of
    autocommit when it goes back (_begin_with_first_statement)."""
    skip_pool_ping()
    pooled = _checked_out()
    if _closed_by_server(pooled.driver_connection):
        pooled.invalidate()
        pooled.close()
        engine().dispose()
        pooled = _checked_out()
    try:
        raw = pooled.driver_connection
        raw.autocommit = True
        yield raw
    except psycopg.Error as error:
        lost = pooled.driver_connection is None or pooled.driver_connection.closed or pooled.driver_connection.broken
        pooled.invalidate()
        raise exc.DBAPIError.instance(None, None, error, psycopg.Error, hide_parameters=True,
                                      connection_invalidated=lost, dialect=engine().dialect) from error
    except BaseException:
        pooled.invalidate()
        raise
    finally:
        pooled.close()


def _checked_out():
    """A pooled connection, a connect that fails raised as from any statement (the pool itself
    raises the driver's own error: a stopped database would be a 500, not a 503)."""
    try:
        return engine().raw_connection()
    except psycopg.Error as error:
        raise exc.DBAPIError.instance(None, None, error, psycopg.Error, hide_parameters=True,
                                      connection_invalidated=True, dialect=engine().dialect) from error


def _closed_by_server(raw) -> bool:
    """An idle connection has nothing to read unless the server ended it (or it is closed).
    poll, not select: a descriptor may be past select's 1024."""
    if raw is None or raw.closed:
        return True
    poller = select_module.poll()
    poller.register(raw.fileno(), select_module.POLLIN)
    try:
        return bool(poller.poll(0))
    except OSError:
        return True


def rollback_request_session() -> None:
    """Before an error page is rendered: a failed transaction must not fail the page too. A
    session whose connection cannot even roll back is dropped; the next use opens a new one."""
    db_session = g.get("db_session")
    if db_session is None:
        return
    try:
        db_session.rollback()
    except Exception:
        g.pop("db_session", None)
        try:
            db_session.invalidate()
        except Exception:
            pass


def unavailable(error: BaseException) -> bool:
    """The database cannot answer right now (down, restarting, unreachable, too slow, locked
    past the busy timeout, or no pooled connection free): try again later, not a bug."""
    for cause in _chain(error):
        if isinstance(cause, exc.TimeoutError) or getattr(cause, "code", None) == "8s2b":
            return True  # the pool's wait, or a transaction whose connection was lost
        if isinstance(cause, exc.DBAPIError):
            if cause.connection_invalidated or isinstance(cause, exc.InterfaceError):
                return True
            if isinstance(cause, exc.OperationalError):
                sqlite = type(cause.orig).__module__.startswith("sqlite3")
                return not sqlite or str(cause.orig).lower().startswith(UNAVAILABLE_SQLITE)
    return False


def is_database_error(error: BaseException) -> bool:
    return any(isinstance(cause, exc.SQLAlchemyError) for cause in _chain(error))


def describe(error: BaseException, *, frames: bool = True) -> str:
    """A database error for the log: its class, SQLSTATE and constraint, and where it was
    raised, never its message (PostgreSQL's DETAIL repeats the offending values)."""
    parts = []
    for cause in _chain(error):
        diag = getattr(cause, "diag", None)
        facts = [f"{name}={getattr(diag, name)}" for name in ("sqlstate", "constraint_name", "table_name", "column_name")
                 if getattr(diag, name, None)]
        parts.append(" ".join([type(cause).__name__, *facts]))
    where = "".join(traceback.format_tb(error.__traceback__)) if frames else ""
    return " <- ".join(parts) + ("\nTraceback (values omitted):\n" + where if where else "")


_SQLITE_CLASH = re.compile(r"(UNIQUE|CHECK) constraint failed: (.+)")
_SQLITE_INDEX = re.compile(r"index '(.+)'")


def violated_constraint(error: BaseException) -> str | None:
    """The name of the constraint an IntegrityError broke, the same on both engines, so that a
    service tells the clash it expects (an address taken at this very moment) from any other
    by name, never by the wording of a message. None for a clash without a name (NOT NULL, a
    foreign key on SQLite).

    PostgreSQL names the constraint. SQLite names only CHECK constraints and expression
    indexes; its "UNIQUE constraint failed: table.a, table.b" is looked up among that table's
    unique constraints and unique indexes in the models' metadata, where an unnamed one goes
    by the name PostgreSQL gave it when the migration created it (<table>_<columns>_key,
    <table>_pkey)."""
    for cause in _chain(error):
        diag = getattr(cause, "diag", None)
        if diag is not None:
            return diag.constraint_name
        if isinstance(cause, sqlite3.IntegrityError):
            return _sqlite_constraint(str(cause))
    return None


def _sqlite_constraint(message: str) -> str | None:
    clash = _SQLITE_CLASH.match(message)
    if clash is None:
        return None
    kind, named = clash.groups()
    if kind == "CHECK":
        return named
    if index := _SQLITE_INDEX.fullmatch(named):
        return index.group(1)
    qualified = [part.strip().partition(".") for part in named.split(",")]
    table = SQLModel.metadata.tables.get(qualified[0][0])
    return _unique_on(table, tuple(column for _, _, column in qualified)) if table is not None else None


def _unique_on(table: Table, columns: tuple[str, ...]) -> str | None:
    def on(columns_of) -> bool:
        return tuple(column.name for column in columns_of) == columns

    for constraint in table.constraints:
        if isinstance(constraint, (UniqueConstraint, PrimaryKeyConstraint)) and on(constraint.columns):
            if constraint.name:
                return constraint.name
            suffix = "pkey" if isinstance(constraint, PrimaryKeyConstraint) else "_".join([*columns, "key"])
            return f"{table.name}_{suffix}"
    return next((index.name for index in table.indexes if index.unique and on(index.columns)), None)


def _chain(error: BaseException | None):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        if isinstance(error, exc.StatementError) and error.orig is not None and id(error.orig) not in seen:
            yield error.orig
            seen.add(id(error.orig))
        error = error.__cause__ or error.__context__


def _close_request_session(_exc):
    db_session = g.pop("db_session", None)
    if db_session is not None:
        db_session.close()


@contextmanager
def job_session(bind: Engine | None = None):
    """A session for one unit of work outside a request (worker job, CLI command)."""
    with Session(bind or engine(), expire_on_commit=False) as db_session:
        yield db_session
