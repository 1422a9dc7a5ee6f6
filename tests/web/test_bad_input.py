"""Bad input never gives a 500: NUL bytes anywhere, dates out of range and page numbers beyond
64 bits, sent to every route (web routes as a signed-in owner, API routes with a valid credential)."""

import json
import re

import pytest

from tests.api.conftest import fund, new_key
from tests.helpers import PageClient, make_user

NUL = "\x00"
PATH_VALUES = {"lang": "ja", "filename": "css/app.css", "token": "A" * 43}
HUGE_ID = "99999999999999999999"

BAD_QUERIES = {
    "nul_in_a_value": {"q": f"a{NUL}b"},
    "nul_in_a_key": {f"q{NUL}": "x"},
    "nul_in_next": {"next": f"/dashboard{NUL}"},
    "nul_in_a_date": {"from": f"2026-11-27{NUL}", "sent_date": f">=2026-11-27{NUL}"},
    "page_beyond_64_bits": {"page": "99999999999999999999"},
    "page_negative": {"page": "-5"},
    "page_not_a_number": {"page": "two"},
    "page_zero": {"page": "0"},
    "dates_at_the_end_of_time": {"to": "9999-12-31", "from": "9999-12-31"},
    "dates_at_the_start_of_time": {"from": "0001-01-01", "to": "0001-01-01"},
    "sent_date_after_the_end_of_time": {"sent_date": ">9999-12-31"},
    "sent_date_on_the_last_day": {"sent_date": "9999-12-31"},
    "sent_date_operator_in_the_name": {"sent_date<=": "0001-01-01"},
    "amounts_beyond_64_bits": {"min": "99999999999999999999", "max": "-99999999999999999999",
                               "amount": "99999999999999999999"},
}

NUL_FORMS = {
    "nul_in_a_form_value": {"email": f"owner{NUL}@example.com", "password": f"pass{NUL}word", "name": f"A{NUL}",
                            "recipient": f"+8190{NUL}", "message": f"hi{NUL}", "amount": f"1000{NUL}"},
    "nul_in_a_form_key": {f"email{NUL}": "owner@example.com"},
}

NUL_JSON = {
    "nul_in_a_json_value": {"recipient": "+819012345678", "sender": "Chotto", "message": f"hi{NUL}"},
    "nul_in_a_json_key": {f"message{NUL}": "hi", "recipient": "+819012345678"},
    "nul_in_a_nested_json_value": {"tags": ["ok", f"bad{NUL}"], "recipient": "+819012345678"},
    "nul_in_a_deeply_nested_json_key": {"extra": {"deeper": [{f"k{NUL}": "v"}]}},
    "non_string_json_values": {"recipient": 10 ** 30, "message": {"nested": [1, 2]}, "sender": None},
}


@pytest.fixture
def signed_in(app):
    """An owner signed in to the web pages, and a funded live credential of the same account."""
    from sqlalchemy import select

    from portal.accounts.models import Membership
    from tests.helpers import db_session

    user = make_user(app, phone="+819011112222")
    with db_session(app) as session:
        account_id = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
    fund(app, account_id, 1000)
    key = new_key(app, account_id, user.id)
    client = PageClient(app.test_client(), app)
    client.login("owner@example.com")
    return client, key


def _routes(app, *, nul_in_path=False):
    from portal import api

    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:\w+:)?(\w+)>",
                      lambda m: NUL if nul_in_path and "int:" not in m.group(0) else PATH_VALUES.get(m.group(1), "1"),
                      rule.rule)
        if nul_in_path and NUL not in path:
            continue
        with app.test_request_context(path):
            is_api = api.is_api_request()
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule, method, path, is_api


def _send(client, key, method, path, is_api, **kwargs):
    headers = key.headers if is_api else {}
    return client.client.open(path, method=method, headers=headers, **kwargs)


