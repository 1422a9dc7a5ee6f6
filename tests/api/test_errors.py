"""The API answers its own errors in JSON (its blueprint's handlers, and a hook for API paths
that match no route); the pages answer theirs in HTML, /api/docs included."""

from tests.helpers import PageClient


def test_an_unknown_api_path_is_a_json_404_and_a_wrong_method_a_json_405_naming_the_allowed_ones(app, api, key):
    missing = api.get("/sms/no-such-thing/", headers=key.headers)
    assert missing.status_code == 404 and missing.json == {"detail": "Not found."}
    wrong = api.delete("/you/credits/", headers=key.headers)
    assert wrong.status_code == 405 and wrong.mimetype == "application/json" and "detail" in wrong.json
    assert set(wrong.headers["Allow"].split(", ")) >= {"GET"}
    assert "nosniff" == wrong.headers["X-Content-Type-Options"]


def test_a_refusal_by_an_app_wide_hook_on_an_api_route_is_json(app, api, key):
    response = api.get("/you/credits/?q=%00", headers=key.headers)
    assert response.status_code == 400 and response.json == {"q": ["Must not contain NUL characters."]}


def test_the_api_reference_page_answers_its_errors_as_a_page(app):
    response = app.test_client().get("/api/docs?q=%00")
    assert response.status_code == 400 and response.mimetype == "text/html"
    PageClient.check_page(response)
