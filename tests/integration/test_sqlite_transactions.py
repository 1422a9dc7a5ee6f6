import pytest
from sqlalchemy import event, select

from portal.accounts.models import Account


def test_every_sqlite_transaction_begins_immediate(app, session):
    """Deferred transactions that later write fail with "database is locked" under load:
    on SQLite every transaction takes the write lock at BEGIN (R13)."""
    engine = app.extensions["portal.engine"]
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL locks rows, not the database")
    seen = []
    event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    session.scalars(select(Account)).all()
    session.commit()
    assert seen[0] == "BEGIN IMMEDIATE"
