"""Alert SMS go through the API's send path (issue 13, money defect): each is one sms_messages
row without a credential, debited under "sms:<msgid>" once whatever the worker retries,
refunded when the carrier fails it, and recorded as failed (no debt) when the account cannot
pay for it (fixed clock)."""

import pytest
from sqlalchemy import func, select, update

from portal import outbox, worker
from portal.accounts.models import Account, Membership
from portal.alerts import delivery as alert_delivery
from portal.alerts import service as alerts
from portal.alerts.models import Delivery, DeliveryStatus, Notice
from portal.credentials.models import CredentialMode, Scope
from portal.credentials.service import Principal
from portal.ledger import service as ledger
from portal.ledger.check import check
from portal.ledger.models import CreditState, Transaction
from portal.messaging import service as messaging
from portal.messaging.api_models import Message, MessageStatus
from portal.messaging.carrier import CarrierRejected
from portal.messaging.spend import SpendCounter
from portal.outbox import OutboxKind, OutboxMessage
from tests.helpers import db_session, deliver_outbox, make_user

YEN = 1000
PHONE = "+819012345678"


@pytest.fixture
def account(app, session, clock):
    """An account whose alerts go by SMS only, to its owner's verified number, with ¥1,050."""
    user = make_user(app, email="owner@example.com", phone=PHONE)
    with db_session(app) as s:
        account_id = s.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
    alerts.save_channels(session=session, account_id=account_id, user_id=user.id, email=False, webhook_url=None,
                         sms=True, sms_number=PHONE, expiry_warnings=True, run_out_days=None, now=clock())
    ledger.grant_purchase(session=session, account_id=account_id, amount=1000 * YEN, paid_at=clock(),
                          payment_ref="pi_1", now=clock())
    return account_id


def cross(session, account_id, clock, yen):
    """Spend `yen`, which takes the balance below the ¥100 threshold: one notice, one SMS delivery."""
    ledger.debit(session=session, account_id=account_id, amount=yen * YEN, idempotency_key=f"use-{yen}",
                 reason="usage", now=clock())


def balance(app, account_id) -> int:
    with db_session(app) as s:
        return s.get(CreditState, account_id, populate_existing=True).balance


def rows(app, model, *where):
    with db_session(app) as s:
        return list(s.scalars(select(model).where(*where).order_by(*model.__table__.primary_key.columns)))


class RejectingCarrier:
    """A carrier that definitely fails every SMS (the number is unreachable)."""

    def __init__(self):
        self.tries = 0

    def send_sms(self, *, session, sms, now):
        self.tries += 1
        raise CarrierRejected("unreachable number")


def test_an_alert_sms_is_a_message_without_credential_paid_once_and_kept_from_the_api(app, session, clock, account):
    cross(session, account, clock, 960)  # ¥1,050 → ¥90
    deliver_outbox(app)
    [message] = rows(app, Message)
    [sent] = rows(app, Delivery)
    assert (message.credential_id, message.mode, message.sender, message.recipient) == (None, "live", "Chotto", PHONE)
    assert message.status == MessageStatus.DELIVERED and "¥100" in message.body
    assert message.cost == 10 * YEN and balance(app, account) == 80 * YEN
    assert (sent.status, sent.attempts, sent.message_id) == (DeliveryStatus.SENT, 1, message.id)
    debits = rows(app, Transaction, Transaction.account_id == account, Transaction.idempotency_key.like("sms:%"))
    assert [d.idempotency_key for d in debits] == [f"sms:{message.msgid}"]
    counters = {c.scope: c.spent for c in rows(app, SpendCounter)}
    assert counters == {f"account:{account}": 10 * YEN}  # the account's day; no credential's month
    live = Principal(credential_id=1, sid="AC1", account_id=account, mode=CredentialMode.LIVE,
                     scopes=frozenset({Scope.SMS}), monthly_cap=None)
    assert messaging.messages_of(session, principal=live, date_filters=[], now=clock()) == []
    assert messaging.message_of(session, principal=live, msgid=message.msgid) is None


def test_a_carrier_that_keeps_failing_the_alert_sms_refunds_it_and_the_ledger_checks(app, session, clock, account):
    carrier = RejectingCarrier()
    app.extensions["portal.carrier"] = carrier
    cross(session, account, clock, 960)
    deliver_outbox(app)
    clock.advance(hours=2)
    deliver_outbox(app)
    [message] = rows(app, Message)
    assert carrier.tries == 1 and message.status == MessageStatus.FAIL and message.refunded_at is not None
    assert balance(app, account) == 90 * YEN  # the ¥10 given back
    refunds = rows(app, Transaction, Transaction.idempotency_key == f"refund:sms:{message.msgid}")
    assert len(refunds) == 1
    assert {c.scope: c.spent for c in rows(app, SpendCounter)} == {f"account:{account}": 0}
    problems, _ = check(session, now=clock())
    assert problems == []


