"""What a person typed survives a form that could not be handled: an expired form (CSRF), a
session that ended (signed out, timed out) and a rate limit. The submitted fields, minus
passwords, tokens and codes, are kept in the signed session for the page they were sent to,
and fill that page's forms the next time it is shown (once, within an hour, for the same
person), also after signing in again (auth.sign_in carries them over).

The session travels in a cookie that browsers cap at 4 kB, so at most KEPT_BYTES of input is
kept; a longer submission keeps the fields that fit, in order."""

import json
import re
import time

from flask import current_app, g, request, session
from flask_login import current_user
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException

KEY = "kept_input"
KEPT_BYTES = 2048
KEPT_FOR_SECONDS = 3600
SECRET_NAME = re.compile(r"password|token|secret|csrf|^code$", re.IGNORECASE)


def keep() -> bool:
    """Keep this POST's fields for its page (when that page can be shown by a GET); whether
    anything was kept."""
    if request.method != "POST" or not _shown_by_get(request.path):
        return False
    fields, size = [], 2
    for name, value in request.form.items(multi=True):
        if SECRET_NAME.search(name) or not value.strip():
            continue
        entry = len(json.dumps([name, value])) + 1
        if size + entry <= KEPT_BYTES:
            fields.append([name, value])
            size += entry
    if not fields:
        return False
    session[KEY] = {"path": request.path, "fields": fields, "by": _typist(), "at": int(time.time())}
    return True


def formdata_for_this_page() -> MultiDict | None:
    """The kept input of this page, taken out of the session the first time a form asks for it
    in a request that shows the page (every form of that request gets it)."""
    if "kept_formdata" not in g:
        g.kept_formdata = _take()
    return g.kept_formdata


def held() -> dict | None:
    """What is kept, for auth.sign_in to put back into the session it starts."""
    return session.get(KEY)


def put_back(kept: dict | None) -> None:
    if kept is not None:
        session[KEY] = kept


def move_to(path: str) -> None:
    """For a page that only redirects to the page its form is on: the input kept for this
    address is kept for `path`."""
    kept = session.get(KEY)
    if isinstance(kept, dict) and kept.get("path") == request.path:
        session[KEY] = kept | {"path": path}


def _take() -> MultiDict | None:
    kept = session.get(KEY)
    if not isinstance(kept, dict) or request.method != "GET" or kept.get("path") != request.path:
        return None
    if kept.get("by") is not None and kept["by"] != _typist():
        return None  # typed by another person on this browser (or not yet signed in again)
    session.pop(KEY)
    if time.time() - kept.get("at", 0) > KEPT_FOR_SECONDS:
        return None
    return MultiDict([tuple(pair) for pair in kept.get("fields", [])])


def _typist() -> int | None:
    """The person typing: the signed-in user, or the one whose session has just ended."""
    if current_user and current_user.is_authenticated:
        return current_user.id
    remembered = session.get("_user_id")
    return int(remembered) if isinstance(remembered, str) and remembered.isdigit() else None


def _shown_by_get(path: str) -> bool:
    """A page a GET shows, and whose address carries no link token (an invitation or a reset
    link): the session cookie is signed, not encrypted, and holds no such token."""
    try:
        _, arguments = current_app.url_map.bind("localhost").match(path, method="GET")
    except HTTPException:
        return False
    return "token" not in arguments
