"""Shared fixtures. Every database test runs on SQLite, and again on PostgreSQL when
PORTAL_TEST_DATABASE_URL is set. Each test gets an empty schema: rows are removed after it,
so tests that use real threads and connections see committed data like production does."""

import os
import shutil
from pathlib import Path
from datetime import datetime, timezone

import pytest
from sqlalchemy import text

from portal import create_app
from portal.clock import FrozenClock
from portal.migrate import scratch_database, upgrade
from portal.models import metadata

from tests.helpers import PageClient

PG_URL = os.environ.get("PORTAL_TEST_DATABASE_URL")
ENGINES = ["sqlite"] + (["postgresql"] if PG_URL else [])
START = datetime(2026, 11, 27, 3, 0, 0, tzinfo=timezone.utc)
TEST_SECRET = "test-secret-key-that-is-long-enough-for-production-checks"


def pytest_configure(config):
    """pytest-xdist registers `xdist_group`; without it (`-p no:xdist`) --strict-markers would
    refuse the files that use the mark, so it is registered here too."""
    config.addinivalue_line("markers", "xdist_group(name): tests pytest-xdist's --dist loadgroup keeps in one process")


@pytest.fixture(scope="session", params=ENGINES)
def database_url(request, tmp_path_factory):
    if request.param == "sqlite":
        folder = tmp_path_factory.mktemp("db")
        upgrade(f"sqlite:///{folder / 'template.sqlite3'}")
        shutil.copyfile(folder / "template.sqlite3", folder / "portal.sqlite3")
        yield f"sqlite:///{folder / 'portal.sqlite3'}"
        return
    with scratch_database(PG_URL, "chotto_test") as url:
        yield url


@pytest.fixture(autouse=True)
def postgresql_only(request):
    """A test marked `postgresql` runs on the PostgreSQL database only."""
    if not request.node.get_closest_marker("postgresql"):
        return
    callspec = getattr(request.node, "callspec", None)
    if callspec is None or callspec.params.get("database_url") != "postgresql":
        pytest.skip("PostgreSQL only (PORTAL_TEST_DATABASE_URL adds the PostgreSQL run)")


@pytest.fixture(autouse=True)
def fast_receipts(request, monkeypatch):
    """WeasyPrint takes about a second a page; tests not marked `pdf` get a small stand-in with
    the invoice number, so storage, serving and immutability are still exercised."""
    if request.node.get_closest_marker("pdf"):
        return
    from portal import documents

    def render(invoice, *, language, replaces):
        return f"%PDF-1.7\n% test stand-in {invoice.number} {language} {replaces or ''}\n%%EOF\n".encode()

    monkeypatch.setattr(documents, "render", render)


@pytest.fixture
def clock():
    return FrozenClock(START)


def make_app(database_url: str, **overrides):
    settings = {
        "ENV": "test",
        "SECRET_KEY": TEST_SECRET,
        "DATABASE_URL": database_url,
        "BASE_URL": "https://portal.chotto.test",
        "RATELIMIT_ENABLED": False,
    }
    return create_app(settings | overrides)


@pytest.fixture
def app(database_url, clock):
    app = make_app(database_url, CLOCK=clock)
    yield app
    _empty_tables(app.extensions["portal.engine"])
    app.extensions["portal.engine"].dispose()


@pytest.fixture
def app_with(database_url, clock):
    """Builds more portals on the test database with settings of their own (a production-like
    one, tight limits, …); their tables are emptied after the test like the `app` fixture's."""
    made = []

    def build(**overrides):
        made.append(make_app(database_url, **({"CLOCK": clock} | overrides)))
        return made[-1]

    yield build
    for each in made:
        each.extensions["portal.engine"].dispose()
    if made:  # with an engine of default settings: theirs may be too tight for a TRUNCATE
        from portal.db import make_engine

        engine = make_engine(database_url, statement_timeout_ms=0)
        _empty_tables(engine)
        engine.dispose()


SEEDED = {"prices"}  # reference data the migrations insert: kept between tests


def _empty_tables(engine) -> None:
    """PostgreSQL: TRUNCATE (row triggers guarding the journal do not fire). SQLite: put the
    freshly migrated template file back, since the journal refuses DELETE."""
    if engine.dialect.name == "postgresql":
        names = ", ".join(f'"{t.name}"' for t in reversed(metadata.sorted_tables) if t.name not in SEEDED)
        with engine.begin() as connection:
            connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        return
    engine.dispose()
    path = Path(engine.url.database)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(path.with_name("template.sqlite3"), path)


@pytest.fixture
def session(app):
    from portal import db

    with app.app_context():
        with db.job_session() as db_session:
            yield db_session


@pytest.fixture
def client(app):
    return PageClient(app.test_client(), app)


@pytest.fixture
def stripe():
    from tests.stripe_fake import FakeStripe

    return FakeStripe()


@pytest.fixture
def stripe_app(database_url, clock, stripe):
    """The portal with the Stripe gateway, talking to the recorded-object fake; webhooks
    accept the suite's secret and an older one (a rotation in progress)."""
    from tests.stripe_fake import WEBHOOK_SECRET

    app = make_app(database_url, CLOCK=clock, STRIPE_SECRET_KEY="sk_test_chotto_suite", STRIPE_HTTP_CLIENT=stripe,
                   STRIPE_WEBHOOK_SECRET=f"whsec_test_old_secret_being_rotated_out,{WEBHOOK_SECRET}")
    yield app
    _empty_tables(app.extensions["portal.engine"])
    app.extensions["portal.engine"].dispose()
