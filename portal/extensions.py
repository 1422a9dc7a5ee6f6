"""Flask extensions shared by both faces, created unbound and init_app-ed by create_app."""

import re

from flask import Response, request, session
from flask_babel import Babel
from flask_htmx import HTMX
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager, current_user
from flask_wtf.csrf import CSRFProtect

LANGUAGES = ("ja", "en")

babel = Babel()
csrf = CSRFProtect()
htmx = HTMX()
limiter = Limiter(key_func=get_remote_address, default_limits=[], headers_enabled=True)
login_manager = LoginManager()


def select_locale() -> str:
    chosen = session.get("lang")
    if chosen in LANGUAGES:
        return chosen
    if current_user and current_user.is_authenticated:
        return current_user.language
    return request.accept_languages.best_match(LANGUAGES, default="en")


def select_timezone() -> str:
    return "Asia/Tokyo"


def whole_retry_after(response: Response) -> Response:
    """Every 429 says how long to wait in whole seconds, at least 1. flask-limiter's own
    after-request hook writes `int(reset - now)`, which is 0 in a window's last second; this
    hook must run after it, so it is registered before the limiter (Flask runs them in reverse)."""
    if response.status_code == 429:
        value = response.headers.get("Retry-After", "")
        response.headers["Retry-After"] = str(max(1, int(value))) if re.fullmatch(r"[0-9]+", value) else "1"
    return response
