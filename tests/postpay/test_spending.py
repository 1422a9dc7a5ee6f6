"""Spending with a credit line: prepaid credit first, then the line up to its limit (unbilled
usage plus unpaid invoices); beyond it a 402 that says why; a suspended line refuses live sends
while prepaid credit still works; the ledger check proves the line's usage."""

import pytest
from sqlalchemy import select

from portal.ledger import service as ledger
from portal.ledger.models import Entry, Lot, Transaction
from portal.ledger.rules import InsufficientCredit, LotKind
from portal.postpay import queries
from portal.postpay.check import check
from tests.api.conftest import fund
from tests.helpers import db_session
from tests.integration.test_ledger_concurrency import parallel
from tests.postpay.helpers import YEN, approved, cli

SMS = {"recipient": "+818012345678", "sender": "CHOTTO", "message": "hello"}  # ¥10


def send(api, key, status=201):
    response = api.post("/sms/messages/", data=SMS, headers=key.headers)
    assert response.status_code == status, response.get_json()
    return response.get_json()


def line(app, account_id):
    with db_session(app) as session:
        return queries.line_of(session, account_id=account_id)


def spent_from(app, account_id, kind):
    with db_session(app) as session:
        return -sum(session.scalars(select(Entry.amount).join(Lot, Lot.id == Entry.lot_id).join(
            Transaction, Transaction.id == Entry.transaction_id).where(
            Lot.account_id == account_id, Lot.kind == kind, Transaction.kind == "debit")))


def test_prepaid_credit_is_spent_first_then_the_line(app, api):
    _, account_id, key = approved(app, limit=100, prepaid=25)
    for _ in range(4):  # ¥40: ¥25 prepaid, then ¥15 on the line
        send(api, key)
    assert spent_from(app, account_id, "grant") == 25 * YEN
    assert spent_from(app, account_id, LotKind.LINE) == 15 * YEN
    figures = line(app, account_id)
    assert (figures.limit, figures.used, figures.available) == (100 * YEN, 15 * YEN, 85 * YEN)
    credits = api.get("/you/credits/", headers=key.headers).get_json()
    assert credits["credits"] == 85.0 and credits["prepaid_credits"] == 0.0
    assert credits["credit_line"] == {"limit": 100.0, "used": 15.0, "available": 85.0, "suspended": False}
    assert all(lot["kind"] != "line" for lot in credits["lots"])


def test_spending_exactly_to_the_limit_then_one_send_more_is_402_with_the_reason(app, api):
    _, account_id, key = approved(app, limit=100)
    for _ in range(10):
        send(api, key)
    assert line(app, account_id).available == 0
    refused = send(api, key, status=402)
    assert "limit of ¥100" in refused["detail"] and "unpaid invoices" in refused["detail"]
    assert cli(app, "ledger", "check").exit_code == 0


def test_one_yen_over_the_line_is_refused_and_exactly_the_line_is_not(app, clock):
    _, account_id, _ = approved(app, limit=100, prepaid=5)
    with db_session(app) as session:
        with pytest.raises(InsufficientCredit):
            ledger.debit(session=session, account_id=account_id, amount=106 * YEN, idempotency_key="over",
                         reason="SMS over", now=clock())
        ledger.debit(session=session, account_id=account_id, amount=105 * YEN, idempotency_key="exact",
                     reason="SMS exact", now=clock())
        assert check(session) == []
    assert line(app, account_id).available == 0


def test_a_suspended_line_refuses_live_sends_but_prepaid_credit_still_works(app, api, clock):
    _, account_id, key = approved(app, limit=100)
    send(api, key)
    clock.advance(seconds=1)
    assert cli(app, "postpay", "suspend", "owner@kaisha.example", "--reason", "contract review").exit_code == 0
    refused = send(api, key, status=402)
    assert "suspended" in refused["detail"]
    figures = line(app, account_id)
    assert figures.suspended and figures.available == 0 and figures.used == 10 * YEN
    fund(app, account_id, 20, ref="top-up")
    send(api, key)  # prepaid credit
    send(api, key)
    send(api, key, status=402)
    assert cli(app, "postpay", "resume", "owner@kaisha.example", "--reason", "reviewed").exit_code == 0
    send(api, key)
    assert line(app, account_id).used == 20 * YEN
    assert cli(app, "ledger", "check").exit_code == 0


