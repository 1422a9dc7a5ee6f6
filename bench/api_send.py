"""Requests per second of the API's POST /sms/messages/ (or POST /otp/request/) against a
separate minimal app (bench/bare_app.py: Flask + psycopg, one UPDATE of one row and one
commit per request), on PostgreSQL. Goals: ratio >= 0.5, CPU <= 1.5 ms and <= 3 round trips
per send.

Both apps run under gunicorn with the same number of workers on the same database and are
driven by wrk (a Lua script writes each POST body and the Basic auth) for a fixed time per
round, alternated in rounds; the figure is the median of the per-round ratios (send rate /
bare rate), so a busy shared machine affects both sides alike. Any answer but a 201, or any
socket error, during a round stops the benchmark.

In process it also measures, through the portal's WSGI app called directly (no HTTP, no
gunicorn), the portal's CPU milliseconds per send (time.process_time, PostgreSQL's own CPU
not included) and the database round trips per send (every ReadyForQuery in libpq's protocol
trace: BEGIN, COMMIT and pool pings included); and the same for the bare app. PostgreSQL's
own CPU per send (its server processes' time in /proc) is printed beside them: the two cores
are shared, so the rate depends on it as much as on the portal's.

    .venv/bin/python bench/api_send.py [--route sms|otp] [--rounds 7] [--seconds 5] [--connections 16]
                                       [--workers 2] [--sends 300]

PORTAL_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test) names the
server; the benchmark works in a scratch database it creates and drops. The rate limits stay
on (set far above what the benchmark reaches), as do the daily spend cap and the OTP guards.
"""

import argparse
import base64
import ctypes
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg import pq  # noqa: E402
from sqlalchemy import event, text  # noqa: E402
from sqlmodel import Session  # noqa: E402
from werkzeug.test import EnvironBuilder  # noqa: E402

from portal.accounts.models import Account, Membership, User  # noqa: E402
from portal.db import make_engine  # noqa: E402
from portal.ledger import service as ledger  # noqa: E402
from portal.ledger.check import check  # noqa: E402
from portal.ledger.models import CreditState  # noqa: E402
from portal.migrate import scratch_database  # noqa: E402

