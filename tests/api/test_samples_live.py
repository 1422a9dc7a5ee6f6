"""The code samples on the page that shows a new token, pasted as they are: curl in a shell and
the Python ones (requests, xoxzo.cloudpy) in a fresh interpreter, against the portal on a real
port; each message lands in the test inbox."""

import subprocess
import sys
import time

import pytest
from bs4 import BeautifulSoup
from sqlalchemy import select

from portal.messaging.models import TestInboxMessage
from tests.e2e.conftest import LiveServer
from tests.helpers import PageClient, db_session, deliver_outbox, make_user

HELLO = {"en": "Hello from Chotto", "ja": "Chottoからこんにちは"}
RUN = {"curl": ["bash", "-c"], "requests": [sys.executable, "-c"], "cloudpy": [sys.executable, "-c"]}


@pytest.fixture
def server(database_url):
    with LiveServer(database_url) as live:
        yield live


def pasted_samples(server, language: str) -> dict[str, str]:
    """The samples as the created page shows them to a signed-in owner."""
    make_user(server.app, email="dev@example.com", phone="+819012345678", language=language)
    client = PageClient(server.app.test_client(), server.app)
    client.login("dev@example.com")
    response = client.post("/credentials", {"name": "laptop", "mode": "test", "scopes": ["sms", "read"],
                                            "networks": "", "monthly_cap": ""}, status=200)
    page = BeautifulSoup(response.get_data(as_text=True), "html.parser")
    return {key: page.select_one(f"[data-testid=sample-{key}]").get_text() for key in RUN}


def inbox_bodies(app, count: int) -> list[str]:
    """The test inbox once `count` messages are in it: the outbox is drained here, and a message the
    live server's own worker holds at that moment is waited for, a bounded number of times."""
    for _ in range(100):
        deliver_outbox(app)
        with db_session(app) as session:
            bodies = list(session.scalars(select(TestInboxMessage.body).order_by(TestInboxMessage.id)))
        if len(bodies) >= count:
            break
        time.sleep(0.2)
    return bodies


@pytest.mark.parametrize("language", ["en", "ja"])
def test_each_pasted_sample_sends_an_sms_that_lands_in_the_test_inbox(server, language):
    samples = pasted_samples(server, language)
    assert server.url in samples["curl"]
    for key, command in RUN.items():
        done = subprocess.run([*command, samples[key]], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (key, done.stderr)
        assert "msgid" in done.stdout, (key, done.stdout, done.stderr)
    assert inbox_bodies(server.app, 3) == [HELLO[language]] * 3
