"""The error path itself never fails: the request's transaction is rolled back before the
error page is rendered, a page that cannot be rendered falls back to a static one, every error
answer carries the security headers, and database errors reach the log without their values."""

import logging
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal import db
from portal.accounts.models import User
from tests.helpers import PageClient, db_session, make_user

PHONE = "+819055501234"
BODY = "SECRET-BODY-" + "7" * 30


def _assert_secured(response):
    headers = response.headers
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"


@pytest.fixture
def failing_routes(app, clock):
    """Routes that break the request's transaction: a duplicate verified phone number (an
    IntegrityError whose PostgreSQL DETAIL names the number) and an over-long value (a DataError
    on PostgreSQL, an IntegrityError on SQLite) carrying a recognisable message body."""
    make_user(app, email="first@example.com", phone=PHONE)
    make_user(app, email="second@example.com", name="Second Person")

    def _second():
        return db.session().scalars(select(User).where(User.email == "second@example.com")).one()

    @app.get("/boom/duplicate-phone")
    def duplicate_phone():
        second = _second()
        second.phone_e164, second.phone_verified_at = PHONE, clock() - timedelta(minutes=1)
        db.session().flush()

    @app.get("/boom/too-long")
    def too_long():
        second = _second()
        second.phone_e164, second.email = BODY, None
        db.session().flush()

    @app.get("/boom/plain")
    def plain():
        raise RuntimeError("a bug")

    return app


def test_the_500_page_rolls_back_the_broken_transaction_before_rendering(failing_routes):
    """The route needs no sign-in, so the error page is the first to load the signed-in person
    from the database: it can only do so after the failed flush is rolled back."""
    client = PageClient(failing_routes.test_client(), failing_routes)
    client.login("second@example.com")
    response = client.client.get("/boom/duplicate-phone")
    assert response.status_code == 500
    page = response.get_data(as_text=True)
    assert "Something went wrong on our side" in page and "Second Person" in page
    _assert_secured(response)
    PageClient.check_page(response)
    client.get("/dashboard")


@pytest.mark.parametrize("path", ["/boom/duplicate-phone", "/boom/too-long"])
def test_database_errors_reach_the_log_without_their_values(failing_routes, caplog, path):
    caplog.set_level(logging.DEBUG)
    response = failing_routes.test_client().get(path)
    assert response.status_code == 500
    assert f"unhandled database error on GET {path}" in caplog.text
    assert "Error" in caplog.text and "Traceback (values omitted)" in caplog.text
    assert PHONE not in caplog.text and BODY not in caplog.text and "SECRET-BODY" not in caplog.text
    assert PHONE not in response.get_data(as_text=True)


def test_a_database_error_logged_by_any_portal_code_loses_its_values(failing_routes, caplog):
    """The worker and the services log exceptions too: the log filter describes them instead."""
    caplog.set_level(logging.DEBUG)
    with db_session(failing_routes) as session:
        second = session.scalars(select(User).where(User.email == "second@example.com")).one()
        second.phone_e164 = BODY
        second.email = None
        try:
            session.flush()
        except Exception as error:
            logging.getLogger("portal.worker").exception("a job failed: %s", error)
    assert "a job failed" in caplog.text
    assert BODY not in caplog.text and "SECRET-BODY" not in caplog.text


def test_an_error_page_that_cannot_be_rendered_falls_back_to_a_static_page(failing_routes, monkeypatch, caplog):
    import portal.web

    def broken(*args, **kwargs):
        raise RuntimeError("the template engine is broken")

    monkeypatch.setattr(portal.web, "render_template", broken)
    for path, status in (("/boom/plain", 500), ("/no/such/page", 404)):
        response = failing_routes.test_client().get(path)
        assert response.status_code == status
        assert "Please try again in a moment" in response.get_data(as_text=True)
        _assert_secured(response)
        PageClient.check_page(response)
    assert "the 500 page could not be rendered: RuntimeError" in caplog.text


@pytest.mark.parametrize("path, status, json", [
    ("/no/such/page", 404, False), ("/boom/plain", 500, False), ("/verify-email/%00", 400, False),
    ("/login?next=%00", 400, False), ("/sms/messages/nothing-here", 401, True), ("/you/credits/?x=%00", 400, True),
    ("/api/no-such-thing", 404, True),
])
def test_every_error_answer_carries_the_security_headers(failing_routes, path, status, json):
    response = failing_routes.test_client().get(path)
    assert response.status_code == status
    assert (response.mimetype == "application/json") == json
    _assert_secured(response)
