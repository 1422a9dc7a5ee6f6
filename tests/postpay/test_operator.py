"""The operator's commands: decisions on contracts (audited), the month close with a fixed clock
(the Japan-time boundary, a rerun, tax once per invoice, due dates) and bank transfers (partial,
full, over), each proven by `portal ledger check`."""

from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from portal.audit import AuditEvent
from portal.clock import JST
from portal.ledger import service as ledger
from portal.postpay import invoices, queries, rules
from portal.postpay.check import check
from portal.postpay.models import InvoiceLine, PostpayInvoice
from tests.helpers import db_session
from tests.postpay.helpers import YEN, approved, cli, company

EMAIL = "owner@kaisha.example"


def debit(app, account_id, yen_milli, key, at, reason="SMS test"):
    with db_session(app) as session:
        ledger.debit(session=session, account_id=account_id, amount=yen_milli, idempotency_key=key, reason=reason,
                     now=at)


def invoices_of(app, account_id):
    with db_session(app) as session:
        return list(session.scalars(select(PostpayInvoice).where(PostpayInvoice.account_id == account_id)))


def actions(app, account_id):
    with db_session(app) as session:
        return [str(event.action) for event in session.scalars(select(AuditEvent).where(
            AuditEvent.account_id == account_id).order_by(AuditEvent.id))]


def assert_checked(app):
    result = cli(app, "ledger", "check")
    assert result.exit_code == 0, result.output
    with db_session(app) as session:
        assert check(session) == []


def test_approve_without_an_application_list_decline_and_audit(app):
    _, other = company(app, email="applicant@other.example")
    assert cli(app, "postpay", "decline", "applicant@other.example", "--reason", "x").exit_code != 0  # no application
    _, account_id, _ = approved(app, limit=5000, due_days=20)
    listed = cli(app, "postpay", "list").output
    assert f"account {account_id}" in listed and "approved" in listed and "limit ¥5,000" in listed and "due 20 days" in listed
    assert "no contracts" in cli(app, "postpay", "list", "--status", "declined").output
    refused = cli(app, "postpay", "decline", EMAIL, "--reason", "too late")
    assert refused.exit_code != 0 and "only an application can be declined" in refused.output
    assert cli(app, "postpay", "suspend", EMAIL, "--reason", "  ").exit_code != 0
    assert [action for action in actions(app, account_id) if action.startswith("postpay")] == ["postpay.approved"]


def test_an_individual_account_cannot_get_a_line(app):
    from tests.helpers import make_user
    make_user(app, email="solo@example.com")
    result = cli(app, "postpay", "approve", "solo@example.com", "--limit", 1000)
    assert result.exit_code != 0 and "company accounts" in result.output


def test_production_refuses_a_line_without_the_bank_account(app, monkeypatch):
    from portal import services
    company(app)
    monkeypatch.setattr(services, "bank_account", lambda: None)
    result = cli(app, "postpay", "approve", EMAIL, "--limit", 1000)
    assert result.exit_code != 0 and "PORTAL_BANK_TRANSFER_ACCOUNT" in result.output
    assert cli(app, "postpay", "close-month", "--month", "2026-10").exit_code != 0


def test_the_bank_account_setting_is_checked_at_start_up():
    from portal import config
    with pytest.raises(config.UnsafeConfiguration, match="katakana"):
        config.load({"ENV": "test", "BANK_TRANSFER_ACCOUNT": "Mizuho|Shibuya|普通|1234567|Chotto KK"}, environ={})
    with pytest.raises(config.UnsafeConfiguration, match="7 digits"):
        config.load({"ENV": "test", "BANK_TRANSFER_ACCOUNT": "みずほ銀行|渋谷支店|普通|12345|チヨツト"}, environ={})
    loaded = config.load({"ENV": "test", "BANK_TRANSFER_ACCOUNT": "みずほ銀行|渋谷支店|当座|1234567|ﾁﾖﾂﾄ"}, environ={})
    assert str(rules.parse_bank_account(loaded["BANK_TRANSFER_ACCOUNT"])) == "みずほ銀行 渋谷支店 当座 1234567 チヨツト"


LAST_MOMENT = datetime(2026, 11, 30, 23, 59, 59, 999000, tzinfo=JST)  # still November in Japan


