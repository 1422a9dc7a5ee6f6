"""The express lane: POST /sms/messages/ with a form body, in the plain case, answered by a
plain WSGI function in front of Flask (in an app context, without a request context, routing,
hooks or a Response object: most of a plain send's CPU time was Flask's). It sends through
`api.lane_sms`, the same code the route's `express` guard runs.

Anything the lane is not sure of goes on to Flask untouched (its body put back), which answers
exactly as before: another method or path, a query string, a cookie or the headers of a
browser (Origin, Sec-Fetch-Site), an Idempotency-Key, a body that is not a small form in UTF-8,
input the portal refuses (NUL, lone surrogates: bad_input), credentials that are not Basic, a
caller this process has not authenticated yet, and every case the send itself finds not plain.
An error from the database is answered by the API's own error handler."""

import base64
import binascii
import io
from http import HTTPStatus
from urllib.parse import parse_qsl

from flask import Flask

from portal import api
from portal.bad_input import _problem
from portal.security import HEADERS

PATHS = frozenset({"/sms/messages/", "/sms/messages"})
FORM = "application/x-www-form-urlencoded"
MAX_BODY = 16 * 1024
NOT_OURS = ("HTTP_COOKIE", "HTTP_ORIGIN", "HTTP_SEC_FETCH_SITE", "HTTP_IDEMPOTENCY_KEY")
_HEADERS = [*HEADERS.items(), ("Vary", "HX-Request")]  # what security.add_headers adds to an API answer


class ExpressLane:
    """WSGI middleware: `app.wsgi_app = ExpressLane(app, app.wsgi_app)` (inside ProxyFix, so
    REMOTE_ADDR is already the client's)."""

    def __init__(self, app: Flask, inner):
        self.app, self.inner = app, inner

    def __call__(self, environ, start_response):
        if (environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") not in PATHS
                or environ.get("QUERY_STRING") or any(name in environ for name in NOT_OURS)):
            return self.inner(environ, start_response)
        read = _read(environ)
        if read is None:
            return self.inner(environ, start_response)
        given, sid, token = read
        with self.app.app_context():
            try:
                answered = api.lane_sms(environ, given, sid, token)
            except Exception as error:  # noqa: BLE001 - answered as the API answers any error
                return self._error(error, environ, start_response)
        if answered is None:
            return self.inner(environ, start_response)
        body = answered.body.encode()
        status = HTTPStatus(answered.status)
        start_response(f"{status.value} {status.phrase.upper()}",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *_HEADERS])
        return [body]

    def _error(self, error: Exception, environ, start_response):
        with self.app.request_context(environ):
            return api.answer_error(error)(environ, start_response)


def _read(environ) -> tuple[dict, str, str] | None:
    """The form's fields (a repeated one as a list, as `api.fields` reads them) and the Basic
    credentials; None when the lane leaves the request to Flask. The body is put back either way."""
    if (environ.get("CONTENT_TYPE") or "").split(";")[0].strip().lower() != FORM:
        return None
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    if not 0 < length <= MAX_BODY:
        return None
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    if len(body) != length:
        return None
    credentials = _basic(environ.get("HTTP_AUTHORIZATION") or "")
    if credentials is None:
        return None
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeError, ValueError):
        return None
    headers = [value for name, value in environ.items()  # as request.headers has them, CONTENT_* included
               if (name.startswith("HTTP_") or name in ("CONTENT_TYPE", "CONTENT_LENGTH")) and isinstance(value, str)]
    if any(_problem(text) for pair in pairs for text in pair) or any(_problem(text) for text in headers + list(credentials)):
        return None
    given: dict = {}
    for key, value in pairs:
        if key in given:
            given[key] = [*given[key], value] if isinstance(given[key], list) else [given[key], value]
        else:
            given[key] = value
    return given, *credentials


def _basic(header: str) -> tuple[str, str] | None:
    """As werkzeug reads Basic credentials: strict base64 of "sid:token" in UTF-8."""
    scheme, _, rest = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        sid, _, token = base64.b64decode(rest.strip(" \t"), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeError):
        return None
    return (sid, token) if sid and token else None
