# ruff: noqa: F811 -- fixtures imported from another test module are redefined as test parameters
"""A real `portal worker` process (PostgreSQL or the SQLite file of the test run) is killed
while it hangs on a mail server that accepted the connection and never answers; a fresh worker
delivers the notice once, with the same notice id, after the alert lease (4 s here, from
PORTAL_ALERT_LEASE_SECONDS) has run out. The waits are polls with a generous bound."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from portal.alerts import service as alerts
from portal.alerts.delivery import NOTICE_HEADER
from portal.alerts.models import Delivery, DeliveryStatus
from portal.outbox import OutboxKind, OutboxMessage
from tests.conftest import TEST_SECRET
from tests.helpers import db_session, deliver_outbox
from tests.integration.test_alert_recovery import _free_port, cross_100_yen, notices, owner, silent_server  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


def test_a_worker_killed_while_a_mail_server_hangs_is_replaced_and_the_notice_arrives_once(
        app, session, clock, owner, database_url, tmp_path):
    from aiosmtpd.controller import Controller

    deliver_outbox(app)  # the sign-up's mails: only the alert is left for the workers
    cross_100_yen(session, owner, clock)
    [notice] = notices(app)
    received = []

    class Handler:
        async def handle_DATA(self, server, smtp_session, envelope):
            received.append(envelope.content.decode())
            return "250 OK"

    with silent_server() as (hanging_port, accepted):
        first = _worker(database_url, hanging_port, tmp_path / "first.log")
        try:
            _wait_for(accepted.is_set, first)  # the worker claimed the alert and is waiting for the greeting
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
        finally:
            _stop(first)
    with db_session(app) as s:
        job = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == OutboxKind.ALERT)).one()
        delivery = s.scalars(select(Delivery)).one()
    assert job.leased_until is not None and job.sent_at is None  # it died holding the lease ...
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 0)  # ... before any attempt ended

    port = _free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    second = _worker(database_url, port, tmp_path / "second.log")
    try:
        _wait_for(lambda: _alert_job(app).sent_at is not None, second)
    finally:
        _stop(second)
        controller.stop()
    alerts_received = [text for text in received if NOTICE_HEADER in text]
    assert len(alerts_received) == 1
    assert f"{NOTICE_HEADER}: {notice.uuid}" in alerts_received[0]
    with db_session(app) as s:
        delivery = s.scalars(select(Delivery)).one()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SENT, 1)
    assert [h.notice_id for h in alerts.history(session=session, account_id=owner)] == [notice.uuid]


def _alert_job(app) -> OutboxMessage:
    with db_session(app) as s:
        return s.scalars(select(OutboxMessage).where(OutboxMessage.kind == OutboxKind.ALERT)).one()


LEASE_SECONDS = 4  # the test's alert lease: a mail exchange is cut at 2 s


def _worker(database_url: str, smtp_port: int, log: Path) -> subprocess.Popen:
    """`portal worker` on the test database, sending mail to 127.0.0.1:`smtp_port`, its log in `log`."""
    environment = os.environ | {
        "PORTAL_ENV": "test", "PORTAL_SECRET_KEY": TEST_SECRET, "PORTAL_DATABASE_URL": database_url,
        "PORTAL_SMTP_URL": f"smtp+plain://127.0.0.1:{smtp_port}", "PORTAL_ALERT_LEASE_SECONDS": str(LEASE_SECONDS),
        "PYTHONPATH": str(ROOT),
    }
    with log.open("wb") as output:
        process = subprocess.Popen([sys.executable, "-m", "portal.cli", "worker"], cwd=ROOT, env=environment,
                                   stdout=output, stderr=subprocess.STDOUT)
    process.log = log
    return process


def _wait_for(condition, process: subprocess.Popen, bound: float = 120.0) -> None:
    """Poll `condition` (a generous bound, not a measurement); a worker that exits fails the test."""
    give_up = time.monotonic() + bound
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the worker exited: {process.log.read_text(errors='replace')[-2000:]}")
        if time.monotonic() > give_up:
            pytest.fail("the worker did not get there")
        time.sleep(0.05)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


