"""Balance alerts (issue 13): a crossing writes exactly one notice in the transaction that
causes it, re-arms when the balance is back, the scheduled warnings come once, and the worker
delivers each notice once with its stable id (fixed clock)."""

import hashlib
import hmac
import json
import socket
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from bs4 import BeautifulSoup
from sqlalchemy import func, select

from portal import outbox, worker
from portal.accounts.models import Membership
from portal.alerts import rules
from portal.alerts import service as alerts
from portal.alerts.delivery import NOTICE_HEADER
from portal.alerts.models import Delivery, DeliveryStatus, Notice, NoticeKind
from portal.alerts.rules import Threshold
from portal.ledger import service as ledger
from portal.ledger.models import BalanceThreshold, Lot
from portal.mail import DevMail
from portal.outbox import OutboxKind, OutboxMessage
from tests.helpers import db_session, deliver_outbox, make_user

YEN = 1000


def notices(app, kind=None) -> list[Notice]:
    with db_session(app) as session:
        query = select(Notice).order_by(Notice.id)
        if kind is not None:
            query = query.where(Notice.kind == kind)
        return list(session.scalars(query))


@pytest.fixture
def owner(app):
    user = make_user(app, email="owner@example.com")
    with db_session(app) as session:
        return session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()


def buy(session, account, clock, yen, ref="pi_1"):
    return ledger.grant_purchase(session=session, account_id=account, amount=yen * YEN, paid_at=clock(),
                                 payment_ref=ref, now=clock())


def spend(session, account, clock, yen, key):
    return ledger.debit(session=session, account_id=account, amount=yen * YEN, idempotency_key=key, reason="sms",
                        now=clock())


# -- the pure rule ---------------------------------------------------------------------------------


def test_the_rule_crosses_downwards_once_and_rearms_at_or_above():
    armed = [Threshold(100 * YEN, True), Threshold(500 * YEN, True), Threshold(1000 * YEN, False)]
    assert rules.crossed(600 * YEN, 90 * YEN, armed) == ([100 * YEN, 500 * YEN], [])
    assert rules.crossed(100 * YEN, 100 * YEN - 1, armed) == ([100 * YEN], [])
    assert rules.crossed(99 * YEN, 50 * YEN, [Threshold(100 * YEN, True)]) == ([], [])  # was already below
    assert rules.crossed(50 * YEN, 1000 * YEN, armed) == ([], [1000 * YEN])
    assert not rules.armed_at_setup(50 * YEN, 100 * YEN) and rules.armed_at_setup(100 * YEN, 100 * YEN)


def test_a_new_account_starts_with_one_100_yen_threshold_and_expiry_warnings(app, session, owner):
    settings = alerts.settings_of(session=session, account_id=owner, now=None)
    assert [(t.yen, t.armed) for t in settings.thresholds] == [(100, False)]  # balance ¥0: not armed yet
    assert settings.expiry_warnings and settings.email and not settings.sms and settings.run_out_days == 7


# -- detection in the same transaction ---------------------------------------------------------------


def test_a_crossing_by_usage_writes_exactly_one_notice_with_its_outbox_rows(app, session, clock, owner):
    buy(session, owner, clock, 1000)
    assert notices(app) == []  # the first purchase arms the threshold; nothing was crossed before
    spend(session, owner, clock, 900, "a")  # ¥100: at the threshold, not below
    assert notices(app) == []
    spend(session, owner, clock, 10, "b")  # ¥90
    spend(session, owner, clock, 10, "c")  # ¥80: already below, no second notice
    [notice] = notices(app)
    assert notice.kind == NoticeKind.LOW_BALANCE and notice.data()["thresholds"] == [100 * YEN]
    assert notice.data()["balance"] == 90 * YEN
    with db_session(app) as s:
        [delivery] = s.scalars(select(Delivery)).all()
        jobs = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == OutboxKind.ALERT)).all()
    assert (delivery.channel, delivery.recipient, delivery.status) == ("email", "owner@example.com", "pending")
    assert [job.data() for job in jobs] == [{"delivery_id": delivery.id}]


def test_a_crossing_by_a_calls_hold_gives_one_notice(app, session, clock, owner):
    buy(session, owner, clock, 1000)
    ledger.hold(session=session, account_id=owner, amount=950 * YEN, idempotency_key="call", reason="call", now=clock())
    assert [n.kind for n in notices(app)] == [NoticeKind.LOW_BALANCE]