def _assert_refused_naming(response, field: str, is_api: bool, where):
    assert response.status_code == 400, (where, response.status_code, response.get_data(as_text=True)[:500])
    shown = field.replace(NUL, "\\u0000")
    if is_api:
        body = response.get_json()
        assert isinstance(body, dict) and shown in body, (where, body)
        assert isinstance(body[shown], list) and body[shown], (where, body)
    else:
        assert response.mimetype == "text/html", where
        assert shown in response.get_data(as_text=True), where


@pytest.mark.parametrize("query", BAD_QUERIES.values(), ids=BAD_QUERIES.keys())
def test_no_route_answers_a_bad_query_string_with_a_server_error(app, signed_in, query):
    client, key = signed_in
    for rule, method, path, is_api in _routes(app):
        data = {"csrf_token": client.csrf_token()} if method == "POST" and not is_api else None
        response = _send(client, key, method, path, is_api, query_string=query, data=data)
        assert response.status_code < 500, (rule.rule, method, response.status_code,
                                            response.get_data(as_text=True)[:500])
        nul_key = next((k for k, v in query.items() if NUL in k + v), None)
        if nul_key is not None:
            _assert_refused_naming(response, nul_key, is_api, (rule.rule, method))


@pytest.mark.parametrize("form", NUL_FORMS.values(), ids=NUL_FORMS.keys())
def test_a_nul_byte_in_any_posted_form_is_refused_naming_the_field(app, signed_in, form):
    client, key = signed_in
    for rule, method, path, is_api in _routes(app):
        if method != "POST":
            continue
        data = form | ({} if is_api else {"csrf_token": client.csrf_token()})
        response = _send(client, key, method, path, is_api, data=data)
        if rule.endpoint == "webhooks.stripe_webhook":
            assert response.status_code == 400, response.get_data(as_text=True)[:300]
            continue
        field = next(name for name, value in form.items() if NUL in name + value)
        _assert_refused_naming(response, field, is_api, (rule.rule, method))


@pytest.mark.parametrize("body", NUL_JSON.values(), ids=NUL_JSON.keys())
def test_a_nul_byte_anywhere_in_a_json_body_is_refused_naming_the_field(app, signed_in, body):
    client, key = signed_in
    for rule, method, path, is_api in _routes(app):
        if method != "POST":
            continue
        headers = key.headers if is_api else {"X-CSRFToken": client.csrf_token()}
        response = client.client.post(path, data=json.dumps(body), content_type="application/json", headers=headers)
        assert response.status_code < 500, (rule.rule, response.status_code, response.get_data(as_text=True)[:500])
        if rule.endpoint == "webhooks.stripe_webhook" or "non_string" in json.dumps(list(body)):
            continue
        if NUL in json.dumps(body, ensure_ascii=False) and not rule.endpoint.startswith("webhooks."):
            assert response.status_code == 400, (rule.rule, response.status_code)


def test_a_nul_byte_in_a_path_parameter_is_refused_naming_it(app, signed_in):
    client, key = signed_in
    seen = 0
    for rule, method, path, is_api in _routes(app, nul_in_path=True):
        response = _send(client, key, method, path, is_api,
                         data={"csrf_token": client.csrf_token()} if method == "POST" and not is_api else None)
        parameter = re.search(r"<(?!int:)(?:\w+:)?(\w+)>", rule.rule).group(1)  # the one the NUL is in
        if rule.endpoint == "static":
            assert response.status_code in (400, 404), response.status_code
            continue
        _assert_refused_naming(response, parameter, is_api, (rule.rule, method))
        seen += 1
    assert seen >= 8


def test_an_id_beyond_64_bits_in_any_path_is_not_found_rather_than_a_server_error(app, signed_in):
    """404, or 405 where werkzeug saw another method's rule match the path before the id was refused."""
    client, key = signed_in
    seen = 0
    for rule in app.url_map.iter_rules():
        if "<int:" not in rule.rule:
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: HUGE_ID if "int:" in m.group(0) else PATH_VALUES.get(m.group(1), "1"),
                      rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            data = {"csrf_token": client.csrf_token(), "password": "x"} if method == "POST" else None
            response = client.client.open(path, method=method, data=data)
            assert response.status_code in (404, 405), (rule.rule, method, response.status_code,
                                                         response.get_data(as_text=True)[:300])
            seen += 1
    assert seen >= 10


