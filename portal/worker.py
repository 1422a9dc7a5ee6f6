"""The worker: drains the outbox (e-mail, SMS, alerts). A separate process: `portal worker`."""

import logging
import signal
import time

from flask import Flask

from portal import clock, db, documents, outbox, services
from portal.accounts import mails
from portal.accounts.signup import purge_stale
from portal.alerts import service as alerts
from portal.api import wire
from portal.billing.operator import check_payments, reconcile_pending
from portal.ledger.check import check
from portal.ledger.operator import sweep
from portal.mail import rendered
from portal.messaging import delivery
from portal.messaging.carrier import OutgoingSMS
from portal.otp import proof
from portal.otp import service as otp
from portal.outbox import OutboxKind
from portal.usage import service as usage
from portal.postpay import invoices as postpay_invoices
from portal.postpay import overdue as postpay_overdue
from portal.postpay.check import check as check_postpay

log = logging.getLogger("portal.worker")


def compose(session, *, payload: dict, now):
    """What to send for a mail composed as it is delivered (portal.mail.defer)."""
    if payload["compose"] == alerts.CONFIRMATION_MAIL:
        return alerts.confirmation_mail(session, payload=payload, now=now)
    return mails.compose(session, payload=payload, now=now)


def deliver(session, message: outbox.OutboxMessage, now) -> None:
    payload = message.data()
    if message.kind == OutboxKind.EMAIL:
        if (payload := rendered(session, payload=payload, now=now, compose=compose)) is not None:
            services.mailer().send(session=session, payload=payload, now=now)
    elif message.kind == OutboxKind.SMS:
        services.carrier().send_sms(session=session, sms=OutgoingSMS(**payload), now=now)
    elif message.kind == OutboxKind.API_SMS:
        delivery.deliver_sms(session, message_id=payload["message_id"], carrier=services.carrier(),
                             bodies=wire.StatusCallbacks(services.base_url()), now=now, held=_held(message))
        otp.after_sms(session=session, message_id=payload["message_id"], caller=services.otp_caller(), now=now)
    elif message.kind == OutboxKind.API_CALL:
        delivery.place_call(session, call_id=payload["call_id"], carrier=services.carrier(),
                            bodies=wire.StatusCallbacks(services.base_url()), now=now, held=_held(message))
        otp.after_call(session=session, call_id=payload["call_id"])
    elif message.kind == OutboxKind.OTP_FALLBACK:
        otp.call_fallback(session=session, code_id=payload["code_id"], caller=services.otp_caller(), now=now)
    elif message.kind == OutboxKind.ALERT:
        alerts.deliver(session, delivery_id=payload["delivery_id"], outside=services.alert_outside(), now=now)
    elif message.kind == OutboxKind.CALLBACK:
        delivery.post_callback(payload, allow_private=services.callbacks_may_reach_private_addresses(), now=now)
    else:
        raise ValueError(f"unknown outbox kind {message.kind!r}")


def _held(message: outbox.OutboxMessage) -> outbox.Held:
    """The lease this worker holds on the job (_deliver_one read the row after checking it)."""
    return outbox.Held(message.id, message.leased_until)


def drain_once(app: Flask) -> int:
    """Deliver every message due now; returns how many were handled."""
    with app.app_context():
        leases = services.outbox_leases()
        with db.job_session() as session:
            claimed = [(m.id, m.kind, m.leased_until) for m in outbox.claim(session, now=clock.now(), leases=leases)]
        for message_id, kind, lease in claimed:
            _deliver_one(message_id, lease, leases.get(kind))
        return len(claimed)


def _deliver_one(message_id: int, lease, short_lease=None) -> None:
    """Deliver one claimed message. The row is read in a short transaction, the carrier or
    SMTP server is talked to outside any transaction, and the result is recorded after
    checking that no other worker took the message over meanwhile (mark_sent's unit also
    writes what delivering left in the session, such as the development mailbox's copy).
    A kind with a short lease (alerts) has it renewed first: it may have waited in the batch."""
    with db.job_session() as session:
        if short_lease is not None:
            lease = outbox.renew(session, message_id=message_id, lease=lease, until=clock.now() + short_lease)
            if lease is None:
                return
        with db.read(session):
            message = session.get(outbox.OutboxMessage, message_id)
            mine = message.sent_at is None and message.leased_until == lease
            kind, payload = message.kind, message.data()
        if not mine:
            return
        try:
            deliver(session, message, clock.now())
        except Exception as error:  # one bad message must not stop the others
            session.rollback()  # nothing a failed delivery left in the session is recorded
            log.warning("outbox message %s failed: %s", message_id, type(error).__name__)
            stored = db.describe(error, frames=False) if db.is_database_error(error) else repr(error)  # no values
            if outbox.mark_failed_attempt(session, message_id=message_id, lease=lease, error=stored, now=clock.now(),
                                          on_give_up=give_up):
                _guarded("after a give-up", lambda _: after_give_up(session, kind, payload, clock.now()), None)
            return
        outbox.mark_sent(session, message_id=message_id, lease=lease, now=clock.now())


