"""A real portal on a free port, its worker in a thread, and Debian's Chromium through Playwright."""

import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from portal import worker
from tests.conftest import _empty_tables, make_app

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": "/usr/bin/chromium", "args": CHROMIUM_ARGS}


class LiveServer:
    def __init__(self, database_url: str, **settings):
        holder = {}
        self.server = make_server("127.0.0.1", 0, lambda environ, start: holder["app"](environ, start), threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.app = holder["app"] = make_app(database_url, BASE_URL=self.url, ENV="development", **settings)
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self.server.serve_forever, daemon=True),
            threading.Thread(target=self._work, daemon=True),
        ]

    def _work(self):
        while not self.stopping.is_set():
            if not worker._guarded("outbox delivery", worker.drain_once, self.app):  # as `portal worker` does
                self.stopping.wait(0.2)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.server.shutdown()
        for thread in self.threads:
            thread.join(timeout=10)
        engine = self.app.extensions["portal.engine"]
        _empty_tables(engine)
        engine.dispose()


@pytest.fixture
def live_server(database_url):
    with LiveServer(database_url) as server:
        yield server


@pytest.fixture
def screenshot(request):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    engine = request.node.callspec.params.get("database_url", "db") if hasattr(request.node, "callspec") else "db"

    def take(page, name: str):
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{engine}.png"), full_page=True)

    return take


@pytest.fixture
def console_errors():
    """Pages report CSP violations and script errors to the console; a test ends with none."""
    errors = []

    def watch(page):
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        return page

    yield watch
    assert _without_aborted_requests(errors) == []


def _without_aborted_requests(errors: list[str]) -> list[str]:
    """htmx logs an aborted request as two errors (htmx:afterRequest, then htmx:sendAbort), and
    Chromium aborts a polled panel's request in flight when the test moves to the next page."""
    aborted = sum(error.startswith("htmx:sendAbort") for error in errors)
    left = []
    for error in errors:
        if error.startswith("htmx:sendAbort"):
            continue
        if error.startswith("htmx:afterRequest") and aborted:
            aborted -= 1
            continue
        left.append(error)
    return left
