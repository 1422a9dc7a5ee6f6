"""How the services use the unit of work (portal.db): read paths never take SQLite's write
lock, and a failure count that must outlive the caller's refusal is never folded into the
caller's unit."""

import pytest
from sqlalchemy import event, select

from portal import db
from portal.accounts import throttle
from portal.accounts.models import LoginThrottle
from tests.helpers import PageClient, make_user


def begins(engine) -> list[str]:
    seen = []
    event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2]) if args[2].startswith("BEGIN") else None)
    return seen


def test_a_signed_in_page_that_only_reads_never_takes_the_write_lock(app):
    """Every page loads the signed-in person (their session row, its last-seen time touched at
    most once a minute) and their accounts; a page that only reads does it all in read units."""
    engine = app.extensions["portal.engine"]
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL locks rows, not the database")
    make_user(app)
    client = PageClient(app.test_client(), app)
    client.login("owner@example.com")
    seen = begins(engine)
    assert "Sign out" in client.text("/profile/")
    assert seen and set(seen) == {"BEGIN"}


def test_the_password_check_refuses_to_run_inside_a_callers_unit(app, session, clock):
    """Its failure count is committed before the caller refuses the password: inside another
    unit it would be rolled back with the refusal, and guesses would go uncounted."""
    with pytest.raises(RuntimeError, match="outside any unit of work"):
        with db.write(session):
            throttle.checked_password(session, email="a@example.com", stored_hash=None, password="guess", now=clock())
    assert not throttle.checked_password(session, email="a@example.com", stored_hash=None, password="guess", now=clock())
    with db.read(session):
        assert session.scalars(select(LoginThrottle.failures)).all() == [1]
