"""The worker's daily ledger check and usage purge: run again the next day after a pass,
within a minute after a pass that could not run."""

from portal import worker


def test_the_next_ledger_check_is_a_day_away_after_a_check(app):
    assert worker.check_ledger(app) == worker.RECONCILE_EVERY


def test_a_ledger_check_that_could_not_run_is_tried_again_within_a_minute(app, monkeypatch):
    def down(app):
        raise ConnectionError("database unavailable")

    monkeypatch.setattr(worker, "reconcile", down)
    assert worker.check_ledger(app) == worker.SWEEP_EVERY


def test_the_daily_purge_deletes_usage_older_than_13_months_and_runs_again_a_day_later(app, session, clock):
    from datetime import timedelta

    from sqlalchemy import func, select

    from portal.messaging.api_models import Message
    from portal.usage import rules
    from tests.usage_rows import World, message

    world = World(app, session)
    message(session, world, rules.purge_before(clock()) - timedelta(seconds=1))
    message(session, world, rules.purge_before(clock()) + timedelta(seconds=1))
    assert worker.purge_pass(app) == worker.PURGE_EVERY
    assert session.scalar(select(func.count()).select_from(Message)) == 1


def test_a_purge_that_could_not_run_is_tried_again_within_a_minute(app, monkeypatch):
    def down(app):
        raise ConnectionError("database unavailable")

    monkeypatch.setattr(worker, "purge_usage", down)
    assert worker.purge_pass(app) == worker.SWEEP_EVERY
