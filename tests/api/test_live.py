"""The API on a real port: Xoxzo's own Python client library against Chotto by changing only
the host, and parallel clients through HTTP spending twice the balance (R1 through HTTP)."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import select
from xoxzo.cloudpy import XoxzoClient

from portal.accounts.models import Membership
from portal.clock import system_now
from portal.ledger.check import check
from tests.api.conftest import YEN, fund, new_key
from tests.e2e.conftest import LiveServer
from tests.helpers import db_session, make_user


@pytest.fixture
def server(database_url):
    with LiveServer(database_url) as live:
        yield live


def account_of(app, email, phone=None):
    user = make_user(app, email=email, phone=phone)
    with db_session(app) as session:
        return user, session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()


def test_the_xoxzo_python_client_works_by_changing_only_the_host(server):
    user, account_id = account_of(server.app, "dev@example.com")
    fund(server.app, account_id, 1000)
    key = new_key(server.app, account_id, user.id)
    client = XoxzoClient(sid=key.sid, auth_token=key.token, api_host=server.url)

    sent = client.send_sms(message="Hello from xoxzo.cloudpy", recipient="+819012345678", sender="Chotto")
    assert sent.errors is None, sent.message
    msgid = sent.messages[0]["msgid"]
    status = client.get_sms_delivery_status(msgid)
    assert status.errors is None and status.message["msgid"] == msgid and status.message["cost"] == 10.0
    listed = client.get_sent_sms_list(sent_date=">=2026-11-01")  # the client builds ?sent_date>=2026-11-01
    assert listed.errors is None and [m["msgid"] for m in listed.messages] == [msgid]

    call = client.call_tts_playback(caller="+81312345678", recipient="+819012345678",
                                    tts_message="Hello from Chotto", tts_lang="en")
    assert call.errors is None, call.message
    callid = call.messages[0]["callid"]
    status = client.get_simple_playback_status(callid)
    assert status.errors is None and status.message["callid"] == callid
    for caller in ("814512345678", "+814512345678"):  # the caller of Xoxzo's own client tests, with and without +
        call = client.call_simple_playback(caller=caller, recipient="+819012345678",
                                           recording_url="https://example.com/hello.mp3")
        assert call.errors is None, call.message
        status = client.get_simple_playback_status(call.messages[0]["callid"])
        assert status.errors is None and status.message["caller"] == "+814512345678"
    unreachable = client.call_simple_playback("814512345678", "+8108012345678", None)  # xoxzo.cloudpy's fail01
    assert unreachable.errors == 400 and "recipient" in unreachable.message

    wrong = client.send_sms(message="x", recipient="+8108012345678", sender="Chotto")
    assert wrong.errors == 400 and "recipient" in wrong.message
    stranger = XoxzoClient(sid=key.sid, auth_token="chotto_live_" + "A" * 36, api_host=server.url)
    assert stranger.send_sms(message="x", recipient="+819012345678", sender="Chotto").errors == 401


@pytest.mark.parametrize("clients", [8, 16])
def test_parallel_clients_spending_twice_the_balance_get_exactly_the_affordable_sends(server, clients):
    """Each client has its own HTTP connection (and the server its own database connection
    per request); the balance pays for exactly `affordable` SMS of ¥10."""
    app = server.app
    user, account_id = account_of(app, "dev@example.com", phone="+819011112222")
    affordable = 2 * clients
    with db_session(app) as session:
        from portal.ledger import service

        service.debit(session=session, account_id=account_id, amount=50 * YEN, idempotency_key="spend-trial",
                      reason="use up the trial", now=system_now())
    fund(app, account_id, affordable * 10)
    key = new_key(app, account_id, user.id)
    attempts = 2 * affordable
    start = threading.Barrier(clients)

    def client(index):
        session = requests.Session()
        start.wait()
        codes = []
        for n in range(index, attempts, clients):
            response = session.post(f"{server.url}/sms/messages/", auth=(key.sid, key.token),
                                    data={"recipient": "+819012345678", "sender": "Chotto", "message": f"m{n}"})
            codes.append(response.status_code)
        return codes

    with ThreadPoolExecutor(clients) as pool:
        codes = [code for result in pool.map(client, range(clients)) for code in result]
    assert codes.count(201) == affordable and codes.count(402) == attempts - affordable, codes
    with app.app_context(), db_session(app) as session:
        problems, _ = check(session, now=system_now())
    assert problems == []
    result = app.test_cli_runner().invoke(args=["ledger", "check"])
    assert result.exit_code == 0, result.output