def test_a_crossing_by_expiry_gives_one_notice(app, session, clock, owner):
    buy(session, owner, clock, 1000)
    clock.advance(days=91)
    ledger.expire(session=session, account_id=owner, now=clock())
    ledger.expire(session=session, account_id=owner, now=clock())
    [notice] = notices(app)
    assert notice.kind == NoticeKind.LOW_BALANCE and notice.data()["cause"] == "expire"


def test_a_crossing_by_refund_gives_one_notice(app, session, clock, owner):
    buy(session, owner, clock, 1000)
    with db_session(app) as s:
        lot_id = s.scalars(select(Lot.id).where(Lot.account_id == owner)).one()
    ledger.refund_lot(session=session, lot_id=lot_id, idempotency_key="refund", reason="refund", now=clock())
    [notice] = notices(app)
    assert notice.data()["cause"] == "refund" and notice.data()["balance"] == 0


def test_a_top_up_rearms_says_so_and_the_next_crossing_notifies_again(app, session, clock, owner):
    buy(session, owner, clock, 1000)
    spend(session, owner, clock, 950, "a")
    buy(session, owner, clock, 1000, ref="pi_2")
    assert [n.kind for n in notices(app)] == [NoticeKind.LOW_BALANCE, NoticeKind.RECOVERED]
    recovered_id = notices(app)[1].id
    with db_session(app) as s:
        assert s.scalars(select(BalanceThreshold.armed)).one() is True
        recovered = s.scalars(select(Delivery.recipient).where(Delivery.notice_id == recovered_id)).all()
    assert recovered == ["owner@example.com"]  # the same recipients
    spend(session, owner, clock, 1000, "b")
    assert [n.kind for n in notices(app)] == [NoticeKind.LOW_BALANCE, NoticeKind.RECOVERED, NoticeKind.LOW_BALANCE]


def test_no_notice_for_a_threshold_set_while_the_balance_is_already_below(app, session, clock, owner):
    buy(session, owner, clock, 1000)
    alerts.save_thresholds(session=session, account_id=owner, user_id=None, yen=[2000, 500], now=clock())
    spend(session, owner, clock, 100, "a")  # ¥900: still above ¥500; ¥2,000 was never reached
    assert notices(app) == []
    spend(session, owner, clock, 500, "b")  # ¥400: crosses ¥500 only
    [notice] = notices(app)
    assert notice.data()["thresholds"] == [500 * YEN]


def test_thresholds_are_checked(app, session, clock, owner):
    with pytest.raises(alerts.InvalidFields) as refused:
        alerts.save_thresholds(session=session, account_id=owner, user_id=None, yen=[1, 2, 3, 4], now=clock())
    assert list(refused.value.errors) == ["thresholds"]


# -- the scheduled warnings ----------------------------------------------------------------------


def test_expiry_warnings_come_7_days_and_1_day_before_once_each(app, session, clock, owner):
    buy(session, owner, clock, 1000)  # expires in exactly 90 days
    expires = clock() + timedelta(days=90)
    clock.advance(days=83, seconds=-1)  # a second before 7 days before
    assert alerts.scheduled_pass(session=session, now=clock()) == 0
    clock.advance(seconds=1)  # exactly 7 days before
    assert alerts.scheduled_pass(session=session, now=clock()) == 1
    clock.advance(seconds=1)
    assert alerts.scheduled_pass(session=session, now=clock()) == 0
    clock.advance(days=6, seconds=-2)  # a second before 1 day before
    assert clock() == expires - timedelta(days=1, seconds=1)
    assert alerts.scheduled_pass(session=session, now=clock()) == 0
    clock.advance(seconds=1)
    assert alerts.scheduled_pass(session=session, now=clock()) == 1
    clock.advance(hours=3)
    assert alerts.scheduled_pass(session=session, now=clock()) == 0
    assert [n.kind for n in notices(app)] == [NoticeKind.EXPIRY_7D, NoticeKind.EXPIRY_1D]
    assert notices(app)[0].data()["amount"] == 1000 * YEN


def test_no_expiry_warnings_when_turned_off(app, session, clock, owner):
    buy(session, owner, clock, 1000)
    alerts.save_channels(session=session, account_id=owner, user_id=None, email=True, webhook_url=None, sms=False,
                         sms_number=None, expiry_warnings=False, run_out_days=None, now=clock())
    clock.advance(days=89)
    assert alerts.scheduled_pass(session=session, now=clock()) == 0


