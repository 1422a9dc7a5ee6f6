"""The database goes down for real: the portal runs on a private PostgreSQL cluster of its own
(initdb on a free port, never the machine's server), which is stopped the hard way and started
again. While it is down the API and the pages answer 503 with Retry-After and nothing is
charged; once it is back, the portal serves again within a bounded number of retries, with and
without the pool's pre-ping (a dead pooled connection must not outlive one failed request)."""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text

from portal.migrate import upgrade
from tests.api.conftest import fund, new_key
from tests.conftest import PG_URL, make_app
from tests.helpers import PageClient, db_session, make_user

PG_BIN = Path("/usr/lib/postgresql/15/bin")
RETRIES = 20  # at 0.5 s apart: the 10 s R11 allows after the database is back
SEND = {"recipient": "+819011112222", "sender": "Chotto", "message": "hello"}

pytestmark = [
    pytest.mark.skipif(not PG_URL,
                       reason="PostgreSQL only: set PORTAL_TEST_DATABASE_URL (the test starts its own private cluster)"),
    pytest.mark.xdist_group("private-postgresql-cluster"),  # one test process builds the cluster once
]


class PrivateCluster:
    """A throw-away PostgreSQL cluster in a temporary folder, run as the postgres user when the
    suite runs as root (PostgreSQL refuses to run as root)."""

    def __init__(self):
        if not (PG_BIN / "initdb").exists():
            pytest.skip(f"PostgreSQL 15's server programs are not installed in {PG_BIN}")
        self.folder = Path(tempfile.mkdtemp(prefix="chotto-pg-"))
        self.data = self.folder / "data"
        self.as_owner = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
            self.as_owner = ["runuser", "-u", "postgres", "--"]
        self.port = _free_port()
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/chotto"

    def _run(self, program: str, *args: str) -> None:
        subprocess.run([*self.as_owner, str(PG_BIN / program), *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "log"), "-w", "-t", "60",
                  "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        subprocess.run([*self.as_owner, str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    cluster = PrivateCluster()
    try:
        cluster.start()
        admin = create_engine(cluster.url.replace("/chotto", "/postgres").replace("postgresql:", "postgresql+psycopg:"),
                              isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text("CREATE DATABASE chotto"))
        admin.dispose()
        upgrade(cluster.url)
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def portal(cluster, clock, request):
    from portal.accounts.models import Membership

    app = make_app(cluster.url, CLOCK=clock, DATABASE_POOL_PRE_PING=request.param)
    email = f"owner-{request.param}@example.com"
    user = make_user(app, email=email, phone="+819011112222" if request.param else "+819011113333")
    with db_session(app) as session:
        account_id = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
    fund(app, account_id, 1000)
    key = new_key(app, account_id, user.id)
    client = PageClient(app.test_client(), app)
    client.login(email)
    yield app, client, key
    app.extensions["portal.engine"].dispose()


def _credits(client, key) -> float:
    response = client.client.get("/you/credits/", headers=key.headers)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return response.get_json()["credits"]


@pytest.mark.parametrize("portal", [True, False], ids=["pre_ping", "no_pre_ping"], indirect=True)
def test_a_stopped_database_gives_503_with_retry_after_and_the_portal_recovers_once_it_is_back(cluster, portal):
    app, client, key = portal
    before = _credits(client, key)
    client.get("/dashboard")
    assert client.client.post("/sms/messages/", data=SEND, headers=key.headers).status_code == 201
    charged_once = _credits(client, key)
    assert charged_once < before

    cluster.stop()
    try:
        for _ in range(3):  # the first use finds the pooled connections dead, the next ones cannot connect
            for response, json in (
                (client.client.get("/you/credits/", headers=key.headers), True),
                (client.client.post("/sms/messages/", data=SEND, headers=key.headers), True),
                (client.client.get("/sms/messages/", headers=key.headers), True),
                (client.client.get("/dashboard"), False),
                (client.client.get("/credit/statement"), False),
            ):
                assert response.status_code == 503, response.get_data(as_text=True)[:300]
                assert int(response.headers["Retry-After"]) >= 1
                assert ("detail" in response.get_json()) if json else ("briefly unavailable" in response.get_data(
                    as_text=True))
    finally:
        cluster.start()

    statuses = []
    while len(statuses) < RETRIES and statuses[-1:] != [200]:
        statuses.append(client.client.get("/you/credits/", headers=key.headers).status_code)
        if statuses[-1] != 200:
            time.sleep(0.5)
    assert statuses[-1] == 200, statuses
    assert set(statuses) <= {200, 503}, statuses
    client.get("/dashboard")
    assert _credits(client, key) == charged_once  # the sends refused during the outage cost nothing
    listed = client.client.get("/sms/messages/", headers=key.headers).get_json()
    assert len(listed) == 1
