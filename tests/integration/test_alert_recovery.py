"""A balance alert whose worker died is delivered by another within the minute promised: alert
jobs have a lease of their own (PORTAL_ALERT_LEASE_SECONDS, 45 s), renewed when their delivery
starts, and a mail or webhook exchange is cut at half of it, so a live worker never loses the
lease mid-send (fixed clock; test_alert_worker_kill.py kills a real worker process)."""

import socket
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal import outbox, worker
from portal.accounts.models import Membership
from portal.alerts import service as alerts
from portal.alerts.models import Delivery, Notice
from portal.config import UnsafeConfiguration, load
from portal.ledger import service as ledger
from portal.mail import DevMail, SMTPMailer
from portal.outbox import OutboxKind, OutboxMessage
from tests.helpers import db_session, deliver_outbox, make_user

YEN = 1000


@pytest.fixture
def owner(app, clock):
    """An account alerted by e-mail only, with no scheduled warnings: a real worker runs its
    scheduled pass at the real time, and only the crossing's notice may be about."""
    user = make_user(app, email="owner@example.com")
    with db_session(app) as session:
        account = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
        alerts.save_channels(session=session, account_id=account, user_id=user.id, email=True, webhook_url=None,
                             sms=False, sms_number=None, expiry_warnings=False, run_out_days=None, now=clock())
    return account


def cross_100_yen(session, account, clock):
    ledger.grant_purchase(session=session, account_id=account, amount=1000 * YEN, paid_at=clock(),
                          payment_ref="pi_1", now=clock())
    ledger.debit(session=session, account_id=account, amount=950 * YEN, idempotency_key="use", reason="sms",
                 now=clock())


def alert_mails(app) -> list[DevMail]:
    with db_session(app) as s:
        return list(s.scalars(select(DevMail).where(DevMail.subject.contains("¥100"))))


def test_alert_jobs_are_leased_for_the_alert_lease_and_others_for_five_minutes(app, session, clock, owner):
    deliver_outbox(app)  # the sign-up's mails
    cross_100_yen(session, owner, clock)
    outbox.enqueue(session, kind=OutboxKind.EMAIL, payload={"to": "x@example.com", "subject": "s", "text": "t",
                                                            "html": "h"}, now=clock())
    session.commit()
    leases = {OutboxKind.ALERT: timedelta(seconds=45)}
    claimed = {m.kind: m.leased_until for m in outbox.claim(session, now=clock(), leases=leases)}
    assert claimed == {OutboxKind.ALERT: clock() + timedelta(seconds=45), OutboxKind.EMAIL: clock() + outbox.LEASE}


def test_a_worker_dying_after_claiming_an_alert_frees_it_within_the_alert_lease(app, session, clock, owner):
    deliver_outbox(app)
    cross_100_yen(session, owner, clock)
    with app.app_context(), db_session(app) as s:
        claimed = outbox.claim(s, now=clock(), leases=_leases(app))  # ... and the worker dies
    assert [m.kind for m in claimed] == [OutboxKind.ALERT]
    clock.advance(seconds=44)
    assert worker.drain_once(app) == 0  # the lease still holds
    clock.advance(seconds=2)  # 46 s after the claim: well within the minute
    assert worker.drain_once(app) == 1
    [mail] = alert_mails(app)
    assert notices(app)[0].uuid in mail.text_body
    with db_session(app) as s:
        assert (s.scalars(select(Delivery)).one().status, s.scalars(select(Delivery)).one().attempts) == ("sent", 1)


def test_an_alert_that_waited_in_its_batch_has_its_lease_renewed_before_it_is_sent(app, session, clock, owner):
    deliver_outbox(app)
    cross_100_yen(session, owner, clock)
    with app.app_context(), db_session(app) as s:
        [(message_id, lease)] = [(m.id, m.leased_until) for m in outbox.claim(s, now=clock(), leases=_leases(app))]
    clock.advance(seconds=40)  # slower jobs of the batch went first
    with app.app_context():
        worker._deliver_one(message_id, lease, timedelta(seconds=45))
    with db_session(app) as s:
        job = s.get(OutboxMessage, message_id)
    assert job.sent_at == clock() and len(alert_mails(app)) == 1


def test_an_alert_taken_over_by_another_worker_is_not_sent_by_the_first(app, session, clock, owner):
    deliver_outbox(app)
    cross_100_yen(session, owner, clock)
    with app.app_context(), db_session(app) as s:
        [(message_id, first)] = [(m.id, m.leased_until) for m in outbox.claim(s, now=clock(), leases=_leases(app))]
    clock.advance(seconds=50)  # the first worker stalled past its lease; a second one claims the job
    with app.app_context(), db_session(app) as s:
        [(_, second)] = [(m.id, m.leased_until) for m in outbox.claim(s, now=clock(), leases=_leases(app))]
    with app.app_context():
        worker._deliver_one(message_id, first, timedelta(seconds=45))  # the first wakes up: not its job any more
        assert alert_mails(app) == []
        worker._deliver_one(message_id, second, timedelta(seconds=45))
    assert len(alert_mails(app)) == 1


def test_a_mail_server_that_never_answers_is_given_up_at_the_deadline():
    with silent_server() as (port, accepted):
        mailer = SMTPMailer(f"smtp+plain://127.0.0.1:{port}", "alerts@chotto.test")
        with pytest.raises(TimeoutError):
            mailer.send(session=None, payload={"to": "a@example.com", "subject": "s", "text": "t", "html": "h"},
                        now=None, deadline=0.5)
    assert accepted.is_set()


def test_the_alert_lease_comes_from_the_environment_and_stays_within_the_minute():
    test = {"PORTAL_ENV": "test"}
    assert load(environ=test)["ALERT_LEASE_SECONDS"] == 45
    assert load(environ=test | {"PORTAL_ALERT_LEASE_SECONDS": "6"})["ALERT_LEASE_SECONDS"] == 6
    for wrong in ("1", "51", "600"):
        with pytest.raises(UnsafeConfiguration):
            load(environ=test | {"PORTAL_ALERT_LEASE_SECONDS": wrong})


def notices(app) -> list[Notice]:
    with db_session(app) as s:
        return list(s.scalars(select(Notice).order_by(Notice.id)))


def _leases(app):
    with app.app_context():
        from portal import services
        return services.outbox_leases()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class silent_server:
    """A TCP server that accepts connections and never says a word (a mail server that hangs)."""

    def __enter__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.accepted, self.connections = threading.Event(), []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        return self.listener.getsockname()[1], self.accepted

    def _accept(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(connection)
            self.accepted.set()

    def __exit__(self, *_):
        self.listener.close()
        for connection in self.connections:
            connection.close()