def test_a_run_out_warning_from_the_burn_rate_once_a_day(app, session, clock, owner):
    buy(session, owner, clock, 2000)
    for day in range(7):  # ¥200 a day for a week: ¥600 left lasts 3 days
        if day:
            clock.advance(days=1)
        spend(session, owner, clock, 200, f"day-{day}")
    clock.advance(hours=1)
    assert alerts.scheduled_pass(session=session, now=clock()) == 1
    clock.advance(hours=1)
    assert alerts.scheduled_pass(session=session, now=clock()) == 0
    [notice] = notices(app, NoticeKind.RUN_OUT)
    assert notice.data()["daily_burn"] == 200 * YEN


def test_no_run_out_warning_at_a_slow_pace(app, session, clock, owner):
    buy(session, owner, clock, 2000)
    spend(session, owner, clock, 10, "a")
    clock.advance(days=1)
    assert alerts.scheduled_pass(session=session, now=clock()) == 0


# -- delivery ------------------------------------------------------------------------------------


def test_the_mail_carries_balance_expiry_forecast_buy_link_and_notice_id(app, session, clock, owner):
    buy(session, owner, clock, 1000)
    spend(session, owner, clock, 950, "a")
    deliver_outbox(app)
    with db_session(app) as s:
        [mail] = s.scalars(select(DevMail).where(DevMail.subject.contains("¥100"))).all()
        delivery = s.scalars(select(Delivery)).one()
    assert mail.subject.startswith("[Chotto] ")  # the account is Japanese: make_user's account language
    assert "¥50" in mail.text_body and "/credit/buy" in mail.text_body and notices(app)[0].uuid in mail.text_body
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SENT, 1)


def test_an_expiry_warning_mail_has_a_working_unsubscribe_link(app, session, clock, owner, client):
    buy(session, owner, clock, 1000)
    clock.advance(days=83)
    alerts.scheduled_pass(session=session, now=clock())
    deliver_outbox(app)
    with db_session(app) as s:
        [mail] = s.scalars(select(DevMail).where(DevMail.recipient == "owner@example.com")
                           .order_by(DevMail.id.desc())).all()[:1]
    link = next(word for word in mail.text_body.split() if "/alerts/unsubscribe/" in word)
    path = link.replace("https://portal.chotto.test", "")
    assert "Stop" in client.text(path)
    assert "no longer receives" in " ".join(BeautifulSoup(client.post(path, status=200).get_data(as_text=True),
                                                          "html.parser").get_text(" ").split())
    client.get(path[:-4] + "AAAA", status=404)  # a token changed is refused
    clock.advance(days=6)
    alerts.scheduled_pass(session=session, now=clock())  # the 1-day warning: nobody left by e-mail
    with db_session(app) as s:
        last = s.scalars(select(Notice).order_by(Notice.id.desc())).first()
        assert s.scalar(select(func.count()).select_from(Delivery).where(Delivery.notice_id == last.id)) == 0


def test_a_worker_dying_between_claim_and_delivery_delivers_once_after_restart(app, session, clock, owner):
    buy(session, owner, clock, 1000)
    spend(session, owner, clock, 950, "a")
    with app.app_context(), db_session(app) as s:
        claimed = outbox.claim(s, now=clock())  # the worker claims ... and dies before delivering
    assert [m.kind for m in claimed] == [OutboxKind.ALERT]
    assert worker.drain_once(app) == 0  # the lease still holds: no other worker takes it
    clock.advance(minutes=6)  # the lease runs out; a restarted worker delivers
    deliver_outbox(app)
    deliver_outbox(app)
    with db_session(app) as s:
        mails = s.scalars(select(DevMail).where(DevMail.subject.contains("¥100"))).all()
        delivery = s.scalars(select(Delivery)).one()
    assert len(mails) == 1 and notices(app)[0].uuid in mails[0].text_body
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SENT, 1)


def test_a_worker_dying_after_sending_does_not_send_again(app, session, clock, owner, monkeypatch):
    buy(session, owner, clock, 1000)
    spend(session, owner, clock, 950, "a")

    def dies(session, *, message_id, lease, now):
        raise SystemExit("killed after sending, before the outbox row was marked")

    monkeypatch.setattr(outbox, "mark_sent", dies)
    with pytest.raises(SystemExit):
        worker.drain_once(app)
    monkeypatch.undo()
    clock.advance(minutes=6)
    deliver_outbox(app)
    with db_session(app) as s:
        assert len(s.scalars(select(DevMail).where(DevMail.subject.contains("¥100"))).all()) == 1
        assert s.scalars(select(OutboxMessage).where(OutboxMessage.kind == OutboxKind.ALERT)).one().sent_at


