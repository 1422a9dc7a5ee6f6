"""The usage history at scale on PostgreSQL: 1,000,000 rows for one account (and 10,000,000
spread over 100 accounts around it), against an account of 10,000 rows. Prints:

- the deepest page's time ÷ the first page's (keyset paging; goal <= 2),
- a month's totals at 10^6 rows ÷ at 10^4 (the daily rollup; goal <= 5),
- the export's peak memory growth for the 10^6-row account (RSS, in a subprocess; goal <= 50 MiB),
- bench/api_send.py's figure before the usage changes (the tree at --before, by default the
  last commit of the send path's work before the usage history was merged) and after (this
  tree), runs alternated: the send path must not lose more than 10%. Both are measured with
  this tree's yardstick (bench/api_send.py and bench/bare_app.py are copied into the other).

    .venv/bin/python bench/usage_scale.py [--rows 1000000] [--spread 10000000] [--accounts 100]
    .venv/bin/python bench/usage_scale.py --small       # 20,000 / 0 rows, a short send benchmark

PORTAL_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test) names the
server; the benchmark works in a scratch database it creates and drops.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEND_PATH_BEFORE_USAGE = "8b501b2"  # send-perf's last commit: the send path without the usage rows
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402
from sqlmodel import Session  # noqa: E402

from portal.accounts.models import Account, Membership, User  # noqa: E402
from portal.db import make_engine  # noqa: E402
from portal.ledger import service as ledger  # noqa: E402
from portal.ledger.check import check  # noqa: E402
from portal.migrate import scratch_database  # noqa: E402
from portal.usage import demo, rules, service  # noqa: E402

SERVER = os.environ.get("PORTAL_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
NOW = datetime.now(timezone.utc)
REPEAT = 9


def new_account(engine, name: str) -> tuple[int, int]:
    with Session(engine, expire_on_commit=False) as session:
        account = Account(name=name, kind="company", language="ja", tax_residency="JP", created_at=NOW)
        user = User(email=f"{name}@example.com", name=name, password_hash="-", language="ja", created_at=NOW,
                    password_changed_at=NOW)
        session.add_all([account, user])
        session.flush()
        session.add(Membership(account_id=account.id, user_id=user.id, role="owner", created_at=NOW))
        ledger.open_state(session, account_id=account.id, now=NOW)
        session.commit()
        return account.id, user.id


def seeded(engine, name: str, rows: int, seed: int) -> int:
    account_id, user_id = new_account(engine, name)
    from portal import create_app  # the credential service mails the owners: it needs the app

    app = create_app({"ENV": "test", "DATABASE_URL": str(engine.url.render_as_string(hide_password=False)),
                      "SECRET_KEY": "bench-secret-key-long-enough-for-checks", "DATABASE_STATEMENT_TIMEOUT_MS": 0})
    with app.app_context(), Session(app.extensions["portal.engine"], expire_on_commit=False) as session:
        if rows:
            demo.seed(session, account_id=account_id, user_id=user_id, rows=rows, now=NOW, seed=seed)
    app.extensions["portal.engine"].dispose()
    return account_id


def timed(work) -> float:
    """The median of REPEAT runs (after one to warm the caches), in milliseconds."""
    work()
    times = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def deepest_cursor(session, account_id: int, filters) -> str:
    """The cursor after which only the oldest page is left."""
    row = session.execute(text(
        "SELECT created_at, src, id FROM (SELECT created_at, 'm' AS src, id FROM sms_messages WHERE account_id = :a "
        "AND created_at >= :since UNION ALL SELECT created_at, 'c', id FROM voice_calls WHERE account_id = :a "
        "AND created_at >= :since) AS u ORDER BY created_at, src, id OFFSET 50 LIMIT 1"),
        {"a": account_id, "since": filters.since()}).one()
    session.commit()
    return rules.cursor_of(rules.Position(row.created_at, row.src, row.id))


def paging(engine, account_id: int) -> tuple[float, float]:
    today = rules.today_in_japan(NOW)
    filters = rules.Filters(start=rules.earliest_day(today), end=today)
    with Session(engine) as session:
        cursor = deepest_cursor(session, account_id, filters)
        first = timed(lambda: service.page(session, account_id=account_id, filters=filters, after=None, role="owner",
                                           now=NOW))
        deepest = timed(lambda: service.page(session, account_id=account_id, filters=filters, after=cursor,
                                             role="owner", now=NOW))
        last = service.page(session, account_id=account_id, filters=filters, after=cursor, role="owner", now=NOW)
        assert last.rows and len(last.rows) <= 50
    return first, deepest


def month_totals(engine, account_id: int) -> tuple[float, float]:
    """(totals alone, totals + daily series + breakdowns) for last month, in ms."""
    first = rules.today_in_japan(NOW).replace(day=1) - timedelta(days=1)
    start, end = rules.month_range(first)
    filters = rules.Filters(start=start, end=end)
    with Session(engine) as session:
        alone = timed(lambda: service.totals(session, account_id=account_id, filters=filters))
        everything = timed(lambda: (service.totals(session, account_id=account_id, filters=filters),
                                    service.daily(session, account_id=account_id, filters=filters),
                                    service.breakdown(session, account_id=account_id, filters=filters)))
    return alone, everything


EXPORT_PROBE = """
import resource, sys, time, tracemalloc
sys.path.insert(0, {root!r})
from datetime import date
from sqlmodel import Session
from portal.db import make_engine
from portal.usage import rules, service
engine = make_engine({url!r})
filters = rules.Filters(start=date.fromisoformat({start!r}), end=date.fromisoformat({end!r}))
def rss():
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmRSS")).split()[1])
tracing = {trace}
if tracing:
    tracemalloc.start()
