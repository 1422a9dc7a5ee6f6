"""Seconds from a committed low-balance crossing to its notice reaching a local SMTP server and
a local webhook receiver, with the worker running as its own process on PostgreSQL: median and
worst of 50 crossings. Goal (issue 13): worst <= 60 s, median <= 5 s.

Unlike the other benchmarks this one reports absolute times: the issue's promise ("within a
minute") is a time, and the worker's idle sleep (1 s) dominates it, not the machine's speed.

    .venv/bin/python bench/alert_latency.py [--crossings 50]

PORTAL_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test) names the
server; the benchmark works in a scratch database it creates and drops.
"""

import argparse
import asyncio  # noqa: F401  (aiosmtpd's controller runs its own loop)
import email
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiosmtpd.controller import Controller  # noqa: E402
from sqlalchemy import select  # noqa: E402

from portal import create_app, db  # noqa: E402
from portal.accounts.models import Membership  # noqa: E402
from portal.accounts.operator import create_account  # noqa: E402
from portal.alerts import service as alerts  # noqa: E402
from portal.alerts.delivery import NOTICE_HEADER  # noqa: E402
from portal.alerts.models import Notice  # noqa: E402
from portal.ledger import service as ledger  # noqa: E402
from portal.migrate import scratch_database  # noqa: E402

SERVER = os.environ.get("PORTAL_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
SECRET = "bench-secret-key-that-is-long-enough-for-production-checks"
arrived: dict[str, dict[str, float]] = {"mail": {}, "webhook": {}}


class MailHandler:
    async def handle_DATA(self, server, session, envelope):
        notice = email.message_from_bytes(envelope.content)[NOTICE_HEADER]
        if notice:
            arrived["mail"].setdefault(notice, time.time())
        return "250 OK"


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        arrived["webhook"].setdefault(self.headers[NOTICE_HEADER], time.time())
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def settings(url: str, smtp_port: int) -> dict:
    """Development mode: webhooks may reach 127.0.0.1."""
    return {"ENV": "development", "SECRET_KEY": SECRET, "DATABASE_URL": url,
            "SMTP_URL": f"smtp+plain://127.0.0.1:{smtp_port}"}


def prepare(app, count: int, hook: str) -> list[int]:
    now = datetime.now(timezone.utc)
    accounts = []
    with app.app_context():
        session = db.session()
        for i in range(count):
            user = create_account(session=session, email=f"owner{i}@example.com", password="bench-password-1234",
                                  name=f"owner {i}", language="ja", verified=True, phone=None, trial_amount=0, now=now)
            with db.read(session):
                account = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
            alerts.save_channels(session=session, account_id=account, user_id=user.id, email=True, webhook_url=hook,
                                 sms=False, sms_number=None, expiry_warnings=True, run_out_days=None, now=now,
                                 allow_http=True)
            ledger.grant_purchase(session=session, account_id=account, amount=1_000_000, paid_at=now,
                                  payment_ref=f"bench-{i}", now=now)
            accounts.append(account)
    return accounts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--crossings", type=int, default=50)
    options = parser.parse_args(argv)
    for times in arrived.values():
        times.clear()
    smtp_port, hook_port = free_port(), free_port()
    smtp = Controller(MailHandler(), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    receiver = ThreadingHTTPServer(("127.0.0.1", hook_port), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    with scratch_database(SERVER, "chotto_bench") as url:
        config = settings(url, smtp_port)
        app = create_app(config | {"RATELIMIT_ENABLED": False})
        accounts = prepare(app, options.crossings, f"http://127.0.0.1:{hook_port}/hook")
        environment = os.environ | {f"PORTAL_{key}": value for key, value in config.items()}
        worker = subprocess.Popen([sys.executable, "-m", "flask", "--app", "portal:create_app", "worker"],
                                  cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(3)  # the worker starts and runs its first scheduled tasks
            committed = {}
            with app.app_context():
                session = db.session()
                for i, account in enumerate(accounts):
                    now = datetime.now(timezone.utc)
                    ledger.debit(session=session, account_id=account, amount=950_000, idempotency_key=f"cross-{i}",
                                 reason="bench", now=now)
                    committed_at = time.time()  # debit's unit has committed
                    with db.read(session):
                        notice = session.scalars(select(Notice.uuid).where(Notice.account_id == account)).one()
                    committed[notice] = committed_at
                    time.sleep(0.2)  # crossings spread over ~10 s, as they come in production
            deadline = time.time() + 120
            while time.time() < deadline and any(len(arrived[c]) < len(committed) for c in arrived):
                time.sleep(0.2)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)
            app.extensions["portal.engine"].dispose()
    smtp.stop()
    receiver.shutdown()
    for channel, times in arrived.items():
        latencies = [times[notice] - at for notice, at in committed.items() if notice in times]
        missing = len(committed) - len(latencies)
        if latencies:
            print(f"{channel:8} {len(latencies)}/{len(committed)} arrived: median {statistics.median(latencies):.2f} s, "
                  f"worst {max(latencies):.2f} s" + (f", {missing} missing" if missing else ""))
        else:
            print(f"{channel:8} nothing arrived")


if __name__ == "__main__":
    main()
