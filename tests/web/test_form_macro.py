"""The form macro writes only attributes that apply: never the text "None" (WTForms writes a None
value out as "None", and Chromium then reads aria-invalid="None" as invalid and autofocus="None"
as focused), `aria-invalid` and the error only on fields with an error, `required` only on
required fields, one autofocus (the first field with an error, else the one the page asks for),
and every aria-describedby pointing at an element that exists."""

import re

import pytest
from bs4 import BeautifulSoup
from flask import render_template_string
from flask_wtf import FlaskForm
from werkzeug.datastructures import MultiDict
from wtforms import BooleanField, RadioField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, Optional

from tests.helpers import PASSWORD, make_user

MACRO = """{% from "macros/forms.html" import field %}
<form>{% for name in names %}{{ field(form[name], autofocus=name == focus, hint='A hint' if name == 'hinted' else None) }}{% endfor %}</form>"""


class SampleForm(FlaskForm):
    class Meta:
        csrf = False

    required = StringField("Required", validators=[InputRequired(), Length(max=20)])
    optional = StringField("Optional", validators=[Optional(), Length(max=5)])
    hinted = StringField("Hinted")
    second_required = StringField("Second required", validators=[InputRequired()])
    kind = RadioField("Kind", choices=[SelectChoice("a", "A"), SelectChoice("b", "B")], validators=[InputRequired()])
    agree = BooleanField("Agree")


def _render(app, data=None, focus=None):
    with app.test_request_context("/", method="POST" if data is not None else "GET"):
        form = SampleForm(formdata=MultiDict(data) if data is not None else None)
        if data is not None:
            form.validate()
        html = render_template_string(MACRO, form=form, names=[f.name for f in form], focus=focus)
    return BeautifulSoup(html, "html.parser")


def _assert_well_formed(soup, html):
    assert '"None"' not in html and "=None" not in html, re.findall(r'[\w-]+="?None"?', html)
    ids = {element["id"] for element in soup.find_all(id=True)}
    # Ids a label or an aria attribute can point at are unique (hidden CSRF inputs repeat theirs, unread)
    seen = [element["id"] for element in soup.find_all(id=True) if element.get("type") != "hidden"]
    assert len(seen) == len(set(seen)), (sorted({i for i in seen if seen.count(i) > 1}))
    for element in soup.find_all(attrs={"aria-describedby": True}):
        for target in element["aria-describedby"].split():
            assert target in ids, f"aria-describedby={target!r} points at nothing: {element}"
    assert len(soup.find_all(autofocus=True)) <= 1, soup.find_all(autofocus=True)


def test_an_untouched_form_says_nothing_is_invalid_and_only_required_fields_are_required(app):
    soup = _render(app, focus="required")
    _assert_well_formed(soup, str(soup))
    assert soup.find_all(attrs={"aria-invalid": True}) == []
    assert soup.find(id="required").has_attr("required")
    assert soup.find(id="second_required").has_attr("required")
    assert not soup.find(id="optional").has_attr("required")
    assert not soup.find(id="hinted").has_attr("required")
    assert not soup.find(id="agree").has_attr("required")
    assert [e["id"] for e in soup.find_all(autofocus=True)] == ["required"]
    assert soup.find(id="hinted")["aria-describedby"] == "hinted-hint"
    assert not soup.find(id="optional").has_attr("aria-describedby")
    assert not soup.find(id="agree").has_attr("aria-describedby")
    assert soup.find_all(class_="field-error") == []


def test_without_a_requested_field_nothing_is_focused(app):
    soup = _render(app)
    assert soup.find_all(autofocus=True) == []


def test_errors_mark_only_their_fields_and_focus_the_first_of_them(app):
    soup = _render(app, {"required": "", "optional": "toolong", "hinted": "fine", "second_required": "x"},
                   focus="hinted")
    html = str(soup)
    _assert_well_formed(soup, html)
    invalid = [e.get("id") for e in soup.find_all(attrs={"aria-invalid": "true"})]
    assert invalid == ["required", "optional", "kind-0", "kind-1"]
    assert [e["id"] for e in soup.find_all(autofocus=True)] == ["required"], "the first field with an error, not the one asked for"
    assert soup.find(id="required")["aria-describedby"] == "required-error"
    assert soup.find(id="required-error").get_text(strip=True)
    assert soup.find(id="kind-0")["aria-describedby"] == "kind-error"
    assert not soup.find(id="hinted").has_attr("aria-invalid")
    assert soup.find(id="hinted")["aria-describedby"] == "hinted-hint"
    assert not soup.find(id="second_required").has_attr("aria-invalid")


