"""Debits per second through the ledger service against a bare one-row UPDATE, on PostgreSQL.

Both run in the same process on the same database, alternated in rounds; the figure is the
median of the per-round ratios (service rate / bare rate), so a busy shared machine affects
both sides alike. Goal: >= 0.5.

    .venv/bin/python bench/ledger_debit.py [--rounds 7] [--per-round 300]

PORTAL_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test) names the
server; the benchmark works in a scratch database it creates and drops.
"""

import argparse
import os
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text  # noqa: E402
from sqlmodel import Session  # noqa: E402

from portal.accounts.models import Account  # noqa: E402
from portal.db import make_engine  # noqa: E402
from portal.ledger import service  # noqa: E402
from portal.ledger.check import check  # noqa: E402
from portal.migrate import scratch_database  # noqa: E402

SERVER = os.environ.get("PORTAL_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def prepare(engine, now):
    with Session(engine, expire_on_commit=False) as session:
        account = Account(name="bench", kind="company", language="ja", tax_residency="JP", created_at=now)
        session.add(account)
        session.flush()
        service.open_state(session, account_id=account.id, now=now)
        session.commit()
        for i in range(5):
            service.grant_purchase(session=session, account_id=account.id, amount=10_000_000_000, paid_at=now - timedelta(seconds=i),
                                   payment_ref=f"bench-{i}", now=now)
        session.execute(text("CREATE TABLE bench_counter (id int PRIMARY KEY, value bigint NOT NULL)"))
        session.execute(text("INSERT INTO bench_counter VALUES (1, 0)"))
        session.commit()
        return account.id


def service_round(engine, account_id, count, round_no, now) -> float:
    with Session(engine, expire_on_commit=False) as session:
        started = time.perf_counter()
        for i in range(count):
            service.debit(session=session, account_id=account_id, amount=1000, idempotency_key=f"r{round_no}-{i}",
                          reason="bench", now=now)
        return count / (time.perf_counter() - started)


def bare_round(engine, count) -> float:
    with Session(engine, expire_on_commit=False) as session:
        started = time.perf_counter()
        for _ in range(count):
            session.execute(text("UPDATE bench_counter SET value = value + 1 WHERE id = 1"))
            session.commit()
        return count / (time.perf_counter() - started)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--per-round", type=int, default=300)
    args = parser.parse_args(argv)
    with scratch_database(SERVER, "chotto_bench") as url:
        engine = make_engine(url)
        now = datetime.now(timezone.utc)
        account_id = prepare(engine, now)
        service_round(engine, account_id, 20, -1, now)  # warm up both paths
        bare_round(engine, 20)
        ratios = []
        for round_no in range(args.rounds):
            if round_no % 2:
                bare = bare_round(engine, args.per_round)
                served = service_round(engine, account_id, args.per_round, round_no, now)
            else:
                served = service_round(engine, account_id, args.per_round, round_no, now)
                bare = bare_round(engine, args.per_round)
            ratios.append(served / bare)
            print(f"round {round_no + 1}: service {served:7.0f}/s  bare UPDATE {bare:7.0f}/s  ratio {served / bare:.2f}")
        with Session(engine) as session:
            problems, _ = check(session, now=now)
        engine.dispose()
        print(f"ledger check after the run: {'passed' if not problems else problems}")
        print(f"median ratio service/bare: {statistics.median(ratios):.2f} (goal >= 0.5)")


if __name__ == "__main__":
    main()