def give_up(session, message: outbox.OutboxMessage) -> None:
    """The outbox gives up on a message, inside its unit: a customer's SMS or call is not left
    queued and charged for ever (R12): it fails with its refund, or is held as UNKNOWN for the
    reconcile pass (portal.messaging.delivery)."""
    payload, bodies, now = message.data(), wire.StatusCallbacks(services.base_url()), clock.now()
    if message.kind == OutboxKind.API_SMS:
        delivery.give_up_sms_in(session, message_id=payload["message_id"], bodies=bodies, now=now)
    elif message.kind == OutboxKind.API_CALL:
        delivery.give_up_call_in(session, call_id=payload["call_id"], bodies=bodies, now=now)


def after_give_up(session, kind: str, payload: dict, now) -> None:
    """What follows a send's end, as after a delivery: an OTP site hears of its code's failed
    SMS (and the fallback call is tried), a code read out is hidden. `payload` is the one read
    before the give-up redacted it."""
    if kind == OutboxKind.API_SMS:
        otp.after_sms(session=session, message_id=payload["message_id"], caller=services.otp_caller(), now=now)
    elif kind == OutboxKind.API_CALL:
        otp.after_call(session=session, call_id=payload["call_id"])


SENDS_EVERY = 300.0
SENDS_BUDGET = 20.0
"""Seconds a reconcile pass may start lookups for: it runs in the worker's loop, so with each
lookup bounded by carrier.LOOKUP_TIMEOUT (10 s) it holds the outbox up at most half a minute,
well inside the minute balance alerts are promised in. What is left waits for the next pass."""


def reconcile_sends(app: Flask, *, budget: float = SENDS_BUDGET, timer=time.monotonic) -> int:
    """Ask the carrier about the messages and calls whose outcome is unknown (R12), by their
    idempotency keys, and settle each as it answers, oldest first, until `budget` seconds have
    gone. When the carrier's status API is out of reach the pass ends (asking about the others
    would only wait on it again); a send it fails to answer about for another reason is
    skipped. Either is asked about again on the next pass. Returns how many were settled."""
    settled, deadline = 0, timer() + budget
    with app.app_context():
        carrier, bodies = services.carrier(), wire.StatusCallbacks(services.base_url())
        with db.job_session() as session:
            messages, calls = delivery.unknown_sends(session)
            sends = [(OutboxKind.API_SMS, row_id) for row_id in messages]
            sends += [(OutboxKind.API_CALL, row_id) for row_id in calls]
            for kind, row_id in sends:
                if timer() >= deadline:
                    log.info("carrier reconciliation: out of time, the rest waits for the next pass")
                    break
                try:
                    if _reconcile_one(session, kind, row_id, carrier, bodies):
                        settled += 1
                except delivery.CarrierCannotTell as unknown:
                    session.rollback()
                    if unknown.unreachable:
                        log.warning("carrier reconciliation stopped: the carrier cannot tell about %s now (%s)",
                                    unknown, type(unknown.__cause__).__name__)
                        break
                    log.warning("carrier reconciliation skipped %s: the carrier's answer failed (%s)",
                                unknown, type(unknown.__cause__).__name__)
                except Exception as error:  # one send that fails to settle must not stop the others
                    session.rollback()
                    log.warning("reconciling %s %s failed: %s", kind, row_id, type(error).__name__)
    if settled:
        log.info("carrier reconciliation: %s sends settled", settled)
    return settled


def _reconcile_one(session, kind: str, row_id: int, carrier, bodies) -> bool:
    if kind == OutboxKind.API_SMS:
        status = delivery.reconcile_sms(session, message_id=row_id, carrier=carrier, bodies=bodies, now=clock.now())
        payload = {"message_id": row_id}
    else:
        status = delivery.reconcile_call(session, call_id=row_id, carrier=carrier, bodies=bodies, now=clock.now())
        payload = {"call_id": row_id}
    if status is not None:
        after_give_up(session, kind, payload, clock.now())
    return status is not None


SWEEP_EVERY = 60.0
RECONCILE_EVERY = 24 * 3600.0


def sweep_expiry(app: Flask) -> int:
    with app.app_context():
        accounts, lines = sweep(engine=db.engine(), now=clock.now())
    if lines:
        log.info("expiry sweep: %s journal lines in %s accounts", lines, accounts)
    return lines


OWNERSHIP_EVERY = 3600.0


def recheck_ownership(app: Flask) -> int:
    """The monthly check of proven OTP sites (portal.otp.proof), a few each hour: a site whose
    token file is gone is unproven again and its owners are told. Returns the proofs lost."""
    with app.app_context():
        with db.job_session() as session:
            lost = proof.recheck_due(session=session, probe=services.ownership_probe(), now=clock.now())
    if lost:
        log.info("OTP ownership: %s sites lost their proof", lost)
    return lost


def alert_warnings(app: Flask) -> int:
    """The scheduled alerts: expiry warnings (7 days, 1 day) and run-out warnings."""
    with app.app_context():
        with db.job_session() as session:
            written = alerts.scheduled_pass(session=session, now=clock.now())
    if written:
        log.info("alerts: %s warnings written", written)
    return written