def test_the_month_closes_at_midnight_japan_time_once_per_account(app, clock):
    _, account_id, _ = approved(app, limit=10_000)
    debit(app, account_id, 1234 * YEN + 600, "nov-1", datetime(2026, 11, 28, 10, tzinfo=timezone.utc))
    debit(app, account_id, 3 * YEN, "nov-otp", datetime(2026, 11, 29, 10, tzinfo=timezone.utc), reason="OTP x")
    debit(app, account_id, 10 * YEN, "nov-last", LAST_MOMENT.astimezone(timezone.utc))
    debit(app, account_id, 20 * YEN, "dec-first", (LAST_MOMENT + timedelta(milliseconds=1)).astimezone(timezone.utc))
    clock.at = datetime(2026, 12, 1, 0, 1, tzinfo=JST)  # one minute after midnight: too early
    assert "can be closed from 2026-12-01 00:05" in cli(app, "postpay", "close-month", "--month", "2026-11").output
    clock.at = datetime(2026, 12, 1, 0, 10, tzinfo=JST)
    result = cli(app, "postpay", "close-month")  # the month that ended last
    assert result.exit_code == 0 and "2026-11 closed: 1 invoices" in result.output, result.output
    rerun = cli(app, "postpay", "close-month", "--month", "2026-11")
    assert rerun.exit_code == 0, rerun.output
    [invoice] = invoices_of(app, account_id)
    assert invoice.number == f"P202611-{account_id:06d}" and invoice.month == "2026-11"
    assert invoice.usage == 1247 * YEN + 600  # the 23:59:59.999 message is November's; the next one is not
    with db_session(app) as session:
        lines = {line.product: (line.quantity, line.amount_yen) for line in session.scalars(
            select(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id))}
    assert lines == {"sms": (2, 1244), "otp": (1, 3)}  # ¥1,244.6 of SMS billed as ¥1,244
    assert (invoice.subtotal_yen, invoice.tax_rate, invoice.tax_yen, invoice.total_yen) == (1247, 10, 124, 1371)
    assert invoice.issued_on == date(2026, 12, 1) and invoice.due_on == date(2026, 12, 31)  # 翌月末
    assert "サンプル銀行" in invoice.bank_account and "普通 0000000" in invoice.bank_account
    assert invoice.issuer_registration_number.startswith("T")
    assert actions(app, account_id).count("postpay.invoiced") == 1
    with db_session(app) as session:
        line = queries.line_of(session, account_id=account_id)
    assert line.used == 1267 * YEN + 600  # unbilled December usage + the unpaid invoice's usage
    assert_checked(app)


def test_contract_due_days_and_tax_rounded_once_per_invoice(app, clock):
    _, account_id, _ = approved(app, limit=10_000, due_days=20)
    for n in range(3):  # three lines of ¥3 and ¥10: rounded per line, tax once on the subtotal
        debit(app, account_id, 3 * YEN, f"otp-{n}", datetime(2026, 11, 28, tzinfo=timezone.utc), reason="OTP")
    debit(app, account_id, 19 * YEN, "sms", datetime(2026, 11, 28, tzinfo=timezone.utc))
    clock.at = datetime(2026, 12, 2, tzinfo=JST)
    assert cli(app, "postpay", "close-month", "--month", "2026-11").exit_code == 0
    [invoice] = invoices_of(app, account_id)
    assert (invoice.subtotal_yen, invoice.tax_yen, invoice.total_yen) == (28, 2, 30)  # ¥2.8 rounded down once
    assert invoice.due_on == date(2026, 12, 21)


def test_a_month_without_usage_has_no_invoice_and_its_refunds_carry_over(app, clock):
    _, account_id, _ = approved(app, limit=1000)
    clock.at = datetime(2026, 12, 1, 1, tzinfo=JST)
    assert "0 invoices" in cli(app, "postpay", "close-month", "--month", "2026-11").output
    assert invoices_of(app, account_id) == []


def test_a_crash_before_the_invoice_commits_leaves_nothing_and_the_rerun_issues_it_once(app, clock, monkeypatch):
    _, account_id, _ = approved(app, limit=1000)
    debit(app, account_id, 100 * YEN, "nov", datetime(2026, 11, 20, tzinfo=timezone.utc))
    clock.at = datetime(2026, 12, 1, 1, tzinfo=JST)

    def crash(*args, **kwargs):
        raise RuntimeError("the process died")

    monkeypatch.setattr(invoices.audit, "record", crash)  # the last write of the invoice's unit
    assert "0 invoices" in cli(app, "postpay", "close-month").output
    assert invoices_of(app, account_id) == []
    monkeypatch.undo()
    assert "1 invoices" in cli(app, "postpay", "close-month").output
    assert "1 invoices" in cli(app, "postpay", "close-month").output  # reported again, not issued again
    assert len(invoices_of(app, account_id)) == 1
    assert_checked(app)


