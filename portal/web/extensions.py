"""Flask extensions, created unbound and init_app-ed by portal.web.init_app."""

from flask import request, session
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