def test_a_retried_alert_delivery_never_sends_or_charges_twice(app, session, clock, account, monkeypatch):
    cross(session, account, clock, 960)

    def dies(session, *, message_id, lease, now):
        raise SystemExit("killed after the alert's unit committed, before its outbox row was marked")

    monkeypatch.setattr(outbox, "mark_sent", dies)
    with pytest.raises(SystemExit):
        worker.drain_once(app)
    monkeypatch.undo()
    [delivery_id] = [d.id for d in rows(app, Delivery)]
    with app.app_context():  # and a stray second call for the same delivery, as a duplicate job would make
        alerts.deliver(session, delivery_id=delivery_id, outside=_outside(), now=clock())
    clock.advance(minutes=6)
    deliver_outbox(app)
    assert len(rows(app, Message)) == 1
    assert balance(app, account) == 80 * YEN
    [sent] = rows(app, Delivery)
    assert (sent.status, sent.attempts) == (DeliveryStatus.SENT, 1)
    alert_jobs = rows(app, OutboxMessage, OutboxMessage.kind == OutboxKind.ALERT)
    assert [job.sent_at is not None for job in alert_jobs] == [True]


@pytest.mark.postgresql
def test_sixteen_workers_delivering_one_alert_sms_at_once_send_it_once(app, session, clock, account):
    from tests.integration.test_ledger_concurrency import parallel

    cross(session, account, clock, 960)
    [delivery_id] = [d.id for d in rows(app, Delivery)]
    outside = _outside()

    def deliver(db, job):
        alerts.deliver(db, delivery_id=delivery_id, outside=outside, now=clock())
        return "done"

    assert parallel(app.extensions["portal.engine"], list(range(16)), deliver) == ["done"] * 16
    assert len(rows(app, Message)) == 1 and balance(app, account) == 80 * YEN


def test_an_alert_sms_the_account_cannot_pay_for_is_recorded_as_failed_without_debt(app, session, clock, account):
    cross(session, account, clock, 1045)  # ¥1,050 → ¥5: the ¥10 SMS cannot be paid
    deliver_outbox(app)
    assert rows(app, Message) == [] and balance(app, account) == 5 * YEN
    [failed] = rows(app, Delivery)
    assert (failed.status, failed.attempts, failed.message_id) == (DeliveryStatus.FAILED, 1, None)
    assert failed.last_error.startswith(alert_delivery.NO_CREDIT)
    [job] = rows(app, OutboxMessage, OutboxMessage.kind == OutboxKind.ALERT)
    assert job.sent_at is not None and job.failed_at is None  # decided: not retried
    [row] = alerts.history(session=session, account_id=account)
    assert row.status == DeliveryStatus.FAILED
    problems, _ = check(session, now=clock())
    assert problems == []


def test_an_alert_sms_to_a_country_the_account_may_not_send_to_is_refused_and_recorded(app, session, clock, account):
    with db_session(app) as s:
        s.execute(update(Account).where(Account.id == account).values(allowed_countries="US"))
        s.commit()
    cross(session, account, clock, 960)
    deliver_outbox(app)
    assert rows(app, Message) == [] and balance(app, account) == 90 * YEN
    [failed] = rows(app, Delivery)
    assert failed.status == DeliveryStatus.FAILED and failed.last_error.startswith(alert_delivery.NOT_SENDABLE)


def test_the_alert_sms_debit_can_cross_a_lower_threshold_and_that_notice_is_written(app, session, clock, account):
    """The SMS is debited like any SMS: crossing a threshold with it writes that notice too."""
    alerts.save_thresholds(session=session, account_id=account, user_id=None, yen=[100, 85], now=clock())
    cross(session, account, clock, 960)  # → ¥90: crosses ¥100; its SMS takes ¥90 → ¥80, crossing ¥85
    deliver_outbox(app)
    with db_session(app) as s:
        thresholds = [n.data()["thresholds"] for n in s.scalars(select(Notice).order_by(Notice.id))]
        messages = s.scalar(select(func.count()).select_from(Message))
    assert thresholds == [[100 * YEN], [85 * YEN]]
    assert messages == 2 and balance(app, account) == 70 * YEN  # each notice's SMS paid once; no further crossing


def _outside():
    return alert_delivery.Outside(mailer=None, base_url="", secret="", allow_private=True, links=lambda *_: "",
                                  sms_text=lambda language, context: "Chotto: your balance is low.")
