from datetime import timedelta

from sqlalchemy import select

from portal import outbox, worker
from portal.outbox import OutboxMessage
from tests.helpers import db_session


class FlakyMailer:
    def __init__(self, failures):
        self.failures, self.sent = failures, []

    def send(self, *, session, payload, now, deadline=None):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("smtp down")
        self.sent.append(payload["to"])


def queue_mail(app, clock):
    with db_session(app) as session:
        outbox.enqueue(session, kind="email", payload={"to": "a@example.com", "subject": "s", "text": "t", "html": "h"}, now=clock())
        session.commit()


def test_a_failed_delivery_is_retried_with_back_off_and_then_sent_once(app, clock):
    mailer = FlakyMailer(failures=2)
    app.extensions["portal.mailer"] = mailer
    queue_mail(app, clock)
    assert worker.drain_once(app) == 1 and mailer.sent == []
    assert worker.drain_once(app) == 0  # waiting 30 s
    clock.advance(seconds=30)
    assert worker.drain_once(app) == 1 and mailer.sent == []
    clock.advance(seconds=59)
    assert worker.drain_once(app) == 0
    clock.advance(seconds=1)
    assert worker.drain_once(app) == 1 and mailer.sent == ["a@example.com"]
    clock.advance(hours=2)
    assert worker.drain_once(app) == 0 and mailer.sent == ["a@example.com"]


def test_a_message_whose_worker_died_is_delivered_after_its_lease(app, clock):
    mailer = FlakyMailer(failures=0)
    app.extensions["portal.mailer"] = mailer
    queue_mail(app, clock)
    with app.app_context():
        with db_session(app) as session:
            assert len(outbox.claim(session, now=clock())) == 1  # then the worker "dies"
    assert worker.drain_once(app) == 0
    clock.advance(minutes=5)
    assert worker.drain_once(app) == 1 and mailer.sent == ["a@example.com"]


def test_gives_up_after_twelve_attempts(app, clock):
    app.extensions["portal.mailer"] = FlakyMailer(failures=100)
    queue_mail(app, clock)
    for _ in range(12):
        worker.drain_once(app)
        clock.advance(hours=1)
    with db_session(app) as session:
        message = session.scalars(select(OutboxMessage)).one()
    assert message.failed_at is not None and message.attempts == 12 and "smtp down" in message.last_error
    assert worker.drain_once(app) == 0


class MailerHittingAUniquePhone:
    """A delivery that fails on a database constraint whose message repeats the offending value."""

    def __init__(self, phone):
        self.phone = phone

    def send(self, *, session, payload, now, deadline=None):
        from sqlalchemy import update

        from portal.accounts.models import User

        session.execute(update(User).where(User.email == "second@example.com").values(phone_e164=self.phone))
        session.flush()


def test_a_delivery_failing_on_the_database_stores_no_value_in_last_error(app, clock):
    from tests.helpers import make_user

    make_user(app, "first@example.com", phone="+819011112222")
    make_user(app, "second@example.com", phone="+819033334444")
    app.extensions["portal.mailer"] = MailerHittingAUniquePhone("+819011112222")
    queue_mail(app, clock)
    assert worker.drain_once(app) == 1
    with db_session(app) as session:
        message = session.scalars(select(OutboxMessage)).one()
    assert message.attempts == 1 and message.sent_at is None
    assert message.last_error.startswith("IntegrityError"), message.last_error
    assert "819011112222" not in message.last_error and "UPDATE" not in message.last_error, message.last_error


def test_the_worker_sweeps_expired_credit(app, clock):
    from portal.ledger import service
    from portal.ledger.models import CreditState
    from tests.helpers import new_account

    with db_session(app) as session:
        account = new_account(session, clock())
        service.grant_purchase(session=session, account_id=account, amount=5000, paid_at=clock(), payment_ref="pi", now=clock())
    clock.advance(days=90)
    assert worker.sweep_expiry(app) == 1
    assert worker.sweep_expiry(app) == 0
    with db_session(app) as session:
        assert session.get(CreditState, account).balance == 0


def test_the_daily_reconciliation_logs_drift_as_an_error(app, clock, caplog):
    from sqlalchemy import text

    from portal.ledger import service
    from tests.helpers import new_account

    with db_session(app) as session:
        account = new_account(session, clock())
        service.grant(session=session, account_id=account, kind="grant", amount=5000, expires_at=clock() + timedelta(days=90),
                      source_ref="operator:1", idempotency_key="grant-1", reason="goodwill", now=clock())
    assert worker.reconcile(app) == 0
    with db_session(app) as session:
        session.execute(text("UPDATE credit_states SET balance = 4999"))
        session.commit()
    assert worker.reconcile(app) == 1
    assert f"ledger drift: account {account}: cached balance 4999" in caplog.text


def test_a_delivered_message_keeps_no_link_or_code(app, client):
    from tests.helpers import make_user

    make_user(app)
    client.post("/password/forgot", {"email": "owner@example.com"})
    from tests.helpers import deliver_outbox

    deliver_outbox(app)
    with db_session(app) as session:
        [message] = session.scalars(select(OutboxMessage)).all()
    assert message.sent_at is not None
    assert message.data() == {"to": "owner@example.com", "compose": "reset_password"}  # composed by the worker


def test_a_message_taken_over_by_another_worker_is_not_sent_twice(app, clock):
    mailer = FlakyMailer(failures=0)
    app.extensions["portal.mailer"] = mailer
    queue_mail(app, clock)
    with db_session(app) as session:
        [stale] = outbox.claim(session, now=clock())
        stale_lease = stale.leased_until
    clock.advance(minutes=5)
    assert worker.drain_once(app) == 1  # the lease ran out: another worker delivered it
    with app.app_context():
        worker._deliver_one(stale.id, stale_lease)  # the first worker wakes up late
    assert mailer.sent == ["a@example.com"]