def closed(app, clock, *, limit=1000, usage_yen=1000):
    _, account_id, key = approved(app, limit=limit)
    debit(app, account_id, usage_yen * YEN, "nov", datetime(2026, 11, 20, tzinfo=timezone.utc))
    clock.at = datetime(2026, 12, 1, 1, tzinfo=JST)
    assert cli(app, "postpay", "close-month").exit_code == 0
    [invoice] = invoices_of(app, account_id)
    return account_id, invoice


def pay(app, number, amount, reference="振込 0001"):
    return cli(app, "postpay", "record-payment", number, "--amount", amount, "--paid-on", "2026-12-01",
               "--reference", reference)


def line_used(app, account_id):
    with db_session(app) as session:
        return queries.line_of(session, account_id=account_id).used


def test_partial_then_full_payment_gives_the_usage_back_and_overpayment_is_refused(app, clock):
    account_id, invoice = closed(app, clock)  # ¥1,000 + ¥100 tax
    assert invoice.total_yen == 1100 and line_used(app, account_id) == 1000 * YEN
    over = pay(app, invoice.number, 1101)
    assert over.exit_code != 0 and "¥1,100 left to pay" in over.output
    assert pay(app, invoice.number, 550).exit_code == 0  # half of the total: half of the usage, tax pro rata
    assert line_used(app, account_id) == 500 * YEN
    assert pay(app, invoice.number, 551, reference="振込 0002").exit_code != 0
    assert pay(app, invoice.number, 333, reference="振込 0002").exit_code == 0
    assert line_used(app, account_id) == 1000 * YEN - 1000 * YEN * 883 // 1100
    assert pay(app, invoice.number, 217, reference="振込 0003").exit_code == 0
    assert line_used(app, account_id) == 0
    [paid] = invoices_of(app, account_id)
    assert paid.paid_yen == 1100 and paid.restored == paid.usage and paid.paid_at is not None
    assert pay(app, invoice.number, 1, reference="振込 0004").exit_code != 0
    assert "no postpay invoice numbered P209901" in pay(app, "P209901-000001", 1).output
    assert actions(app, account_id).count("postpay.payment_recorded") == 3
    assert_checked(app)


def test_the_check_finds_an_invoice_that_does_not_match_the_ledger(app, clock):
    account_id, invoice = closed(app, clock)
    with db_session(app) as session:
        session.get(PostpayInvoice, invoice.id).usage += 1
        session.commit()
        problems = [str(problem) for problem in check(session)]
    assert any("postpay usage" in problem for problem in problems)
    result = cli(app, "ledger", "check")
    assert result.exit_code == 1 and "postpay usage" in result.output


def test_a_refund_after_the_invoice_was_paid_is_owed_to_the_customer_until_the_next_invoice(app, clock):
    account_id, invoice = closed(app, clock, usage_yen=100)
    assert pay(app, invoice.number, invoice.total_yen).exit_code == 0
    with db_session(app) as session:  # the November SMS fails late: its ¥100 comes back to the line
        state, _ = ledger.lock(session, account_id)
        nov = session.scalars(select(ledger.Transaction.id).where(ledger.Transaction.idempotency_key == "nov")).one()
        ledger.reverse_in(session, state, transaction_id=nov, key="refund:nov", reason="refund", now=clock())
        session.commit()
    assert line_used(app, account_id) == -100 * YEN
    assert_checked(app)


def test_the_same_transfer_recorded_twice_changes_nothing_and_a_reused_reference_is_refused(app, clock):
    account_id, invoice = closed(app, clock)  # ¥1,000 + ¥100 tax
    assert pay(app, invoice.number, 550).exit_code == 0
    again = pay(app, invoice.number, 550)  # a re-run after a dropped session, or a line of a list copied twice
    assert again.exit_code == 0 and "already recorded: nothing changed" in again.output
    future = cli(app, "postpay", "record-payment", invoice.number, "--amount", 440, "--paid-on", "2099-01-01",
                 "--reference", "振込 0009")
    assert future.exit_code != 0 and "is in the future" in future.output
    other = pay(app, invoice.number, 440)  # the same reference for another amount
    assert other.exit_code != 0 and "another transfer needs its own reference" in other.output
    [invoice] = invoices_of(app, account_id)
    assert invoice.paid_yen == 550 and invoice.paid_at is None and line_used(app, account_id) == 500 * YEN
    assert actions(app, account_id).count("postpay.payment_recorded") == 1
    assert_checked(app)
