"""A refund belongs to the month it is booked in, on the usage statement (利用明細) as on the
postpay invoice: a message refunded one second before November closes (midnight Japan time on
1 December) is netted in November on both; one refunded at the close is on December's statement
as a refund of earlier months, and neither November document changes after the month ended."""

from datetime import datetime

import pytest
from sqlalchemy import select

from portal.api.wire import StatusCallbacks
from portal.clock import JST
from portal.messaging.api_models import Message
from portal.messaging.delivery import fail_sms
from portal.postpay.models import InvoiceLine, PostpayInvoice
from tests.helpers import PASSWORD, PageClient, db_session, deliver_outbox
from tests.postpay.helpers import approved, cli

EMAIL = "owner@kaisha.example"
BEFORE_CLOSE = datetime(2026, 11, 30, 23, 59, 59, tzinfo=JST)
AT_CLOSE = datetime(2026, 12, 1, 0, 0, 0, tzinfo=JST)


def send(app, key):
    response = app.test_client().post("/sms/messages/", data={"recipient": "+819012345678", "sender": "Chotto",
                                                              "message": "hello"}, headers=key.headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()[0]["msgid"]


def refund(app, msgid, at):
    with app.app_context(), db_session(app) as session:
        message_id = session.scalars(select(Message.id).where(Message.msgid == msgid)).one()
        fail_sms(session, message_id=message_id, reason="carrier reported a failure", now=at,
                 bodies=StatusCallbacks(app.config["BASE_URL"]))


def statement(client, month):
    """The statement page's lines (product, credential, count, quantity, amount) and its total."""
    page = client.page(f"/billing/statements?month={month}")
    rows = [tuple(cell.get_text(" ", strip=True) for cell in row.select("th, td"))
            for row in page.select("[data-testid=statement-lines] tbody tr")]
    total = page.select_one("[data-testid=statement-total]")
    return rows, total.get_text(strip=True) if total else None


def november_invoice(app, account_id):
    with db_session(app) as session:
        invoice = session.scalars(select(PostpayInvoice).where(PostpayInvoice.account_id == account_id)).one()
        [line] = session.scalars(select(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id)).all()
        return invoice.month, line.quantity, invoice.subtotal_yen, invoice.total_yen


@pytest.mark.parametrize("refunded_at", [BEFORE_CLOSE, AT_CLOSE], ids=["one second before the close", "at the close"])
def test_a_refund_is_on_the_statement_and_the_invoice_of_the_month_it_is_booked_in(app, clock, refunded_at):
    user, account_id, key = approved(app, limit=10_000)  # no prepaid credit: every SMS is on the line
    send(app, key)
    refunded = send(app, key)  # 27 November, ¥10 each
    owner = PageClient(app.test_client(), app)
    clock.at = datetime(2026, 11, 30, 23, 0, tzinfo=JST)  # November's last hour
    owner.login(EMAIL, PASSWORD)
    as_sent = statement(owner, "2026-11")
    assert as_sent[1] == "¥20" and [row[2:] for row in as_sent[0]] == [("2", "2 segments", "¥20")]

    clock.at = refunded_at
    refund(app, refunded, refunded_at)
    clock.at = datetime(2026, 12, 1, 1, tzinfo=JST)
    owner.login(EMAIL, PASSWORD)
    november, december = statement(owner, "2026-11"), statement(owner, "2026-12")
    assert cli(app, "postpay", "close-month").exit_code == 0
    if refunded_at == BEFORE_CLOSE:  # November's refund: netted in November on both documents
        assert november[1] == "¥10" and november[0][0][2:] == ("2", "2 segments", "¥10")
        assert december == ([], None)
        assert november_invoice(app, account_id) == ("2026-11", 1, 10, 11)
    else:  # December's refund: November stays as it was, December lists the refund
        assert november == as_sent
        assert len(december[0]) == 1 and december[1] == "-¥10"
        product, credential, count, quantity, amount = december[0][0]
        assert product == "SMS Refunds of earlier months" and (count, quantity, amount) == ("1", "1 segment", "-¥10")
        assert november_invoice(app, account_id) == ("2026-11", 2, 20, 22)  # the invoice books it in December too

    clock.at = datetime(2026, 12, 20, 12, tzinfo=JST)  # later in December: November's statement has not changed
    owner.login(EMAIL, PASSWORD)
    assert statement(owner, "2026-11") == november


def test_a_call_placed_before_the_close_and_ended_after_it_is_decembers_on_both_documents(app, clock):
    user, account_id, key = approved(app, limit=10_000)
    send(app, key)  # 27 November: ¥10 of SMS
    clock.at = datetime(2026, 11, 30, 23, 59, 50, tzinfo=JST)
    response = app.test_client().post("/voice/simple/playbacks/", headers=key.headers, data={
        "caller": "+81312345678", "recipient": "+819012345678", "tts_message": "Hello", "tts_lang": "en"})
    assert response.status_code == 201, response.get_json()
    owner = PageClient(app.test_client(), app)
    owner.login(EMAIL, PASSWORD)
    assert [row[0] for row in statement(owner, "2026-11")[0]] == ["SMS"]  # a call not ended is no usage yet
    clock.at = datetime(2026, 12, 1, 0, 0, 10, tzinfo=JST)
    deliver_outbox(app)  # the call is placed and ends after midnight
    clock.at = datetime(2026, 12, 1, 1, tzinfo=JST)
    owner.login(EMAIL, PASSWORD)
    november, december = statement(owner, "2026-11"), statement(owner, "2026-12")
    assert november[1] == "¥10" and [row[0] for row in november[0]] == ["SMS"]
    assert [(row[0], row[2:]) for row in december[0]] == [("Voice call", ("1", "1 minute", "¥10"))]
    assert cli(app, "postpay", "close-month").exit_code == 0
    assert november_invoice(app, account_id) == ("2026-11", 1, 10, 11)  # SMS only: the call is December's


def test_the_statement_says_when_a_refund_is_counted_in_both_languages(app, clock):
    approved(app, limit=10_000)
    owner = PageClient(app.test_client(), app)
    owner.login(EMAIL, PASSWORD)
    assert "A refund is counted in the month it was made" in owner.page("/billing/statements").get_text()
    owner.post("/language/ja", {"next": "/dashboard"}, status=302)
    assert "返金は、請求書と同じく返金した月に計上します。" in owner.page("/billing/statements").get_text()