def test_a_failed_message_paid_from_the_line_gives_the_line_back(app, api, clock):
    from portal.messaging import delivery
    from portal.messaging.api_models import Message

    _, account_id, key = approved(app, limit=100)
    msgid = send(api, key)[0]["msgid"]
    with db_session(app) as session:
        message_id = session.scalars(select(Message.id).where(Message.msgid == msgid)).one()
        delivery.fail_sms(session, message_id=message_id, reason="rejected", bodies=None, now=clock())
    assert line(app, account_id).used == 0
    assert cli(app, "ledger", "check").exit_code == 0


def test_a_call_hold_on_the_line_counts_as_used_until_it_settles(app, api):
    _, account_id, key = approved(app, limit=100)
    response = api.post("/voice/simple/playbacks/", headers=key.headers,
                        data={"caller": "+81312345678", "recipient": "+818012345678", "tts_message": "hello",
                              "tts_lang": "en"})
    assert response.status_code == 201, response.get_json()
    assert line(app, account_id).used == 50 * YEN  # the hold: ¥50
    assert cli(app, "ledger", "check").exit_code == 0


def test_the_limit_can_be_raised_and_lowered_but_not_below_what_is_used(app, api):
    _, account_id, key = approved(app, limit=100)
    for _ in range(3):
        send(api, key)
    assert cli(app, "postpay", "approve", "owner@kaisha.example", "--limit", 200).exit_code == 0
    assert (line(app, account_id).limit, line(app, account_id).available) == (200 * YEN, 170 * YEN)
    refused = cli(app, "postpay", "approve", "owner@kaisha.example", "--limit", 29)
    assert refused.exit_code != 0 and "¥30 of the line is used" in refused.output
    assert cli(app, "postpay", "approve", "owner@kaisha.example", "--limit", 30).exit_code == 0
    assert line(app, account_id).available == 0
    assert cli(app, "ledger", "check").exit_code == 0


@pytest.mark.postgresql
def test_sixteen_parallel_sends_at_the_limit_never_exceed_it(app, clock):
    _, account_id, _ = approved(app, limit=100)
    engine = app.extensions["portal.engine"]

    def debit(session, job):
        return ledger.debit(session=session, account_id=account_id, amount=5 * YEN, idempotency_key=f"sms-{job}",
                            reason="SMS parallel", now=clock()).transaction_id

    outcomes = parallel(engine, list(range(40)), debit)
    assert sum(isinstance(outcome, int) for outcome in outcomes) == 20 and outcomes.count("refused") == 20
    figures = line(app, account_id)
    assert (figures.used, figures.available) == (100 * YEN, 0)
    with db_session(app) as session:
        assert check(session) == []


def test_a_suspended_line_is_never_written_off_nor_warned_about_as_expiring_credit(app, clock):
    from portal import worker

    _, account_id, _ = approved(app, limit=100)
    clock.advance(seconds=1)
    assert cli(app, "postpay", "suspend", "owner@kaisha.example", "--reason", "review").exit_code == 0
    clock.advance(days=200)
    assert "0 journal lines" in cli(app, "expire").output
    assert worker.alert_warnings(app) == 0
    checked = cli(app, "ledger", "check")
    assert checked.exit_code == 0 and "note:" not in checked.output, checked.output
    assert line(app, account_id).limit == 100 * YEN


@pytest.mark.postgresql
def test_sixteen_http_clients_sending_at_the_limit_get_exactly_what_the_line_allows(database_url):
    """R1 through HTTP: each client has its own connection; the line of ¥100 pays for exactly
    ten SMS of ¥10 after the prepaid credit, never one more."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import requests

    from tests.e2e.conftest import LiveServer

    with LiveServer(database_url) as server:
        app = server.app
        _, account_id, key = approved(app, limit=100)
        credits = requests.get(f"{server.url}/you/credits/", auth=(key.sid, key.token)).json()["credits"]
        affordable, clients = int(credits // 10), 16
        attempts = affordable + 2 * clients
        start = threading.Barrier(clients)

        def client(index):
            session = requests.Session()
            start.wait()
            return [session.post(f"{server.url}/sms/messages/", auth=(key.sid, key.token),
                                 data={"recipient": "+819012345678", "sender": "Chotto", "message": f"m{n}"}).status_code
                    for n in range(index, attempts, clients)]

        with ThreadPoolExecutor(clients) as pool:
            codes = [code for result in pool.map(client, range(clients)) for code in result]
        assert codes.count(201) == affordable and codes.count(402) == attempts - affordable, codes
        figures = line(app, account_id)
        assert (figures.used, figures.available) == (100 * YEN, 0)
        with db_session(app) as session:
            assert check(session) == []
        assert cli(app, "ledger", "check").exit_code == 0
