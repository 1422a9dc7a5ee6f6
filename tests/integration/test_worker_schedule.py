"""The worker's daily ledger check: run again the next day after a check, within a minute
after a check that could not run."""

from portal import worker


def test_the_next_ledger_check_is_a_day_away_after_a_check(app):
    assert worker.check_ledger(app) == worker.RECONCILE_EVERY


def test_a_ledger_check_that_could_not_run_is_tried_again_within_a_minute(app, monkeypatch):
    def down(app):
        raise ConnectionError("database unavailable")

    monkeypatch.setattr(worker, "reconcile", down)
    assert worker.check_ledger(app) == worker.SWEEP_EVERY