def test_a_failing_attempt_is_recorded_and_retried_with_back_off(app, session, clock, owner, monkeypatch):
    buy(session, owner, clock, 1000)
    spend(session, owner, clock, 950, "a")
    mailer = app.extensions["portal.mailer"]

    def refuse(**_):
        raise ConnectionRefusedError("mail server down")

    monkeypatch.setattr(mailer, "send", refuse)
    worker.drain_once(app)
    history = alerts.history(session=session, account_id=owner)
    assert [(h.status, h.attempts) for h in history] == [("failing", 1)]
    assert "mail server down" in history[0].last_error
    monkeypatch.undo()
    assert worker.drain_once(app) == 0  # not due yet: back-off
    clock.advance(seconds=31)
    deliver_outbox(app)
    assert [(h.status, h.attempts) for h in alerts.history(session=session, account_id=owner)] == [("sent", 2)]


def test_mail_reaches_a_real_smtp_server_with_the_notice_header(app_with, clock, database_url):
    from aiosmtpd.controller import Controller

    received = []

    class Handler:
        async def handle_DATA(self, server, smtp_session, envelope):
            received.append(envelope.content.decode())
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        from portal.mail import SMTPMailer
        app = app_with(MAILER=SMTPMailer(f"smtp+plain://127.0.0.1:{port}", "alerts@chotto.test"))
        user = make_user(app, email="owner@example.com")
        with db_session(app) as session:
            account = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
            buy(session, account, clock, 1000)
            spend(session, account, clock, 950, "a")
        deliver_outbox(app)
    finally:
        controller.stop()
    alert = [text for text in received if "owner@example.com" in text and NOTICE_HEADER in text]
    assert len(alert) == 1
    assert f"{NOTICE_HEADER}: {notices(app)[0].uuid}" in alert[0]


