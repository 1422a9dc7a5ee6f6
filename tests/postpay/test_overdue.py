"""Overdue invoices with a fixed clock: the reminder the day after the due date (Japan time) and
seven days later, each once; live sends on the line stop once an invoice is more than
PORTAL_POSTPAY_SUSPEND_AFTER_DAYS overdue (prepaid credit still works) and resume when the
payment is recorded; owners are told each step; the line's use reaching 80% and 100% of its
limit is an alert notice, once per crossing."""

import json
from datetime import datetime, timezone

from sqlalchemy import select

from portal import worker
from portal.alerts.models import Notice
from portal.clock import JST
from portal.postpay import queries
from tests.api.conftest import fund
from tests.helpers import db_session, mails_to
from tests.postpay.helpers import YEN, approved, cli
from tests.postpay.test_operator import debit
from tests.postpay.test_spending import send

EMAIL = "owner@kaisha.example"


def subjects(app):
    return [mail.subject for mail in mails_to(app, EMAIL) if "nvoice" in mail.subject or "請求" in mail.subject
            or "credit line" in mail.subject]


def at(clock, app, *when):
    clock.at = datetime(*when, tzinfo=JST)
    return worker.postpay_round(app)


def line(app, account_id):
    with db_session(app) as session:
        return queries.line_of(session, account_id=account_id)


def test_reminders_on_their_days_then_suspension_then_resume_on_payment(app, api, clock):
    _, account_id, key = approved(app, limit=1000)
    debit(app, account_id, 100 * YEN, "nov", datetime(2026, 11, 20, tzinfo=timezone.utc))
    at(clock, app, 2026, 12, 1, 0, 10)
    number = f"P202611-{account_id:06d}"
    before = len(subjects(app))
    assert at(clock, app, 2026, 12, 31, 23, 59, 59) == 0  # the due date itself: not overdue
    assert at(clock, app, 2027, 1, 1, 0, 0) == 1  # the day after, Japan time
    assert at(clock, app, 2027, 1, 1, 18, 0) == 0  # once
    assert subjects(app)[before:] == [f"[Chotto] Reminder: invoice {number} is overdue"]
    assert at(clock, app, 2027, 1, 7, 23, 59) == 0
    assert at(clock, app, 2027, 1, 8, 0, 0) == 1  # seven days after the first reminder
    assert subjects(app)[-1] == f"[Chotto] Second reminder: invoice {number} is overdue"
    assert at(clock, app, 2027, 1, 14, 12) == 0  # 14 days overdue: still open (the setting is 14)
    send(api, key)
    assert at(clock, app, 2027, 1, 15, 0, 0) == 1  # more than 14 days: suspended
    assert line(app, account_id).suspended and subjects(app)[-1] == "[Chotto] Invoice billing: your credit line is suspended"
    refused = send(api, key, status=402)
    assert "suspended" in refused["detail"]
    fund(app, account_id, 10, ref="prepaid")
    send(api, key)  # prepaid credit still works
    assert cli(app, "postpay", "record-payment", number, "--amount", 100, "--paid-on", "2027-01-15",
               "--reference", "partial").exit_code == 0
    assert line(app, account_id).suspended  # a part paid: still overdue
    assert cli(app, "postpay", "record-payment", number, "--amount", 10, "--paid-on", "2027-01-15",
               "--reference", "rest").exit_code == 0
    assert not line(app, account_id).suspended
    assert subjects(app)[-1] == "[Chotto] Invoice billing: your credit line is open again"
    send(api, key)
    assert at(clock, app, 2027, 1, 30) == 0  # paid: nothing more
    assert cli(app, "ledger", "check").exit_code == 0


def test_an_operator_suspension_is_not_lifted_by_a_payment(app, clock):
    _, account_id, _ = approved(app, limit=1000)
    debit(app, account_id, 100 * YEN, "nov", datetime(2026, 11, 20, tzinfo=timezone.utc))
    at(clock, app, 2026, 12, 1, 1)
    assert cli(app, "postpay", "suspend", EMAIL, "--reason", "fraud review").exit_code == 0
    assert cli(app, "postpay", "record-payment", f"P202611-{account_id:06d}", "--amount", 110, "--paid-on",
               "2026-12-01", "--reference", "full").exit_code == 0
    assert line(app, account_id).suspended


def test_a_custom_suspension_setting(app_with, clock):
    app = app_with(POSTPAY_SUSPEND_AFTER_DAYS=3)
    _, account_id, _ = approved(app, limit=1000)
    debit(app, account_id, 100 * YEN, "nov", datetime(2026, 11, 20, tzinfo=timezone.utc))
    at(clock, app, 2026, 12, 1, 1)
    at(clock, app, 2027, 1, 3, 23, 59)
    assert not line(app, account_id).suspended
    at(clock, app, 2027, 1, 4, 0, 0)
    assert line(app, account_id).suspended


def notices(app, account_id):
    with db_session(app) as session:
        return [json.loads(notice.payload)["percent"] for notice in session.scalars(
            select(Notice).where(Notice.account_id == account_id, Notice.kind == "line_usage").order_by(Notice.id))]


def test_the_line_reaching_80_and_100_percent_is_an_alert_notice_once_per_crossing(app, clock):
    _, account_id, _ = approved(app, limit=100)
    debit(app, account_id, 79 * YEN, "a", clock())
    worker.postpay_round(app)
    assert notices(app, account_id) == []
    debit(app, account_id, 1 * YEN, "b", clock())
    worker.postpay_round(app)
    worker.postpay_round(app)
    assert notices(app, account_id) == [80]
    mail = [m for m in mails_to(app, EMAIL) if "80% used" in m.subject]
    assert mail and "¥80 of ¥100" in mail[0].text_body
    debit(app, account_id, 20 * YEN, "c", datetime(2026, 11, 28, tzinfo=timezone.utc))
    worker.postpay_round(app)
    assert notices(app, account_id) == [80, 100]
    at(clock, app, 2026, 12, 1, 1)  # the invoice for ¥100 + tax
    assert cli(app, "postpay", "record-payment", f"P202611-{account_id:06d}", "--amount", 110, "--paid-on",
               "2026-12-01", "--reference", "paid").exit_code == 0
    worker.postpay_round(app)  # paid: the warnings are armed again
    debit(app, account_id, 85 * YEN, "d", clock())
    worker.postpay_round(app)
    assert notices(app, account_id) == [80, 100, 80]
