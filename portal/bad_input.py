"""Input no code below can store or parse is refused once, before any view runs: a NUL byte or
a lone surrogate anywhere in the query string, form, JSON body (keys and nested values too),
path parameters or headers. PostgreSQL cannot store NUL in text and the encoders choke on
surrogates, so letting them through turns a typo into a 500."""

import re

from flask import request
from werkzeug.exceptions import BadRequest

SURROGATE = re.compile("[\ud800-\udfff]")
API_MESSAGES = {
    "nul": "Must not contain NUL characters.",
    "unicode": "Must be valid Unicode text.",
    "page": "Use a whole page number from 1 to 999999999.",
    "nesting": "The JSON body is nested too deeply.",
}
UNCHECKED_BODIES = {"webhooks.stripe_webhook"}  # server to server, authenticated by its signature


class BadInput(BadRequest):
    """A field the portal refuses outright; both faces answer 400 naming `field`."""

    def __init__(self, field: str, problem: str):
        self.field = field.replace("\x00", "\\u0000")
        self.problem = problem
        super().__init__(f"{self.field}: {API_MESSAGES[problem]}")


def _problem(text: str) -> str | None:
    if "\x00" in text:
        return "nul"
    if SURROGATE.search(text):
        return "unicode"
    return None


def _first_in(value) -> str | None:
    """The problem of a JSON value, nested lists and objects included (keys too)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str) and (problem := _problem(item)):
            return problem
        if isinstance(item, dict):
            pending.extend(part for pair in item.items() for part in pair)
        elif isinstance(item, list):
            pending.extend(item)
    return None


def _check_pairs(pairs) -> None:
    for key, value in pairs:
        problem = _problem(key) or _first_in(value)
        if problem:
            raise BadInput(key, problem)


def refuse_unstorable_text() -> None:
    _check_pairs((request.view_args or {}).items())
    _check_pairs(request.args.items(multi=True))
    _check_pairs(request.headers.items())
    if request.authorization is not None:
        _check_pairs((("Authorization", value or "") for value in request.authorization.parameters.values()))
    if request.endpoint in UNCHECKED_BODIES or request.method in ("GET", "HEAD", "OPTIONS"):
        return
    if request.is_json:
        try:
            body = request.get_json(silent=True)
        except RecursionError:
            raise BadInput("non_field_errors", "nesting") from None
        _check_pairs(body.items() if isinstance(body, dict) else [("non_field_errors", body)])
    else:
        _check_pairs(request.form.items(multi=True))


def page_number() -> int:
    """`?page=` as a whole number from 1 (1 when absent); anything else is a 400."""
    raw = request.args.get("page", "").strip()
    if raw == "":
        return 1
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9 and int(raw) >= 1):
        raise BadInput("page", "page")
    return int(raw)