SERVER = os.environ.get("PORTAL_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
SECRET_KEY = "bench-secret-key-long-enough-for-checks"
SITE = "bench.example.com"
ROUTES = {"sms": "/sms/messages/", "otp": "/otp/request/"}
PORTAL_SETTINGS = {  # the limits stay in the path, far above what the benchmark reaches
    "SECRET_KEY": SECRET_KEY, "API_SEND_RATE_LIMIT": "1000000 per second", "API_ACCOUNT_RATE_LIMIT": "1000000 per second",
    "API_DAILY_SPEND_CAP_YEN": 1_000_000_000,
}
WRK = shutil.which("wrk") or "/usr/bin/wrk"
BATCHES = 5  # of the sends measured in process

# Each wrk thread numbers its requests; `run` (one per wrk invocation) keeps the bodies of
# different invocations apart. An OTP request goes to a number of its own: its last four
# digits name the invocation and thread, the four before them (the prefix: the valid mobile
# numbers +8190… have 1000 to 9999 there) follow on from where the previous thread's range
# began, so the prefixes are used evenly (the guards allow 20 codes a prefix an hour).
LUA = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic AUTH"
local threads = {}
counter, bad, first_bad, run, kind = 0, 0, "", 0, "bare"

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  run, kind = tonumber(args[1]), args[2]
end

function request()
  counter = counter + 1
  local body = ""
  if kind == "sms" then
    body = string.format("recipient=%%2B819012345678&sender=Chotto&message=bench+r%d+t%d+n%d", run, id, counter)
  elseif kind == "otp" then
    local pair = run * 16 + id
    body = string.format("website=SITE&phone_number=%%2B8190%04d%04d", 1000 + (pair * 3001 + counter) % 9000, pair % 10000)
  end
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status ~= 201 then
    bad = bad + 1
    if first_bad == "" then first_bad = status .. " " .. string.sub(body, 1, 300) end
  end
end

function done(summary, latency, requests)
  local total, first = 0, ""
  for _, thread in ipairs(threads) do
    total = total + thread:get("bad")
    if first == "" then first = thread:get("first_bad") end
  end
  local e = summary.errors
  io.write(string.format("BENCH requests=%d duration_us=%d not_201=%d socket_errors=%d\n", summary.requests,
                         summary.duration, total, e.connect + e.read + e.write + e.timeout))
  io.write("BENCH first=" .. first:gsub("\n", " ") .. "\n")
end
"""


@dataclass(frozen=True)
class Prepared:
    sid: str
    token: str


def prepare(url: str) -> Prepared:
    """An account that bought credit (so it may send anywhere in Japan) with plenty of it, a
    live credential for SMS and OTP, a proven OTP site without resend cooldown, and the bare
    app's counter row."""
    from portal import create_app  # the credential service mails the owners: it needs the app
    from portal.credentials import service as credentials
    from portal.otp import rules as otp_rules
    from portal.otp import service as otp

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
    engine.dispose()
    app = create_app({"ENV": "test", "DATABASE_URL": url, "SECRET_KEY": SECRET_KEY})
    with app.app_context(), Session(app.extensions["portal.engine"], expire_on_commit=False) as session:
        credential, token = credentials.create(session=session, account_id=account.id, user_id=user.id, name="bench",
                                               mode="live", scopes=["sms", "otp"], networks=[], monthly_cap=None,
                                               now=now)
        site = otp.register_site(session=session, account_id=account.id, website=SITE, now=now)
        otp.mark_proven(session=session, account_id=account.id, site_id=site.id, proven=True, now=now)
        settings = replace(otp_rules.default_settings("Bench"), resend_cooldown_seconds=0)
        otp.update_settings(session=session, account_id=account.id, site_id=site.id, settings=settings, now=now)
    app.extensions["portal.engine"].dispose()
    return Prepared(credential.sid, token)


# -- over HTTP: both apps under gunicorn, driven by wrk -------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(target: str, probe: str, port: int, workers: int, env: dict) -> subprocess.Popen:
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    process = subprocess.Popen([gunicorn, "--workers", str(workers), "--bind", f"127.0.0.1:{port}",
                                "--log-level", "warning", target], cwd=ROOT, env=os.environ | env | {"PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn {target} exited with {process.returncode}")
        try:  # any HTTP answer (the bare app's 405 too) means a worker has loaded the app
            urllib.request.urlopen(f"http://127.0.0.1:{port}{probe}", timeout=10).close()
            return process
        except urllib.error.HTTPError:
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"gunicorn {target} did not start")


def portal_env(url: str) -> dict:
    return {"PORTAL_ENV": "test", "PORTAL_DATABASE_URL": url} | {f"PORTAL_{key}": str(value)
                                                               for key, value in PORTAL_SETTINGS.items()}


_RUNS = iter(range(1, 10**6))


def drive(script: Path, url: str, kind: str, seconds: int, connections: int, warming: bool = False) -> float:
    """Requests per second over `seconds`; raises on any answer but 201 and any socket error,
    and on no answer at all unless `warming` (a loaded machine may answer none in a warm-up)."""
    threads = min(2, connections)
    command = [WRK, "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s", "-s",
               str(script), url, "--", str(next(_RUNS)), kind]
    output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    found = re.search(r"BENCH requests=(\d+) duration_us=(\d+) not_201=(\d+) socket_errors=(\d+)", output.stdout)
    if output.returncode != 0 or found is None:
        raise RuntimeError(f"wrk failed on {url}: {output.stdout}{output.stderr}")
    requests, duration_us, not_201, socket_errors = map(int, found.groups())
    if not_201 or socket_errors or not (requests or warming):
        first = re.search(r"BENCH first=(.*)", output.stdout)
        raise RuntimeError(f"{url}: {not_201} answers were not 201 and {socket_errors} socket errors in {requests} "
                           f"requests; first: {first.group(1) if first else '?'}")
    return requests / (duration_us / 1e6)


def warm(script: Path, url: str, kind: str, connections: int) -> None:
    """Until every worker has loaded the app, connected and compiled its statements: a few
    seconds of requests, again while none was answered (up to five times)."""
    for _ in range(5):
        if drive(script, url, kind, 2, connections, warming=True):
            return
    raise RuntimeError(f"{url} answered no request in its warm-up")


# -- in process: CPU and round trips per request -------------------------------------------------


class Trips:
    """Counts the round trips of every connection opened after `watch`: libpq traces the
    protocol to a file, and each ReadyForQuery ends one exchange (a simple query such as
    BEGIN, COMMIT or a ping, or an extended query ending in Sync). It also reads the CPU time
    of those connections' server processes (PostgreSQL runs on this machine: /proc)."""

    def __init__(self):
        self.file = tempfile.TemporaryFile()
        self.libc = ctypes.CDLL(None)
        self.servers: list[int] = []

    def watch(self, connection: psycopg.Connection) -> None:
        connection.pgconn.trace(self.file.fileno())
        connection.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        self.servers.append(connection.info.backend_pid)

    def count(self) -> int:
        self.libc.fflush(None)  # libpq writes through stdio
        self.file.seek(0)
        return sum(1 for line in self.file if b"\tReadyForQuery\t" in line)

    def server_cpu(self) -> float:
        """Seconds of CPU (user and system) the watched connections' server processes used."""
        seconds = 0.0
        for pid in self.servers:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # that connection was closed
                continue
            seconds += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return seconds


def sms_body(run: int, n: int) -> str:
    return f"recipient=%2B819012345678&sender=Chotto&message=inprocess+r{run}+n{n}"


def otp_body(run: int, n: int) -> str:
    pair = 5000 + run  # as the wrk script numbers them, apart from its invocations
    return f"website={SITE}&phone_number=%2B8190{1000 + (pair * 3001 + n) % 9000:04d}{pair % 10000:04d}"


def in_process(url: str, prepared: Prepared, kind: str, sends: int) -> tuple[float, float, float]:
    """The portal's CPU milliseconds, round trips and PostgreSQL's CPU milliseconds per send,
    its WSGI app called directly."""
    from portal import create_app

    app = create_app({"ENV": "test", "DATABASE_URL": url} | PORTAL_SETTINGS)
    trips = Trips()
    event.listen(app.extensions["portal.engine"], "connect", lambda dbapi, _record: trips.watch(dbapi))
    auth = "Basic " + base64.b64encode(f"{prepared.sid}:{prepared.token}".encode()).decode()
    body = sms_body if kind == "sms" else otp_body

    def environs(run: int, count: int) -> list[dict]:
        return [EnvironBuilder(path=ROUTES[kind], method="POST", data=body(run, n),
                               content_type="application/x-www-form-urlencoded", headers={"Authorization": auth},
                               environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_environ() for n in range(count)]

    def call(batch: list[dict]) -> None:
        for environ in batch:
            status = []
            answer = app(environ, lambda line, headers, exc_info=None: status.append(line))
            content = b"".join(answer)
            getattr(answer, "close", lambda: None)()
            if not status[0].startswith("201"):
                raise RuntimeError(f"in process {ROUTES[kind]}: {status[0]} {content[:300]!r}")

    call(environs(1, 30))  # warm up: connections, compiled statements, caches
    cpu, per_send, server = [], [], []
    for run in range(2, 2 + BATCHES):  # the median batch: another process can slow this one down
        batch = environs(run, max(1, sends // BATCHES))
        before, server_before = trips.count(), trips.server_cpu()
        started = time.process_time()
        call(batch)
        cpu.append((time.process_time() - started) / len(batch) * 1000)
        per_send.append((trips.count() - before) / len(batch))
        server.append((trips.server_cpu() - server_before) / len(batch) * 1000)
    app.extensions["portal.engine"].dispose()
    return statistics.median(cpu), statistics.median(per_send), statistics.median(server)


def bare_in_process(url: str, count: int) -> tuple[float, float, float]:
    """The same for the bare app."""
    os.environ["BENCH_BARE_DATABASE_URL"] = url
    from bench import bare_app

    trips = Trips()
    bare_app._connection = connection = psycopg.connect(url)
    trips.watch(connection)
    environs = [EnvironBuilder(path="/bare", method="POST").get_environ() for _ in range(count + 30)]

    def call(batch):
        for environ in batch:
            answer = bare_app.app(environ, lambda line, headers, exc_info=None: None)
            b"".join(answer)
            getattr(answer, "close", lambda: None)()

    call(environs[:30])
    before, server_before = trips.count(), trips.server_cpu()
    started = time.process_time()
    call(environs[30:])
    cpu = time.process_time() - started
    per_request = (trips.count() - before) / count
    server = trips.server_cpu() - server_before
    connection.close()
    bare_app._connection = None
    return cpu / count * 1000, per_request, server / count * 1000


# -- the run -------------------------------------------------------------------------------------


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--route", choices=sorted(ROUTES), default="sms")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sends", type=int, default=500, help="sends measured in process, in 5 batches")
    args = parser.parse_args(argv)
    if not Path(WRK).exists():
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    path = ROUTES[args.route]
    with scratch_database(SERVER, "chotto_bench") as url, tempfile.TemporaryDirectory() as folder:
        prepared = prepare(url)
        auth = base64.b64encode(f"{prepared.sid}:{prepared.token}".encode()).decode()
        script = Path(folder) / "post.lua"
        script.write_text(LUA.replace("AUTH", auth).replace("SITE", quote(SITE)))
        psycopg_url = url.replace("postgresql+psycopg://", "postgresql://")
        portal_port, bare_port = free_port(), free_port()
        portal = serve("portal:create_app()", "/api/openapi.json", portal_port, args.workers, portal_env(url))
        try:
            bare = serve("bench.bare_app:app", "/bare", bare_port, args.workers, {"BENCH_BARE_DATABASE_URL": psycopg_url})
        except BaseException:
            portal.terminate()
            raise
        sends_url, bare_url = f"http://127.0.0.1:{portal_port}{path}", f"http://127.0.0.1:{bare_port}/bare"
        try:
            for target, kind in ((sends_url, args.route), (bare_url, "bare")):
                warm(script, target, kind, args.connections)
            with psycopg.connect(psycopg_url, autocommit=True) as connection:
                connection.execute("ANALYZE")  # what autovacuum does once tables fill (the test server runs without)
            ratios = []
            for round_no in range(args.rounds):
                if round_no % 2:
                    bare_rate = drive(script, bare_url, "bare", args.seconds, args.connections)
                    send_rate = drive(script, sends_url, args.route, args.seconds, args.connections)
                else:
                    send_rate = drive(script, sends_url, args.route, args.seconds, args.connections)
                    bare_rate = drive(script, bare_url, "bare", args.seconds, args.connections)
                ratios.append(send_rate / bare_rate)
                print(f"round {round_no + 1}: POST {path} {send_rate:7.1f}/s   bare app {bare_rate:7.1f}/s"
                      f"   ratio {send_rate / bare_rate:.2f}", flush=True)
        finally:
            for process in (portal, bare):
                process.terminate()
                process.wait(timeout=20)
        cpu, trips, server = in_process(url, prepared, args.route, args.sends)
        bare_cpu, bare_trips, bare_server = bare_in_process(psycopg_url, args.sends)
        engine = make_engine(url)
        with Session(engine) as session:
            problems, _ = check(session, now=datetime.now(timezone.utc))
        engine.dispose()
    print(f"in process, POST {path}: {cpu:.2f} CPU ms and {trips:.1f} round trips per send (goals <= 1.5, <= 3); "
          f"bare app: {bare_cpu:.2f} CPU ms and {bare_trips:.1f} round trips per request")
    print(f"PostgreSQL's own CPU in process: {server:.2f} ms per send; bare app: {bare_server:.2f} ms per request "
          f"(at {os.sysconf('SC_CLK_TCK')} ticks a second: a rough figure)")
    print(f"ledger check after the run: {'passed' if not problems else problems}")
    median = statistics.median(ratios)
    print(f"median ratio send/bare over {args.rounds} rounds of {args.seconds:g} s, {args.workers} gunicorn workers, "
          f"{args.connections} wrk connections: {median:.2f} (goal >= 0.5)")
    return median


if __name__ == "__main__":
    main()