def test_the_webhook_reaches_a_real_http_server_signed_with_the_notice_id(app, session, clock, owner):
    seen = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((dict(self.headers), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hooks/chotto"
        alerts.save_channels(session=session, account_id=owner, user_id=None, email=False, webhook_url=url, sms=False,
                             sms_number=None, expiry_warnings=True, run_out_days=7, now=clock(), allow_http=True)
        secret = alerts.webhook_secret(session=session, account_id=owner)
        buy(session, owner, clock, 1000)
        spend(session, owner, clock, 950, "a")
        deliver_outbox(app)
    finally:
        server.shutdown()
    [(headers, body)] = seen
    with db_session(app) as s:
        from portal.audit import AuditEvent
        assert s.scalars(select(AuditEvent.action)).all() == ["alerts.webhook_changed"]  # who pointed it where
    timestamp, mac = headers["X-Chotto-Signature"].split(",")
    expected = hmac.new(secret.encode(), f"{timestamp[2:]}.".encode() + body, hashlib.sha256).hexdigest()
    assert mac == f"v1={expected}"
    data = json.loads(body)
    assert data["id"] == headers[NOTICE_HEADER] == notices(app)[0].uuid
    assert data["type"] == "low_balance" and data["data"]["balance"] == 50 * YEN


def test_extra_addresses_receive_nothing_until_confirmed(app, session, clock, owner):
    alerts.add_address(session=session, account_id=owner, user_id=None, address="finance@example.com",
                       confirm_url="https://portal.chotto.test/alerts/confirm/{token}", language="ja",
                       now=clock())
    buy(session, owner, clock, 1000)
    spend(session, owner, clock, 950, "a")
    with db_session(app) as s:
        assert set(s.scalars(select(Delivery.recipient))) == {"owner@example.com"}
    deliver_outbox(app)
    with db_session(app) as s:
        mail = s.scalars(select(DevMail).where(DevMail.recipient == "finance@example.com")).one()
    token = mail.text_body.split("/alerts/confirm/", 1)[1].split()[0]
    assert alerts.confirm_address(session=session, token=token, now=clock()).confirmed_at is not None
    buy(session, owner, clock, 1000, ref="pi_2")  # recovered: now to both
    with db_session(app) as s:
        last = s.scalars(select(Notice).order_by(Notice.id.desc())).first()
        assert set(s.scalars(select(Delivery.recipient).where(Delivery.notice_id == last.id))) == {
            "owner@example.com", "finance@example.com"}


# -- PostgreSQL: parallel debits ------------------------------------------------------------------


@pytest.mark.postgresql
def test_sixteen_parallel_debits_crossing_together_give_exactly_one_notice(app, session, clock, owner):
    from tests.integration.test_ledger_concurrency import parallel

    buy(session, owner, clock, 260)  # 16 × ¥10 takes ¥260 to ¥100, crossing ¥200 and ... see below
    alerts.save_thresholds(session=session, account_id=owner, user_id=None, yen=[200, 100], now=clock())

    def debit(db, job):
        return spend(db, owner, clock, 10, f"job-{job}").transaction_id

    outcomes = parallel(app.extensions["portal.engine"], list(range(16)), debit)
    assert all(isinstance(outcome, int) for outcome in outcomes)
    assert [n.data()["thresholds"] for n in notices(app)] == [[200 * YEN]]  # ¥260 → ¥100: ¥100 not crossed


def test_the_sms_channel_is_off_by_default_and_charged_once_like_any_sms(app, session, clock):
    from portal.ledger.models import CreditState
    from portal.messaging.models import TestInboxMessage

    user = make_user(app, email="owner@example.com", phone="+819012345678")
    with db_session(app) as s:
        account = s.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
    with pytest.raises(alerts.InvalidFields):
        alerts.save_channels(session=session, account_id=account, user_id=user.id, email=False, webhook_url=None,
                             sms=True, sms_number="+819099999999", expiry_warnings=True, run_out_days=7, now=clock())
    alerts.save_channels(session=session, account_id=account, user_id=user.id, email=False, webhook_url=None,
                         sms=True, sms_number="+819012345678", expiry_warnings=True, run_out_days=7, now=clock())
    buy(session, account, clock, 1000)
    spend(session, account, clock, 960, "a")  # ¥1,050 (with the trial) → ¥90
    deliver_outbox(app)
    clock.advance(minutes=6)
    deliver_outbox(app)
    with db_session(app) as s:
        [sms] = s.scalars(select(TestInboxMessage)).all()
        balance = s.get(CreditState, account).balance
    assert "¥100" in sms.body and sms.recipient == "+819012345678"
    assert balance == 80 * YEN  # one SMS segment to Japan, ¥10


def test_the_ledgers_sql_applies_the_pure_rule(app, session, clock, owner):
    """A walk of debits and purchases over three thresholds: the notices the bookings wrote are
    the crossings rules.crossed predicts, step by step."""
    buy(session, owner, clock, 3000, ref="start")
    alerts.save_thresholds(session=session, account_id=owner, user_id=None, yen=[1000, 500, 100], now=clock())
    state = [Threshold(amount * YEN, True) for amount in (1000, 500, 100)]
    balance, predicted = 3000 * YEN, []
    steps = [-1500, -600, -200, -450, 2000, -1900, -60, 1000, -1000, -200]
    for number, change in enumerate(steps):
        if change < 0:
            spend(session, owner, clock, -change, f"walk-{number}")
        else:
            buy(session, owner, clock, change, ref=f"walk-{number}")
        after = balance + change * YEN
        down, rearmed = rules.crossed(balance, after, state)
        if down:
            predicted.append((NoticeKind.LOW_BALANCE, down))
        if rearmed and any(t.amount in rearmed for t in state if not t.armed) and change > 0:
            predicted.append((NoticeKind.RECOVERED, rearmed))
        state = [Threshold(t.amount, (t.armed and t.amount not in down) or t.amount in rearmed) for t in state]
        balance = after
    assert [(n.kind, n.data()["thresholds"]) for n in notices(app)] == predicted


def test_a_crossing_by_a_dispute_freezing_a_lot_gives_one_notice(app, session, clock, owner):
    from portal import db

    buy(session, owner, clock, 1000)
    with db_session(app) as s:
        lot_id = s.scalars(select(Lot.id).where(Lot.account_id == owner)).one()
    with db.write(session):
        state, lots = ledger.lock(session, owner, "~dispute")
        ledger.freeze_lot_in(session, state, lots, lot_id=lot_id, key="~dispute", reason="dispute", now=clock())
    [notice] = notices(app)
    assert notice.data()["cause"] == "hold" and notice.data()["balance"] == 0