def purge_signups(app: Flask) -> int:
    with app.app_context():
        with db.job_session() as session:
            return purge_stale(session=session, now=clock.now())


def billing_round(app: Flask) -> int:
    """Payments whose webhook has not come, and invoice PDFs not rendered yet."""
    with app.app_context():
        with db.job_session() as session:
            applied = reconcile_pending(session=session, gateway=services.gateway(),
                                        issuer=services.issuer(), now=clock.now())
            rendered = documents.render_pending(session, now=clock.now())
    if applied or rendered:
        log.info("billing: %s purchases reconciled, %s invoice PDFs rendered", applied, rendered)
    return applied + rendered


def postpay_round(app: Flask) -> int:
    """Invoice billing: the reminders, suspensions and line-use notices, then the month close
    after midnight Japan time on the 1st and the PDFs of invoices not rendered yet. Without
    PORTAL_BANK_TRANSFER_ACCOUNT (production) no invoice is written, and the log says so every
    round while any account has a line."""
    written = rendered = 0
    with app.app_context():
        with db.job_session() as session:  # first: an invoice that fails to close or render stops no reminder
            steps = postpay_overdue.scheduled_pass(session=session, now=clock.now(),
                                                   suspend_after_days=app.config["POSTPAY_SUSPEND_AFTER_DAYS"])
        bank = services.bank_account()
        with db.job_session() as session:
            if bank is not None:
                written = postpay_invoices.scheduled_close(session=session, issuer=services.issuer(),
                                                           bank=bank, now=clock.now())
                rendered = documents.render_pending_postpay(session)
            elif postpay_invoices.billable_accounts(session=session):
                log.error("postpay: PORTAL_BANK_TRANSFER_ACCOUNT is not set: no invoice can be issued")
    if written or rendered or steps:
        log.info("postpay: %s invoices written, %s PDFs rendered, %s overdue and usage steps", written, rendered, steps)
    return written + rendered + steps


def reconcile(app: Flask) -> int:
    """The daily ledger check (R15): any drift is logged as an error for the operators."""
    with app.app_context():
        with db.job_session() as session:
            problems, _ = check(session, now=clock.now())
            problems = [*problems, *check_payments(session), *check_postpay(session)]
    for problem in problems:
        log.error("ledger drift: %s", problem)
    return len(problems)


def check_ledger(app: Flask) -> float:
    """The daily check; returns the seconds until the next one (a minute when this one could
    not run, say while the database was down)."""
    checked = _guarded("ledger reconciliation", reconcile, app) is not None
    return RECONCILE_EVERY if checked else SWEEP_EVERY


PURGE_EVERY = 24 * 3600.0


def purge_usage(app: Flask) -> int:
    """The daily pass of the usage history's retention: rows older than 13 months go."""
    with app.app_context():
        with db.job_session() as session:
            return usage.purge(session, now=clock.now())


def purge_pass(app: Flask) -> float:
    """The daily purge; returns the seconds until the next (a minute when this one failed)."""
    purged = _guarded("usage retention", purge_usage, app) is not None
    return PURGE_EVERY if purged else SWEEP_EVERY


def _guarded(task: str, job, app: Flask):
    """One failing task must not stop the others: it is logged and tried again later."""
    try:
        return job(app)
    except Exception:
        log.exception("%s failed; will try again", task)
        return None


def run(app: Flask, *, idle_sleep_seconds: int = 1) -> None:
    """Drain the outbox continuously, sweep expired credit once a minute, ask the carrier about
    sends whose outcome is unknown every five minutes, re-check OTP sites' ownership once an
    hour (each site monthly), check the ledger and purge usage older than 13 months once a day."""
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    log.info("worker started")
    next_sweep = next_reconcile = next_ownership = next_purge = next_sends = 0.0
    while not stopping:
        if time.monotonic() >= next_sends:
            next_sends = time.monotonic() + SENDS_EVERY
            _guarded("carrier reconciliation", reconcile_sends, app)
        if time.monotonic() >= next_reconcile:
            next_reconcile = time.monotonic() + check_ledger(app)
        if time.monotonic() >= next_sweep:
            next_sweep = time.monotonic() + SWEEP_EVERY
            _guarded("expiry sweep", sweep_expiry, app)
            _guarded("alert warnings", alert_warnings, app)
            _guarded("billing", billing_round, app)
            _guarded("invoice billing", postpay_round, app)
            _guarded("stale sign-ups", purge_signups, app)
        if time.monotonic() >= next_purge:
            next_purge = time.monotonic() + purge_pass(app)
        if time.monotonic() >= next_ownership:
            next_ownership = time.monotonic() + OWNERSHIP_EVERY
            _guarded("OTP ownership checks", recheck_ownership, app)
        handled = _guarded("outbox delivery", drain_once, app) or 0
        if not handled:
            time.sleep(idle_sleep_seconds)
    log.info("worker stopped")
