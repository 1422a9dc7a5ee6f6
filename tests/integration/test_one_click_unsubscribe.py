"""RFC 8058 one-click unsubscribe for the optional notices (expiry and run-out warnings): the
mail carries `List-Unsubscribe: <https://…>` and `List-Unsubscribe-Post:
List-Unsubscribe=One-Click`; a mail provider's POST of "List-Unsubscribe=One-Click" to that URL,
with no cookie and no CSRF token, unsubscribes (authenticated by the signed token alone), as
often as it is sent; a GET only shows the page with the button. Checked on the mail as a real
SMTP server receives it. No mailto: address: nothing reads mail sent to Chotto."""

import socket
import threading
from email import message_from_bytes
from email.policy import default

import pytest
from sqlalchemy import func, select

from portal.accounts.models import Membership
from portal.alerts import service as alerts
from portal.alerts.models import AlertOptOut, Delivery, Notice, NoticeKind
from portal.mail import SMTPMailer
from tests.helpers import db_session, deliver_outbox, make_user
from tests.integration.test_alerts import buy, spend

BASE = "https://portal.chotto.test"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def _opt_outs(app) -> list[tuple]:
    with db_session(app) as session:
        return [(row.recipient, row.topic) for row in session.scalars(select(AlertOptOut))]


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller

    received = []

    class Handler:
        async def handle_DATA(self, server, smtp_session, envelope):
            received.append(message_from_bytes(envelope.content, policy=default))
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, received
    finally:
        controller.stop()


def test_an_expiry_warning_has_one_click_headers_and_both_endpoints_work(app_with, clock, smtp_server):
    port, received = smtp_server
    app = app_with(MAILER=SMTPMailer(f"smtp+plain://127.0.0.1:{port}", "alerts@chotto.test"))
    user = make_user(app, email="owner@example.com")
    with db_session(app) as session:
        account = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
        buy(session, account, clock, 1000)
        spend(session, account, clock, 950, "a")  # a low-balance alert: not optional, no unsubscribe
        clock.advance(days=83)
        assert alerts.scheduled_pass(session=session, now=clock()) == 1  # the 7-day expiry warning
    deliver_outbox(app)
    alerts_sent = [m for m in received if m["X-Chotto-Notice-Id"]]
    assert len(alerts_sent) == 2
    low, expiry = sorted(alerts_sent, key=lambda m: m["List-Unsubscribe"] is not None)
    assert low["List-Unsubscribe"] is None and low["List-Unsubscribe-Post"] is None
    assert expiry["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    header = str(expiry["List-Unsubscribe"])
    assert header.startswith(f"<{BASE}/alerts/unsubscribe/") and header.endswith(">") and "," not in header
    url = header[1:-1]
    assert url in expiry.get_body(("plain",)).get_content()  # the same link as the one in the text
    path = url.removeprefix(BASE)

    provider = app.test_client(use_cookies=False)  # no session, no CSRF token: a mail provider's server
    for method in ("GET", "HEAD"):
        assert provider.open(path, method=method).status_code == 200
    page = provider.get(path).get_data(as_text=True)
    assert 'method="post"' in page and "Stop these notices" in page
    assert _opt_outs(app) == []  # a GET (a mail scanner's prefetch) changes nothing

    answers = [provider.post(path, data=ONE_CLICK).status_code,
               provider.post(path, data=ONE_CLICK, content_type="multipart/form-data").status_code,
               provider.post(path, data=ONE_CLICK).status_code]
    assert answers == [200, 200, 200]
    assert _opt_outs(app) == [("owner@example.com", "expiry")]  # once, however often
    assert provider.post(path[:-4] + "AAAA", data=ONE_CLICK).status_code == 404
    assert provider.post(path.replace("/1.expiry.", "/1.run_out."), data=ONE_CLICK).status_code == 404
    assert _opt_outs(app) == [("owner@example.com", "expiry")]

    clock.advance(days=6)
    with db_session(app) as session:
        assert alerts.scheduled_pass(session=session, now=clock()) == 1  # the 1-day warning …
        last = session.scalars(select(Notice).order_by(Notice.id.desc())).first()
        assert last.kind == NoticeKind.EXPIRY_1D  # … to nobody by e-mail any more
        assert session.scalar(select(func.count()).select_from(Delivery).where(Delivery.notice_id == last.id)) == 0


@pytest.mark.postgresql
def test_concurrent_one_click_posts_unsubscribe_once_and_all_succeed(app, session, clock):
    """The mail provider's POST and the recipient's button, and retries, at the same moment."""
    from portal.alerts import rules

    user = make_user(app, email="owner@example.com")
    account = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
    session.commit()
    token = rules.unsubscribe_token(app.config["SECRET_KEY"], account, "owner@example.com", "run_out")
    start, answers = threading.Barrier(8), []

    def click():
        client = app.test_client(use_cookies=False)
        start.wait()
        answers.append(client.post(f"/alerts/unsubscribe/{token}", data=ONE_CLICK).status_code)

    threads = [threading.Thread(target=click) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [200] * 8
    assert _opt_outs(app) == [("owner@example.com", "run_out")]
