"""The benchmarks keep working: each runs once, tiny, against the test PostgreSQL server."""

import re
import runpy
import shutil
from pathlib import Path

import pytest

from tests.conftest import PG_URL

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.skipif(not PG_URL, reason="the ledger benchmark measures PostgreSQL; set PORTAL_TEST_DATABASE_URL")
def test_the_ledger_benchmark_runs_and_leaves_a_consistent_ledger(monkeypatch, capsys):
    monkeypatch.setenv("PORTAL_BENCH_DATABASE_URL", PG_URL)
    bench = runpy.run_path(str(BENCH / "ledger_debit.py"))
    bench["main"](["--rounds", "2", "--per-round", "5"])
    output = capsys.readouterr().out
    assert "ledger check after the run: passed" in output and "median ratio service/bare:" in output


@pytest.mark.skipif(not PG_URL, reason="the API benchmark measures PostgreSQL under gunicorn; set PORTAL_TEST_DATABASE_URL")
@pytest.mark.skipif(not shutil.which("wrk"), reason="the API benchmark drives gunicorn with wrk: apt-get install wrk")
@pytest.mark.parametrize("route", ["sms", "otp"])
def test_the_api_benchmark_runs_against_the_bare_app_and_leaves_a_consistent_ledger(monkeypatch, capsys, route):
    monkeypatch.setenv("PORTAL_BENCH_DATABASE_URL", PG_URL)
    bench = runpy.run_path(str(BENCH / "api_send.py"))
    bench["main"](["--route", route, "--rounds", "1", "--seconds", "1", "--connections", "4", "--sends", "10"])
    output = capsys.readouterr().out
    assert "ledger check after the run: passed" in output
    assert re.search(r"round 1: POST /\S+ +[0-9.]+/s +bare app +[0-9.]+/s +ratio [0-9.]+", output)
    assert re.search(r"[0-9.]+ CPU ms and [0-9.]+ round trips per send", output)
    assert re.search(r"median ratio send/bare .*: [0-9.]+ \(goal >= 0.5\)", output)


@pytest.mark.skipif(not PG_URL, reason="the alert benchmark runs its worker on PostgreSQL; set PORTAL_TEST_DATABASE_URL")
def test_the_alert_latency_benchmark_runs_and_every_notice_arrives(monkeypatch, capsys):
    monkeypatch.setenv("PORTAL_BENCH_DATABASE_URL", PG_URL)
    bench = runpy.run_path(str(BENCH / "alert_latency.py"))
    bench["main"](["--crossings", "3"])
    output = capsys.readouterr().out
    assert "mail     3/3 arrived" in output and "webhook  3/3 arrived" in output


@pytest.mark.skipif(not PG_URL, reason="the usage benchmark measures PostgreSQL; set PORTAL_TEST_DATABASE_URL")
def test_the_usage_benchmark_runs_and_prints_every_figure(monkeypatch, capsys):
    monkeypatch.setenv("PORTAL_BENCH_DATABASE_URL", PG_URL)
    bench = runpy.run_path(str(BENCH / "usage_scale.py"))
    bench["main"](["--rows", "600", "--reference", "100", "--spread", "300", "--accounts", "2", "--no-send"])
    output = capsys.readouterr().out
    for figure in ("deepest / first =", "a month's totals:", "peak RSS growth", "ledger check after seeding: passed"):
        assert figure in output