def test_an_error_on_a_later_field_moves_the_focus_there(app):
    soup = _render(app, {"required": "here", "second_required": "", "kind": "a"}, focus="required")
    _assert_well_formed(soup, str(soup))
    assert [e["id"] for e in soup.find_all(autofocus=True)] == ["second_required"]
    assert [e["id"] for e in soup.find_all(attrs={"aria-invalid": "true"})] == ["second_required"]


PUBLIC = ["/", "/pricing", "/legal/commercial-transactions", "/login", "/signup", "/password/forgot", "/api/docs"]
SIGNED_IN = ["/dashboard", "/credit/statement", "/credentials", "/team", "/test-inbox", "/credit/buy",
             "/credit/purchases", "/billing/invoices", "/billing/profile", "/profile/", "/verify-phone/",
             "/reauthenticate"]


def _check_page(html, path):
    soup = BeautifulSoup(html, "html.parser")
    assert '="None"' not in html, (path, re.findall(r'<[^>]*="None"[^>]*>', html))
    assert len(soup.find_all(autofocus=True)) <= 1, (path, soup.find_all(autofocus=True))
    ids = {element["id"] for element in soup.find_all(id=True)}
    # Ids a label or an aria attribute can point at are unique (hidden CSRF inputs repeat theirs, unread)
    seen = [element["id"] for element in soup.find_all(id=True) if element.get("type") != "hidden"]
    assert len(seen) == len(set(seen)), (path, sorted({i for i in seen if seen.count(i) > 1}))
    for element in soup.find_all(attrs={"aria-describedby": True}):
        for target in element["aria-describedby"].split():
            assert target in ids, (path, target)
    for element in soup.find_all(attrs={"aria-invalid": True}):
        assert element["aria-invalid"] == "true" and element.get("aria-describedby"), (path, element)
    return soup


@pytest.mark.parametrize("language", ["en", "ja"])
def test_no_page_carries_a_none_attribute(client, app, language):
    for path in PUBLIC:
        _check_page(client.get(path, headers={"Accept-Language": language}).get_data(as_text=True), path)
    make_user(app, language=language)  # no mobile number yet: the phone page is there to be seen
    client.login("owner@example.com")
    for path in SIGNED_IN:
        _check_page(client.get(path).get_data(as_text=True), path)


def test_pages_with_errors_focus_their_first_wrong_field_only(client, app):
    response = client.post("/signup", {"name": "", "email": "not-an-address", "password": "short",
                                       "account_kind": "individual", "tax_residency": "JP", "language": "en"})
    soup = _check_page(response.get_data(as_text=True), "/signup")
    assert [e["name"] for e in soup.find_all(autofocus=True)] == ["name"]
    assert {e["name"] for e in soup.find_all(attrs={"aria-invalid": "true"})} == {"name", "email"}

    response = client.post("/signup", {"name": "Hana", "email": "not-an-address", "password": PASSWORD,
                                       "account_kind": "individual", "tax_residency": "JP", "language": "en"})
    soup = _check_page(response.get_data(as_text=True), "/signup")
    assert [e["name"] for e in soup.find_all(autofocus=True)] == ["email"], "not the name the page asks for"

    make_user(app)
    client.login("owner@example.com")
    response = client.post("/profile/password", {"current_password": "", "new_password": ""})
    _check_page(response.get_data(as_text=True), "/profile/password")


def test_a_form_repeated_on_every_row_keeps_its_ids_unique(client, app):
    """The credentials page has a rotate form per credential: each row's field has its own id."""
    make_user(app)
    client.login("owner@example.com")
    for name in ("first", "second"):
        client.post("/credentials", {"name": name, "mode": "test", "scopes": ["sms"]}, status=200)
    soup = _check_page(client.get("/credentials").get_data(as_text=True), "/credentials")
    overlap = soup.find_all(attrs={"name": "overlap"})
    assert len(overlap) == 2 and len({e["id"] for e in overlap}) == 2
    for element in overlap:
        assert soup.find("label", attrs={"for": element["id"]}) is not None
