"""S8 and issue 9 item 9: log-in, sign-up and forgot-password do the same work for a known
and an unknown address, proved by counting, not timing: the SQL statements (by verb and
table) and the argon2 calls of the two requests are equal, and so are status and body. The
mail is composed by the worker in both cases."""

import re
from collections import Counter
from contextlib import contextmanager

import pytest
from sqlalchemy import event

from portal.accounts import passwords
from tests.helpers import PASSWORD, PageClient, make_user, mails_to

TABLE = re.compile(r'\b(?:FROM|INTO|UPDATE|JOIN)\s+"?(\w+)', re.IGNORECASE)


def shape(statement: str) -> tuple[str, tuple[str, ...]]:
    """A statement without its values: its verb and the tables it names."""
    return statement.split(None, 1)[0].upper(), tuple(TABLE.findall(statement))


class CountingHasher:
    def __init__(self, inner):
        self.inner, self.calls = inner, Counter()

    def hash(self, *args, **kwargs):
        self.calls["hash"] += 1
        return self.inner.hash(*args, **kwargs)

    def verify(self, *args, **kwargs):
        self.calls["verify"] += 1
        return self.inner.verify(*args, **kwargs)

    def check_needs_rehash(self, *args, **kwargs):
        return self.inner.check_needs_rehash(*args, **kwargs)


class Work:
    def __init__(self):
        self.statements, self.hashing, self.response = Counter(), Counter(), None


@pytest.fixture
def measure(app, monkeypatch):
    """Runs one request and records the SQL statements and password-hash calls it made."""
    engine = app.extensions["portal.engine"]

    @contextmanager
    def measured():
        work = Work()
        hasher = CountingHasher(passwords._hasher)
        monkeypatch.setattr(passwords, "_hasher", hasher)

        def count(_conn, _cursor, statement, _params, _context, _many):
            work.statements[shape(statement)] += 1

        event.listen(engine, "before_cursor_execute", count)
        try:
            yield work
        finally:
            event.remove(engine, "before_cursor_execute", count)
            monkeypatch.setattr(passwords, "_hasher", hasher.inner)
            work.hashing = hasher.calls

    return measured


def post(app, measure, path, data) -> Work:
    client = PageClient(app.test_client(), app)
    data = data | {"csrf_token": client.csrf_token()}
    with measure() as work:
        work.response = client.client.post(path, data=data)
    return work


def same_page(known, unknown, known_email, unknown_email) -> None:
    assert known.response.status_code == unknown.response.status_code
    assert known.response.headers.get("Location") == unknown.response.headers.get("Location")
    assert without_tokens(known.response).replace(known_email, "X") == without_tokens(unknown.response).replace(unknown_email, "X")


def without_tokens(response) -> str:
    body = re.sub(r'"X-CSRFToken": "[^"]+"', "", response.get_data(as_text=True))
    return re.sub(r'value="[^"]*"', "", body)


def writes(work: Work) -> set[tuple[str, tuple[str, ...]]]:
    return {s for s in work.statements if s[0] in ("INSERT", "UPDATE", "DELETE")}


def test_log_in_does_the_same_work_for_an_unknown_address(app, measure):
    make_user(app, "known@example.com")
    attempt = {"password": "a wrong but long password"}
    known = post(app, measure, "/login", attempt | {"email": "known@example.com"})
    unknown = post(app, measure, "/login", attempt | {"email": "unknown@example.com"})

    assert known.statements == unknown.statements
    assert known.hashing == unknown.hashing == Counter(verify=1)
    assert ("INSERT", ("login_throttles",)) in writes(known)
    assert known.response.status_code == 422
    same_page(known, unknown, "known@example.com", "unknown@example.com")


def test_sign_up_does_the_same_work_for_a_known_address(app, measure):
    make_user(app, "known@example.com")
    form = {"name": "Hana Sato", "password": PASSWORD, "account_kind": "individual", "account_name": "",
            "tax_residency": "JP", "language": "en"}
    known = post(app, measure, "/signup", form | {"email": "known@example.com"})
    unknown = post(app, measure, "/signup", form | {"email": "unknown@example.com"})

    assert known.statements == unknown.statements
    assert known.hashing == unknown.hashing == Counter(hash=1)
    assert {("INSERT", ("signup_attempts",)), ("INSERT", ("outbox",))} <= writes(known)
    assert known.response.status_code == 302
    same_page(known, unknown, "known@example.com", "unknown@example.com")
    assert [m.subject for m in mails_to(app, "known@example.com")] == ["[Chotto] You already have a login"]
    assert [m.subject for m in mails_to(app, "unknown@example.com")] == ["[Chotto] Confirm your e-mail address"]


def test_forgot_password_does_the_same_work_for_an_unknown_address(app, measure):
    make_user(app, "known@example.com")
    known = post(app, measure, "/password/forgot", {"email": "known@example.com"})
    unknown = post(app, measure, "/password/forgot", {"email": "unknown@example.com"})

    assert known.statements == unknown.statements
    assert known.hashing == unknown.hashing
    assert ("INSERT", ("outbox",)) in writes(known)
    assert known.response.status_code == 200
    same_page(known, unknown, "known@example.com", "unknown@example.com")
    assert [m.subject for m in mails_to(app, "known@example.com")] == ["[Chotto] Reset your password"]
    assert mails_to(app, "unknown@example.com") == []
