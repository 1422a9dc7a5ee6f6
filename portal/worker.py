"""The worker: drains the outbox (e-mail and SMS). A separate process: `portal worker`."""

import logging
import signal
import time

from flask import Flask

from portal import clock, db, outbox
from portal.mail import current_mailer
from portal.messaging.carrier import OutgoingSMS, current_carrier

log = logging.getLogger("portal.worker")


def deliver(session, message: outbox.OutboxMessage, now) -> None:
    payload = message.data()
    if message.kind == "email":
        current_mailer().send(session=session, payload=payload, now=now)
    elif message.kind == "sms":
        current_carrier().send_sms(session=session, sms=OutgoingSMS(**payload), now=now)
    else:
        raise ValueError(f"unknown outbox kind {message.kind!r}")


def drain_once(app: Flask) -> int:
    """Deliver every message due now; returns how many were handled."""
    with app.app_context():
        with db.job_session() as session:
            claimed = [m.id for m in outbox.claim(session, now=clock.now())]
        for message_id in claimed:
            _deliver_one(message_id)
        return len(claimed)


def _deliver_one(message_id: int) -> None:
    with db.job_session() as session:
        message = session.get(outbox.OutboxMessage, message_id)
        try:
            deliver(session, message, clock.now())
            message.sent_at = clock.now()
            message.leased_until = None
            session.commit()
        except Exception as error:  # one bad message must not stop the others
            session.rollback()
            log.warning("outbox message %s failed: %s", message_id, type(error).__name__)
            outbox.mark_failed_attempt(session, message_id=message_id, error=repr(error), now=clock.now())


SWEEP_EVERY = 60.0
RECONCILE_EVERY = 24 * 3600.0


def sweep_expiry(app: Flask) -> int:
    from portal.ledger.operator import sweep

    with app.app_context():
        accounts, lines = sweep(engine=db.engine(), now=clock.now())
    if lines:
        log.info("expiry sweep: %s journal lines in %s accounts", lines, accounts)
    return lines


def reconcile(app: Flask) -> int:
    """The daily ledger check (R15): any drift is logged as an error for the operators."""
    from portal.ledger.check import check

    with app.app_context():
        with db.job_session() as session:
            problems, _ = check(session, now=clock.now())
    for problem in problems:
        log.error("ledger drift: %s", problem)
    return len(problems)


def run(app: Flask, *, idle_sleep_seconds: int = 1) -> None:
    """Drain the outbox continuously, sweep expired credit once a minute and check the
    ledger once a day."""
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    log.info("worker started")
    next_sweep = next_reconcile = 0.0
    while not stopping:
        try:
            if time.monotonic() >= next_reconcile:
                reconcile(app)
                next_reconcile = time.monotonic() + RECONCILE_EVERY
            if time.monotonic() >= next_sweep:
                sweep_expiry(app)
                next_sweep = time.monotonic() + SWEEP_EVERY
            handled = drain_once(app)
        except Exception:
            log.exception("worker loop failed; retrying")
            handled = 0
        if not handled:
            time.sleep(idle_sleep_seconds)
    log.info("worker stopped")
