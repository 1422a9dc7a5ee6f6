"""The benchmarks keep working: each runs once, tiny, against the test PostgreSQL server."""

import runpy
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
def test_the_api_benchmark_runs_and_leaves_a_consistent_ledger(monkeypatch, capsys):
    monkeypatch.setenv("PORTAL_BENCH_DATABASE_URL", PG_URL)
    bench = runpy.run_path(str(BENCH / "api_send.py"))
    bench["main"](["--rounds", "2", "--per-round", "16", "--clients", "4"])
    output = capsys.readouterr().out
    assert "ledger check after the run: passed" in output and "median ratio send/bare:" in output


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
