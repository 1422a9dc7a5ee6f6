"""Test helpers: a page client that checks page-wide rules, and small factories."""

import re
from contextlib import contextmanager

from bs4 import BeautifulSoup
from sqlalchemy import select

from portal import db, worker
from portal.clock import system_now
from portal.accounts.operator import create_account
from portal.mail import DevMail
from portal.messaging.models import TestInboxMessage

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


class PageClient:
    """Wraps Flask's test client. Every HTML page it fetches must have a title, a CSRF token
    in every POST form, and no inline script."""

    def __init__(self, client, app):
        self.client = client
        self.app = app

    def get(self, path, *, status=200, **kwargs):
        response = self.client.get(path, **kwargs)
        assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:2000])
        if response.mimetype == "text/html":
            headers = kwargs.get("headers") or {}
            self.check_page(response, fragment=bool(headers.get("HX-Request") and not headers.get("HX-History-Restore-Request")))
        return response

    def page(self, path, *, status=200, **kwargs) -> BeautifulSoup:
        return BeautifulSoup(self.get(path, status=status, **kwargs).get_data(as_text=True), "html.parser")

    def post(self, path, data=None, *, status=None, csrf=True, headers=None, **kwargs):
        data = dict(data or {})
        if csrf:
            data.setdefault("csrf_token", self.csrf_token())
        response = self.client.post(path, data=data, headers=headers or {}, **kwargs)
        if status is not None:
            assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:2000])
        if response.mimetype == "text/html" and response.status_code < 300:
            self.check_page(response, fragment=bool(headers and headers.get("HX-Request")))
        return response

    def csrf_token(self) -> str:
        html = self.client.get("/login").get_data(as_text=True)
        match = CSRF.search(html)
        return match.group(1) or match.group(2)

    @staticmethod
    def check_page(response, fragment=False):
        soup = BeautifulSoup(response.get_data(as_text=True), "html.parser")
        if not fragment:
            assert soup.title and soup.title.string and soup.title.string.strip(), "page has no title"
            assert soup.html.get("lang") in ("ja", "en")
        for form in soup.find_all("form"):
            if (form.get("method") or "get").lower() == "post":
                assert form.find("input", attrs={"name": "csrf_token"}), f"POST form without CSRF token: {form}"
        for script in soup.find_all("script"):
            assert script.get("src"), "inline script found"
        assert "style=" not in str(soup.body or soup), "inline style found"
        ids = [tag["id"] for tag in soup.find_all(id=True)]
        assert len(ids) == len(set(ids)), f"repeated ids: {sorted({i for i in ids if ids.count(i) > 1})}"

    def text(self, path, **kwargs) -> str:
        return " ".join(self.page(path, **kwargs).get_text(" ").split())

    def login(self, email, password=PASSWORD):
        response = self.post("/login", {"email": email, "password": password})
        assert response.status_code == 302, response.get_data(as_text=True)[:2000]
        return response


@contextmanager
def db_session(app):
    with app.app_context():
        with db.job_session() as session:
            yield session


def make_user(app, email="owner@example.com", *, password=PASSWORD, verified=True, phone=None, name=None, language="en"):
    with db_session(app) as session:
        return create_account(
            session=session, email=email, password=password, name=name or email.split("@")[0],
            language=language, verified=verified, phone=phone, trial_amount=app.config["TRIAL_CREDIT_YEN"] * 1000,
            now=app.config.get("CLOCK", system_now)(),
        )


def deliver_outbox(app) -> None:
    while worker.drain_once(app):
        pass


def mails_to(app, email) -> list[DevMail]:
    deliver_outbox(app)
    with db_session(app) as session:
        return list(session.scalars(select(DevMail).where(DevMail.recipient == email).order_by(DevMail.id)))


def last_link(app, email, marker) -> str:
    """The path of the last link containing `marker` mailed to `email`."""
    body = mails_to(app, email)[-1].text_body
    links = re.findall(r"https://portal\.chotto\.test(\S*" + re.escape(marker) + r"\S*)", body)
    assert links, body
    return links[-1]


def inbox_codes(app) -> list[str]:
    deliver_outbox(app)
    with db_session(app) as session:
        bodies = [m.body for m in session.scalars(select(TestInboxMessage).order_by(TestInboxMessage.id))]
    return [re.search(r"(\d{6})", body).group(1) for body in bodies]


def new_account(session, now, name="Ledger KK") -> int:
    """An account with its credit row and no people: enough for ledger tests."""
    from portal.accounts.models import Account
    from portal.ledger.service import open_state

    account = Account(name=name, kind="company", language="ja", tax_residency="JP", created_at=now)
    session.add(account)
    session.flush()
    open_state(session, account_id=account.id, now=now)
    session.commit()
    return account.id
