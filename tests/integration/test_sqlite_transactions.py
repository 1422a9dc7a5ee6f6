import pytest
from sqlalchemy import event, select

from portal import clock
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


def _statements(engine):
    seen = []
    event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


def test_a_read_unit_never_takes_the_write_lock_and_a_write_unit_does(app, session):
    from portal import db

    engine = app.extensions["portal.engine"]
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL locks rows, not the database")
    seen = _statements(engine)
    with db.read(session):
        session.scalars(select(Account)).all()
    with db.write(session):
        session.scalars(select(Account)).all()
    begins = [statement for statement in seen if statement.startswith("BEGIN")]
    assert begins == ["BEGIN", "BEGIN IMMEDIATE"]


def test_a_write_unit_commits_once_at_the_end_and_rolls_back_on_error(app, session):
    from portal import db

    engine = app.extensions["portal.engine"]
    with pytest.raises(LookupError):
        with db.write(session):
            session.add(Account(name="lost", kind="individual", language="en", tax_residency="JP", created_at=clock.now()))
            session.flush()
            with db.write(session):  # an inner unit joins the outer one: it does not commit
                session.add(Account(name="also lost", kind="individual", language="en", tax_residency="JP", created_at=clock.now()))
            raise LookupError
    assert session.scalars(select(Account).where(Account.name.in_(["lost", "also lost"]))).all() == []
    session.rollback()
    with db.write(session):
        session.add(Account(name="kept", kind="individual", language="en", tax_residency="JP", created_at=clock.now()))
    with engine.connect() as other:
        assert other.scalar(select(Account.name).where(Account.name == "kept")) == "kept"


def test_a_read_unit_refuses_to_write(app, session):
    from portal import db

    with pytest.raises(RuntimeError, match="read unit"):
        with db.read(session):
            session.add(Account(name="sneaky", kind="individual", language="en", tax_residency="JP", created_at=clock.now()))
    assert session.scalars(select(Account).where(Account.name == "sneaky")).all() == []