before, started, size, chunks, highest = rss(), time.perf_counter(), 0, 0, 0
for chunk in service.export(lambda: Session(engine), account_id={account_id}, filters=filters):
    size += len(chunk)
    chunks += 1
    if chunks % 50 == 0:
        highest = max(highest, rss())
traced = tracemalloc.get_traced_memory()[1] / 2**20 if tracing else 0.0
print(size, chunks, (max(highest, rss()) - before) / 1024, time.perf_counter() - started, traced)
"""


def export_memory(url: str, account_id: int, trace: bool) -> tuple[int, float, float, float]:
    """(CSV bytes, RSS growth MiB, seconds, tracemalloc peak MiB) of one export in a fresh process."""
    today = rules.today_in_japan(NOW)
    probe = EXPORT_PROBE.format(root=str(ROOT), url=url, start=rules.earliest_day(today).isoformat(),
                                end=today.isoformat(), account_id=account_id, trace=trace)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), float(out[2]), float(out[3]), float(out[4])


def export_plan(engine, account_id: int) -> str:
    """The top of PostgreSQL's plan for one batch of the export (its first): a Merge Append of
    two index scans reads in order without sorting the range (each later batch the same, from
    its keyset position)."""
    from portal.usage import queries

    today = rules.today_in_japan(NOW)
    filters = rules.Filters(start=rules.earliest_day(today), end=today)
    with Session(engine) as session:
        bound = queries.last_ids(session, account_id, filters)
        compiled = (queries.oldest_first(session, account_id, filters, bound=bound, after=None, limit=2000)
                    .compile(dialect=engine.dialect))
        plan = session.connection().exec_driver_sql("EXPLAIN " + str(compiled), compiled.params).scalars().all()
    return " / ".join(line.strip() for line in plan[:3])


def send_figure(tree: Path, rounds: int, seconds: int) -> float:
    if tree != ROOT:  # the same yardstick on both sides
        for name in ("api_send.py", "bare_app.py"):
            shutil.copyfile(ROOT / "bench" / name, tree / "bench" / name)
    result = subprocess.run([sys.executable, str(tree / "bench" / "api_send.py"), "--rounds", str(rounds),
                             "--seconds", str(seconds)], capture_output=True, text=True, check=True,
                            env=os.environ | {"PYTHONPATH": str(tree)})
    line = [line for line in result.stdout.splitlines() if line.startswith("median ratio send/bare")][-1]
    return float(line.rsplit(":", 1)[1].split()[0])


def tree_at(revision: str, folder: str) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    return Path(folder)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the big account")
    parser.add_argument("--reference", type=int, default=10_000, help="rows of the small account")
    parser.add_argument("--spread", type=int, default=10_000_000, help="rows spread over --accounts other accounts")
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--before", default=SEND_PATH_BEFORE_USAGE, help="the revision whose send path is the 'before' figure")
    parser.add_argument("--before-tree", default=None, help="or a checked-out tree of it")
    parser.add_argument("--send-runs", type=int, default=3, help="before/after runs, alternated")
    parser.add_argument("--send-rounds", type=int, default=5)
    parser.add_argument("--send-seconds", type=int, default=5)
    parser.add_argument("--no-send", action="store_true", help="skip the send benchmark")
    parser.add_argument("--trace", action="store_true", help="export once more under tracemalloc (slow)")
    parser.add_argument("--small", action="store_true", help="a quick run: 20,000 and 1,000 rows, no spread")
    args = parser.parse_args(argv)
    if args.small:
        args.rows, args.reference, args.spread, args.accounts = 20_000, 1_000, 0, 0
        args.send_runs, args.send_rounds, args.send_seconds = 1, 2, 2
    with scratch_database(SERVER, "chotto_usage_bench") as url:
        engine = make_engine(url, statement_timeout_ms=0)
        started = time.perf_counter()
        for index in range(args.accounts):
            seeded(engine, f"spread{index}", args.spread // max(args.accounts, 1), seed=1000 + index)
        big = seeded(engine, "big", args.rows, seed=1)
        small = seeded(engine, "small", args.reference, seed=2)
        seconds = time.perf_counter() - started
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))  # what autovacuum does after such a load
        total = args.rows + args.reference + args.spread
        print(f"seeded {total:,} rows ({args.rows:,} for one account, {args.spread:,} over {args.accounts} others, "
              f"{args.reference:,} for the reference) in {seconds:.0f} s ({total / seconds:,.0f} rows/s)")
        serving = make_engine(url)  # the web's settings: a 4 s statement timeout
        first, deepest = paging(serving, big)
        print(f"first page {first:.2f} ms, deepest page {deepest:.2f} ms: deepest / first = {deepest / first:.2f}"
              f" (goal <= 2)")
        (totals_big, all_big), (totals_small, all_small) = month_totals(serving, big), month_totals(serving, small)
        print(f"a month's totals: {totals_big:.2f} ms at {args.rows:,} rows, {totals_small:.2f} ms at "
              f"{args.reference:,}: ratio {totals_big / totals_small:.2f} (goal <= 5)")
        print(f"a month's totals, daily series and breakdowns: {all_big:.2f} ms at {args.rows:,} rows, "
              f"{all_small:.2f} ms at {args.reference:,}: ratio {all_big / all_small:.2f}")
        print(f"export plan: {export_plan(serving, big)}")
        size, growth, export_seconds, _ = export_memory(url, big, trace=False)
        print(f"export of {args.rows:,} rows: {size / 2**20:.0f} MiB of CSV in {export_seconds:.0f} s, "
              f"peak RSS growth {growth:.1f} MiB (goal <= 50 MiB)")
        if args.trace:
            _, _, traced_seconds, traced = export_memory(url, big, trace=True)
            print(f"the same under tracemalloc: peak of Python allocations {traced:.1f} MiB ({traced_seconds:.0f} s)")
        with Session(engine) as session:
            problems, _ = check(session, now=NOW)
        print(f"ledger check after seeding: {'passed' if not problems else problems}")
        serving.dispose()
        engine.dispose()
    if args.no_send:
        return
    befores, afters = [], []
    with tempfile.TemporaryDirectory() as folder:
        tree = Path(args.before_tree) if args.before_tree else tree_at(args.before, folder)
        for _ in range(args.send_runs):  # alternated: a shared machine's load changes by the minute
            befores.append(send_figure(tree, args.send_rounds, args.send_seconds))
            afters.append(send_figure(ROOT, args.send_rounds, args.send_seconds))
    before, after = statistics.median(befores), statistics.median(afters)
    print(f"send benchmark (median ratio send/bare per run): before {' '.join(f'{x:.2f}' for x in befores)}, "
          f"after {' '.join(f'{x:.2f}' for x in afters)}: after / before = {after / before:.2f} (goal >= 0.90)")


if __name__ == "__main__":
    main()