def test_ids_at_and_beyond_what_an_id_column_holds_are_simply_not_found(app, signed_in):
    """Id columns are 32-bit on PostgreSQL and 64-bit on SQLite: no engine is asked for more."""
    client, _key = signed_in
    for credential_id in (2 ** 31 - 1, 2 ** 31, 2 ** 63 - 1, 2 ** 63):
        response = client.client.post(f"/credentials/{credential_id}/revoke", data={"csrf_token": client.csrf_token()})
        assert response.status_code == 404, (credential_id, response.status_code)


def test_a_json_nul_names_the_nested_field_by_its_top_level_key(app, signed_in):
    client, key = signed_in
    response = client.client.post("/sms/messages/", json=NUL_JSON["nul_in_a_nested_json_value"], headers=key.headers)
    assert response.status_code == 400
    assert response.get_json() == {"tags": ["Must not contain NUL characters."]}


def test_a_nul_byte_in_a_web_form_is_refused_with_a_page_naming_the_field(app, signed_in):
    client, _key = signed_in
    response = client.post("/login", {"email": f"owner{NUL}@example.com", "password": "x"})
    assert response.status_code == 400
    page = " ".join(response.get_data(as_text=True).split())
    assert "email" in page and "cannot be processed" in page
    PageClient.check_page(response)


@pytest.mark.parametrize("page", ["99999999999999999999", "-1", "0", "two", "1.5", ""])
def test_a_statement_page_number_that_is_not_a_sensible_whole_number_is_refused(app, signed_in, page):
    client, _key = signed_in
    status = 200 if page == "" else 400
    assert client.client.get("/credit/statement", query_string={"page": page}).status_code == status
    assert client.client.get("/credit/purchases", query_string={"page": page}).status_code == status


@pytest.mark.parametrize("dates", [{"to": "9999-12-31"}, {"from": "0001-01-01"}, {"from": "1899-12-31"}])
def test_invoice_search_dates_out_of_range_get_a_form_error(app, signed_in, dates):
    client, _key = signed_in
    page = client.text("/billing/invoices", query_string=dates)
    assert "Enter a date between 2000-01-01 and 2099-12-31." in page
    assert client.client.get("/billing/invoices.csv", query_string=dates).status_code == 400


def test_a_lone_surrogate_or_a_bottomless_json_body_is_refused_not_a_500(app, signed_in):
    client, key = signed_in
    surrogate = client.client.post("/sms/messages/", data='{"recipient": "+819012345678", "message": "\\ud800"}',
                                   content_type="application/json", headers=key.headers)
    assert surrogate.status_code == 400 and surrogate.get_json() == {"message": ["Must be valid Unicode text."]}
    deep = client.client.post("/sms/messages/", data="[" * 100_000, content_type="application/json",
                              headers=key.headers)
    assert deep.status_code == 400 and "non_field_errors" in deep.get_json()


def test_a_nul_byte_in_a_header_or_in_the_basic_credentials_is_refused(app, signed_in):
    import base64

    client, key = signed_in
    response = client.client.post("/sms/messages/", data={"recipient": "+819012345678", "message": "hi"},
                                  headers=key.headers | {"Idempotency-Key": f"retry{NUL}1"})
    assert response.status_code == 400 and response.get_json() == {"Idempotency-Key": ["Must not contain NUL characters."]}
    smuggled = base64.b64encode(f"{key.sid}{NUL}:{key.token}".encode()).decode()
    response = client.client.get("/you/credits/", headers={"Authorization": f"Basic {smuggled}"})
    assert response.status_code == 400 and "Authorization" in response.get_json()
