"""Requests per second of the API's POST /sms/messages/ against a bare endpoint in the same
gunicorn processes doing one UPDATE, on PostgreSQL.

Both are served by the same gunicorn (2 workers) from the same database, driven by the same
keep-alive clients, alternated in rounds; the figure is the median of the per-round ratios
(send rate / bare rate), so a busy shared machine affects both sides alike. Goal: >= 0.6.

    .venv/bin/python bench/api_send.py [--rounds 7] [--per-round 400] [--clients 8]

PORTAL_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test) names the
server; the benchmark works in a scratch database it creates and drops.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlmodel import Session  # noqa: E402

from portal.accounts.models import Account, Membership, User  # noqa: E402
from portal.credentials import service as credentials  # noqa: E402
from portal.db import make_engine  # noqa: E402
from portal.ledger import service as ledger  # noqa: E402
from portal.ledger.check import check  # noqa: E402
from portal.ledger.models import CreditState  # noqa: E402
from portal.migrate import scratch_database  # noqa: E402

SERVER = os.environ.get("PORTAL_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
SMS = {"recipient": "+819012345678", "sender": "Chotto", "message": "Your code is 123456"}


def prepare(url: str) -> tuple[str, str]:
    engine = make_engine(url)
    now = datetime.now(timezone.utc)
    with Session(engine, expire_on_commit=False) as session:
        account = Account(name="bench", kind="company", language="ja", tax_residency="JP", created_at=now)
        user = User(email="bench@example.com", name="bench", password_hash="-", language="ja", created_at=now,
                    password_changed_at=now)
        session.add_all([account, user])
        session.flush()
        session.add(Membership(account_id=account.id, user_id=user.id, role="owner", created_at=now))
        ledger.open_state(session, account_id=account.id, now=now)
        session.commit()
        ledger.grant(session=session, account_id=account.id, kind="grant", amount=10_000_000_000,
                     expires_at=now + timedelta(days=90), source_ref="bench", idempotency_key="bench", reason="bench",
                     now=now)
        session.get(CreditState, account.id).has_purchased = True
        session.execute(text("CREATE TABLE bench_counter (id int PRIMARY KEY, value bigint NOT NULL)"))
        session.execute(text("INSERT INTO bench_counter VALUES (1, 0)"))
        session.commit()
    from portal import create_app  # the credential service mails the owners: it needs the app

    app = create_app({"ENV": "test", "DATABASE_URL": url, "SECRET_KEY": "bench-secret-key-long-enough-for-checks"})
    with app.app_context(), Session(app.extensions["portal.engine"], expire_on_commit=False) as session:
        credential, token = credentials.create(session=session, account_id=account.id, user_id=user.id, name="bench",
                                               mode="live", scopes=["sms"], networks=[], monthly_cap=None, now=now)
    app.extensions["portal.engine"].dispose()
    engine.dispose()
    return credential.sid, token


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(url: str, port: int) -> subprocess.Popen:
    env = os.environ | {
        "PORTAL_ENV": "test", "PORTAL_DATABASE_URL": url, "PORTAL_RATELIMIT_ENABLED": "false",
        "PORTAL_SECRET_KEY": "bench-secret-key-long-enough-for-checks", "PYTHONPATH": str(ROOT),
    }
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    process = subprocess.Popen([gunicorn, "--workers", "2", "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
                                "bench.api_send_app:app"], cwd=ROOT, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/api/openapi.json", timeout=5)
            return process
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or its first answer is slow
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("gunicorn did not start")


def drive(base: str, path: str, auth, count: int, clients: int, round_no: int) -> float:
    def client(index: int) -> int:
        with requests.Session() as session:
            done = 0
            for n in range(index, count, clients):
                response = session.post(base + path, data=SMS | {"message": f"r{round_no} n{n}"}, auth=auth)
                if response.status_code != 201:
                    raise RuntimeError(f"{path}: {response.status_code} {response.text[:200]}")
                done += 1
            return done

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = sum(pool.map(client, range(clients)))
    return done / (time.perf_counter() - started)


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--per-round", type=int, default=400)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args(argv)
    with scratch_database(SERVER, "chotto_bench") as url:
        sid, token = prepare(url)
        port = free_port()
        process = serve(url, port)
        base = f"http://127.0.0.1:{port}"
        try:
            drive(base, "/sms/messages/", (sid, token), 40, args.clients, -1)  # warm up both
            drive(base, "/bench/bare", None, 40, args.clients, -1)
            ratios = []
            for round_no in range(args.rounds):
                if round_no % 2:
                    bare = drive(base, "/bench/bare", None, args.per_round, args.clients, round_no)
                    send = drive(base, "/sms/messages/", (sid, token), args.per_round, args.clients, round_no)
                else:
                    send = drive(base, "/sms/messages/", (sid, token), args.per_round, args.clients, round_no)
                    bare = drive(base, "/bench/bare", None, args.per_round, args.clients, round_no)
                ratios.append(send / bare)
                print(f"round {round_no + 1}: POST /sms/messages/ {send:7.1f}/s   bare UPDATE endpoint {bare:7.1f}/s"
                      f"   ratio {send / bare:.2f}")
        finally:
            process.terminate()
            process.wait(timeout=10)
        engine = make_engine(url)
        with Session(engine) as session:
            problems, _ = check(session, now=datetime.now(timezone.utc))
        engine.dispose()
    print(f"ledger check after the run: {'passed' if not problems else problems}")
    median = statistics.median(ratios)
    print(f"median ratio send/bare: {median:.2f} (goal >= 0.6)")
    return median


if __name__ == "__main__":
    main()
