"""The customer API, wire-compatible with Xoxzo: HTTP Basic with a credential's SID and token
(never a cookie, never the query string), form or JSON bodies, paths with or without the
trailing slash, and Xoxzo's answer shapes: 401 {"detail"}, 400 keyed by field, 402, 403,
404, 422 for a reused Idempotency-Key, 429 with Retry-After."""

import hmac
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, fields as fields_of, replace
from datetime import datetime, timedelta
from functools import partial, wraps
from typing import TypeVar

from flask import Blueprint, Response, current_app, g, jsonify, request
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from portal import buckets, clock, db, failures, services
from portal.api import wire
from portal.credentials import service as credentials
from portal.credentials import tokens
from portal.ledger.rules import MILLI_YEN
from portal.messaging import express as express_sends
from portal.messaging import rules
from portal.messaging import service as messaging
from portal.messaging.errors import (InsufficientCredit, InvalidField, InvalidFields, KeyReused, ScopeMissing,
                                     SpendCap, SpendCapReached)
from portal.openapi import document
from portal.otp import service as otp
from portal.postpay import queries as postpay
from portal.otp.errors import RequestBlocked, ResendTooSoon, SiteNotAllowed, VerificationFailed
from portal.otp.models import BlockReason
from portal.bad_input import API_MESSAGES, BadInput
from portal.security import add_headers

log = logging.getLogger("portal.api")
bp = Blueprint("api", __name__)
JSON = "application/json"


def _json(body, status: int, **headers) -> Response:
    return _sent_as_is(wire.text(body), status, **headers)


def _sent_as_is(text: str, status: int, **headers) -> Response:
    response = Response(text, status=status, mimetype=JSON)
    response.headers.update(headers)
    return response


def _unauthorized(detail: str = "Invalid username/password.") -> Response:
    return _json({"detail": detail}, 401, **{"WWW-Authenticate": 'Basic realm="Chotto API"'})


def _shown(username: str) -> str:
    """A SID may be logged; anything else (a token pasted as the user name) may not."""
    return username if re.fullmatch(r"[0-9a-f]{32}", username) else "(not a SID)"


def authenticated(view, *, lock_account: bool = False):
    """Basic auth only: cookies are ignored here, and a token in the URL is refused outright.
    With `lock_account` the credential's account is locked for the request's unit of work by
    the same statement (a paid request locks it first thing anyway)."""

    @wraps(view)
    def guarded(*args, **kwargs):
        if any(tokens.PATTERN.search(value) for value in request.args.values()) or any(
                key.lower() in ("api_key", "token", "auth_token", "access_token") for key in request.args):
            log.warning("api: a credential was sent in the URL and refused (%s %s)", request.method, request.path)
            return _unauthorized("Credentials are accepted only in the Authorization header.")
        auth = request.authorization
        if auth is None or auth.type != "basic" or not auth.username or not auth.password:
            return _unauthorized("Authentication credentials were not provided.")
        db.skip_pool_ping()  # authenticate's statement retries on a dead connection instead
        now = clock.now()
        try:
            g.principal = credentials.authenticate(session=db.session(), sid=auth.username, token=auth.password,
                                                   ip=request.remote_addr or "", now=now, lock_account=lock_account)
        except credentials.Unauthenticated:
            _forget(auth.username)
            log.info("api: authentication failed for sid=%s", _shown(auth.username))
            return _unauthorized()
        except credentials.NotFromHere:
            _forget(auth.username)
            log.info("api: sid=%s refused from %s (IP allow-list)", _shown(auth.username), request.remote_addr)
            return _json({"detail": "This credential may not be used from this address."}, 403)
        _remember(g.principal, auth.password, now)
        return view(*args, **kwargs)

    return guarded


def fields() -> dict:
    """Form fields or a JSON object, whichever the client sent; a repeated form field is a list
    (tags=a&tags=b). The service checks each value's type along with the rest, so one answer
    names every wrong field."""
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise InvalidFields({"non_field_errors": ["The body must be a JSON object."]})
        return {key: value for key, value in body.items() if value is not None}
    return {key: values[0] if len(values) == 1 else values for key, values in request.form.lists()}


Asked = TypeVar("Asked", messaging.SendSms, messaging.StartCall, otp.RequestCode, otp.VerifyCode)


def asked(kind: type[Asked]) -> Asked:
    """The service's request built from the fields it knows (others are ignored, as Xoxzo does)."""
    given = fields()
    return kind(**{field.name: given[field.name] for field in fields_of(kind) if field.name in given})


THROTTLED = "Request was throttled. Try again later."


@bp.record_once
def _buckets(state) -> None:
    state.app.extensions["portal.buckets"] = buckets.for_url(state.app.config["REDIS_URL"])
    state.app.extensions["portal.api_callers"] = {}
    state.app.extensions["portal.prices_key"] = str(state.app.extensions["portal.engine"].url)  # service._price's key


# A request over its limits must not reach the database: it would queue on the account's lock
# behind the sends within their limits (a paid request's first statement authenticates and
# locks together). So each process remembers, for a few seconds, the callers it authenticated:
# SID and client address → the token's digest and the account. A request that matches one has
# its buckets checked before anything else and, when they are empty, is answered 429 without
# a statement. Everything else, the request within its limits included, is still authenticated
# by the database, so a revoked credential is refused on its very next request within its
# limits (and its entry dropped); over them, it is told to wait, as it was before revoking.
KNOWN_FOR = timedelta(seconds=10)
KNOWN_MAX = 10_000


@dataclass(frozen=True)
class _Known:
    sid: str
    account_id: int
    digest: str
    until: datetime
    express_after: datetime | None = None  # its last send was not the plain case: the general way until then


def _known(sid: str, token: str, now: datetime, address: str | None) -> _Known | None:
    known = current_app.extensions["portal.api_callers"].get((sid, address))
    if known is None or known.until <= now or not hmac.compare_digest(known.digest, tokens.digest(token)):
        return None
    return known


def _remember(principal: credentials.Principal, token: str, now: datetime) -> None:
    callers = current_app.extensions["portal.api_callers"]
    if len(callers) >= KNOWN_MAX:
        for key in [key for key, known in list(callers.items()) if known.until <= now]:
            callers.pop(key, None)
        if len(callers) >= KNOWN_MAX:
            callers.clear()
    digest = tokens.digest(token)
    previous = callers.get((principal.sid, request.remote_addr))
    express_after = previous.express_after if previous is not None and previous.digest == digest else None
    callers[(principal.sid, request.remote_addr)] = _Known(principal.sid, principal.account_id, digest,
                                                            now + KNOWN_FOR, express_after)


def _forget(sid: str) -> None:
    current_app.extensions["portal.api_callers"].pop((sid, request.remote_addr), None)


def _limited(view, counted: Callable[[credentials.Principal | _Known], list[buckets.Bucket]]):
    """`view` after one token from each bucket `counted` names for the caller (one in-process
    or Redis operation); 429 with Retry-After when any of them is empty. The buckets of a
    caller this process knows are taken before authentication (`ahead`), the others' after."""

    @wraps(view)
    def guarded(*args, **kwargs):
        if current_app.config["RATELIMIT_ENABLED"] and not g.get("buckets_taken"):
            wait = current_app.extensions["portal.buckets"].take(counted(g.principal))
            if wait:
                return _throttled(wait)
        return view(*args, **kwargs)

    return guarded


def _throttled(wait: float) -> Response:
    return _json({"detail": THROTTLED}, 429, **{"Retry-After": str(buckets.retry_after(wait))})


def ahead(view, counted: Callable[[credentials.Principal | _Known], list[buckets.Bucket]]):
    """Before `authenticated`: a caller this process authenticated a moment ago from the same
    address has its buckets taken here, and an empty one answers 429 without a statement."""

    @wraps(view)
    def guarded(*args, **kwargs):
        g.buckets_taken = False
        auth = request.authorization
        if current_app.config["RATELIMIT_ENABLED"] and auth is not None and auth.type == "basic" and auth.password:
            known = _known(auth.username or "", auth.password, clock.now(), request.remote_addr)
            if request.environ.get(LANE_TOOK_BUCKETS):  # the express lane took them (the entry may be gone since)
                g.buckets_taken, g.known = True, known
            elif known is not None:
                wait = current_app.extensions["portal.buckets"].take(counted(known))
                if wait:
                    return _throttled(wait)
                g.buckets_taken, g.known = True, known
        return view(*args, **kwargs)

    return guarded


def express(view, send: Callable[[dict, str, str, str | None, datetime], messaging.StoredAnswer | None]):
    """Before authentication, on PostgreSQL: `send(fields, sid, token, address, now)` tries the
    plain case of the send in one statement (portal.messaging.express), for a caller whose
    buckets `ahead` took (or with the limits off); it answers NotPlain when the case is not
    plain, having written nothing, and the request goes on its general way. The statement
    authenticates too, so a revoked credential is refused on its next request as before. The
    express lane (portal.api.lane) tries the same before Flask for form bodies; a request it
    tried is not tried again here."""

    @wraps(view)
    def guarded(*args, **kwargs):
        auth, known, now = request.authorization, g.get("known"), clock.now()
        if (auth is not None and auth.type == "basic" and auth.username and auth.password and not request.args
                and "Idempotency-Key" not in request.headers and not request.environ.get(LANE_TRIED)
                and (g.get("buckets_taken") or not current_app.config["RATELIMIT_ENABLED"])
                and _may_try(known, now) and _plain_credentials(auth.username, auth.password)):
            try:
                given = fields()
            except REFUSALS:
                given = None
            answered = (send(given, auth.username, auth.password, request.remote_addr, now) if given
                        else express_sends.NotPlain(by_database=False))
            _tried(known, answered, now, request.remote_addr)
            if isinstance(answered, messaging.StoredAnswer):
                return stored(answered)
        return view(*args, **kwargs)

    return guarded


def _plain_credentials(sid: str, token: str) -> bool:
    return db.engine().dialect.name == "postgresql" and len(sid) == 32 and tokens.well_formed(token)


def _may_try(known: _Known | None, now: datetime) -> bool:
    return known is None or known.express_after is None or known.express_after <= now


def _tried(known: _Known | None, answered: messaging.StoredAnswer | express_sends.NotPlain, now: datetime,
           address: str | None) -> None:
    """A known caller stays known a while longer; one the database found not plain takes the
    general way until KNOWN_FOR has passed (it pays the try once in that time). The entry is
    written back only if it is still the one read (another request may have replaced it)."""
    if known is None:
        return
    callers = current_app.extensions["portal.api_callers"]
    if callers.get((known.sid, address)) is not known:
        return
    if isinstance(answered, messaging.StoredAnswer):
        callers[(known.sid, address)] = replace(known, until=now + KNOWN_FOR)
    elif answered.by_database:
        callers[(known.sid, address)] = replace(known, express_after=now + KNOWN_FOR)


LANE_TRIED, LANE_TOOK_BUCKETS = "portal.express_tried", "portal.express_took_buckets"  # WSGI environ keys


def lane_sms(environ: dict, given: dict, sid: str, token: str) -> messaging.StoredAnswer | None:
    """The express lane's POST /sms/messages/ (portal.api.lane), in an app context, before any
    of Flask's request machinery: the same as `express` in front of `send_sms`, the rate limits
    included (a caller this process does not know yet is authenticated the general way first).
    None sends the request on to Flask, told in `environ` what was done already."""
    address, now = environ.get("REMOTE_ADDR"), clock.now()
    if not _plain_credentials(sid, token):
        return None
    known = None
    if current_app.config["RATELIMIT_ENABLED"]:
        known = _known(sid, token, now, address)
        if known is None or not _may_try(known, now):
            return None
        if current_app.extensions["portal.buckets"].take(send_buckets("send_sms", known)):
            return None  # an empty bucket gives no token: the general way answers 429
        environ[LANE_TOOK_BUCKETS] = True
    environ[LANE_TRIED] = True
    answered = _plain_sms(given, sid, token, address, now)
    _tried(known, answered, now, address)
    return answered if isinstance(answered, messaging.StoredAnswer) else None


def send_buckets(route_name: str, caller: credentials.Principal | _Known) -> list[buckets.Bucket]:
    """A sending route's buckets: per credential and route, and per account across every sending route."""
    config = current_app.config
    return (buckets.buckets(f"send:{route_name}:{caller.sid}", config["API_SEND_RATE_LIMIT"])
            + buckets.buckets(f"account:{caller.account_id}", config["API_ACCOUNT_RATE_LIMIT"]))


def sending(view=None, *, pays: bool = True, plain=None):
    """A request that sends: authenticated, rate limited per credential and route and per
    account across every sending route, and answered in the API's error shapes. One that
    `pays` has its account locked by the authentication's statement; one with a `plain` case
    tries it first (`express`)."""
    if view is None:
        return partial(sending, pays=pays, plain=plain)
    counted = partial(send_buckets, view.__name__)
    general = authenticated(_limited(view, counted), lock_account=pays)
    return ahead(express(general, plain) if plain is not None else general, counted)


REFUSALS = (InvalidFields, InvalidField, InsufficientCredit, ScopeMissing, SpendCapReached, KeyReused, RequestBlocked,
            ResendTooSoon, VerificationFailed, SiteNotAllowed)
ABOUT_THE_NUMBER = (BlockReason.COUNTRY, BlockReason.UNPROVEN)  # 400 on phone_number; a pause 403; limits 429
CAP_REACHED = {
    SpendCap.ACCOUNT_DAILY: "This account's daily spend limit of ¥{yen:,} would be exceeded. Ask support to raise it.",
    SpendCap.CREDENTIAL_MONTHLY: "This credential's monthly spend cap of ¥{yen:,} would be exceeded.",
}


def _short_of_credit() -> str:
    """Why the credit did not cover a send: a credit line's state says more (suspended, or
    used up to its limit) when the account has one."""
    principal = g.get("principal")
    explained = None
    if principal is not None:
        explained = postpay.explain_refusal(db.session(), account_id=principal.account_id, now=clock.now())
    return explained or "Insufficient credit. Buy credit in the portal to continue."


def refusal(error: Exception) -> Response:
    """The API's answer to a service's refusal: 400 keyed by field, 402, 403 or 422."""
    match error:
        case InvalidFields():
            return _json(error.errors, 400)
        case InvalidField():
            return _json({error.field: error.reasons}, 400)
        case InsufficientCredit():
            return _json({"detail": _short_of_credit()}, 402)
        case ScopeMissing():
            return _json({"detail": f"This credential does not have the {error.scope} scope."}, 403)
        case SpendCapReached():  # caps are set in whole yen
            return _json({"detail": CAP_REACHED[error.cap].format(yen=error.limit // MILLI_YEN)}, 403)
        case KeyReused():
            return _json({"detail": "This Idempotency-Key was already used for a different request."}, 422)
        case RequestBlocked() if error.reason in ABOUT_THE_NUMBER:
            return _json({"phone_number": [error.text], "reason": error.reason.value}, 400)
        case RequestBlocked() if error.reason == BlockReason.PAUSED:
            return _json({"detail": error.text, "reason": error.reason.value}, 403)
        case RequestBlocked():
            return _json({"detail": error.text, "reason": error.reason.value}, 429,
                         **{"Retry-After": str(error.retry_after_seconds or 1)})
        case ResendTooSoon():
            return _json({"detail": error.text, "reason": "resend_cooldown"}, 429,
                         **{"Retry-After": str(error.retry_after_seconds)})
        case SiteNotAllowed():
            return _json({"detail": error.text}, 403)
        case VerificationFailed():
            extra = {"attempts_left": error.attempts_left} if error.attempts_left is not None else {}
            return _json({"code": [error.text], "reason": error.reason.value, **extra}, 400)
    raise TypeError(f"not a refusal: {error!r}")


def answer(work: Callable[[], Response]) -> Response:
    """`work`'s response, or the answer to the refusal it raised."""
    try:
        return work()
    except REFUSALS as refused:
        return refusal(refused)


def stored(answer: messaging.StoredAnswer) -> Response:
    """A send's answer as rendered (by wire) or as stored under its Idempotency-Key: sent as it is."""
    return _sent_as_is(answer.body, answer.status)


def _daily_cap() -> int | None:
    yen = current_app.config["API_DAILY_SPEND_CAP_YEN"]
    return yen * MILLI_YEN if yen else None


def reader(view):
    """A GET route: authenticated, rate limited per credential across every GET route, and the
    credential needs the read scope."""

    @wraps(view)
    def guarded(*args, **kwargs):
        if "read" not in g.principal.scopes:
            return _json({"detail": "This credential does not have the read scope."}, 403)
        return view(*args, **kwargs)

    def counted(principal: credentials.Principal) -> list[buckets.Bucket]:
        return buckets.buckets(f"read:{principal.sid}", current_app.config["API_READ_RATE_LIMIT"])

    return authenticated(_limited(guarded, counted))


def route(rule: str, **options):
    """Register `rule` with and without its trailing slash (Xoxzo's clients use both)."""

    def decorate(view):
        bp.add_url_rule(rule, view_func=view, **options)
        other = rule.rstrip("/") if rule.endswith("/") else rule + "/"
        bp.add_url_rule(other, endpoint=f"{view.__name__}_alt", view_func=view, **options)
        return view

    return decorate


def _plain_sms(given: dict, sid: str, token: str, address: str | None,
               now: datetime) -> messaging.StoredAnswer | express_sends.NotPlain:
    """The plain case of POST /sms/messages/ (`express`, `lane_sms`), or NotPlain."""
    kind = messaging.SendSms
    asked_for = kind(**{field.name: given[field.name] for field in fields_of(kind) if field.name in given})
    try:
        with db.statement_connection() as connection:
            sent = express_sends.send_sms(connection=connection, prices=current_app.extensions["portal.prices_key"],
                                          sid=sid, digest=tokens.digest(token), request=asked_for,
                                          ip=address or "", now=now, daily_cap=_daily_cap())
    except express_sends.InDoubt as doubt:
        settled = _settled(doubt)
        if settled is None:
            raise
        if not settled:  # its server process is gone and it was not committed: a plain 503
            raise OperationalError(None, None, doubt.__cause__) from doubt
        log.warning("api: express send %s was committed though its connection was lost", doubt.msgid)
        sent = messaging.Sent(doubt.msgid)
    return wire.sms_sent(sent) if isinstance(sent, messaging.Sent) else sent


def _settled(doubt: express_sends.InDoubt) -> bool | None:
    """Whether an express send whose connection was lost was committed; None if that cannot be told now."""
    try:
        with db.statement_connection() as connection:
            return express_sends.settle(connection=connection, doubt=doubt)
    except Exception as error:  # noqa: BLE001 - the database may be down: the send stays in doubt
        log.warning("api: could not settle express send %s: %s", doubt.msgid, db.describe(error, frames=False))
        return None


IN_DOUBT = ("The connection to the database was lost while this message was being sent, so whether it was sent "
            "and charged is not known. Look it up with GET /sms/messages/{msgid} before sending it again.")


@route("/sms/messages/", methods=["POST"])
@sending(plain=_plain_sms)
def send_sms():
    now = clock.now()
    return answer(lambda: stored(messaging.send_sms(
        session=db.session(), principal=g.principal, request=asked(messaging.SendSms),
        idempotency_key=request.headers.get("Idempotency-Key"), now=now, render=wire.sms_sent,
        daily_cap=_daily_cap())))


@route("/sms/messages/", methods=["GET"])
@reader
def list_sms():
    def work():
        today = wire.in_japan(clock.now()).date()
        date_filters = rules.sent_dates(request.args.items(multi=True), today)
        rows = messaging.messages_of(db.session(), principal=g.principal, date_filters=date_filters, now=clock.now())
        base = current_app.config["BASE_URL"]
        return _json([wire.message_json(m, base) for m in rows], 200)

    return answer(work)


@route("/sms/messages/<msgid>", methods=["GET"])
@reader
def get_sms(msgid: str):
    found = messaging.message_of(db.session(), principal=g.principal, msgid=msgid)
    if found is None:
        return _json({"detail": "Not found."}, 404)
    return _json(wire.message_json(found, current_app.config["BASE_URL"]), 200)


@route("/voice/simple/playbacks/", methods=["POST"])
@sending
def start_call():
    now = clock.now()
    return answer(lambda: stored(messaging.start_call(
        session=db.session(), principal=g.principal, request=asked(messaging.StartCall),
        idempotency_key=request.headers.get("Idempotency-Key"), now=now, render=wire.call_started,
        daily_cap=_daily_cap())))


@route("/voice/calls/<callid>", methods=["GET"])
@reader
def get_call(callid: str):
    found = messaging.call_of(db.session(), principal=g.principal, callid=callid)
    if found is None:
        return _json({"detail": "Not found."}, 404)
    return _json(wire.call_json(found), 200)


@route("/you/credits/", methods=["GET"])
@reader
def credits_view():
    summary = messaging.credits_of(db.session(), principal=g.principal, now=clock.now())
    line = postpay.line_of(db.session(), account_id=g.principal.account_id)
    return _json(wire.credits_json(summary, line), 200)


def _code_key() -> bytes:
    """The key of the OTP codes' HMAC."""
    return current_app.config["SECRET_KEY"].encode()


@route("/otp/register-website/", methods=["POST"])
@sending(pays=False)
def register_website():
    now = clock.now()
    return answer(lambda: _json(wire.otp_registered(otp.register_site_by_api(
        session=db.session(), principal=g.principal, website=fields().get("website"), now=now),
        https=services.ownership_over_https()), 201))


@route("/otp/request/", methods=["POST"])
@sending
def request_otp():
    now = clock.now()
    return answer(lambda: stored(otp.request_code_by_api(
        session=db.session(), principal=g.principal, request=asked(otp.RequestCode), secret=_code_key(),
        caller=services.otp_caller(), now=now, idempotency_key=request.headers.get("Idempotency-Key"),
        render=wire.otp_requested, daily_cap=_daily_cap())))


@route("/otp/verify/", methods=["POST"])
@sending(pays=False)
def verify_otp():
    now = clock.now()
    return answer(lambda: _json(wire.otp_verified(otp.verify_code(
        session=db.session(), principal=g.principal, request=asked(otp.VerifyCode), secret=_code_key(), now=now)),
        200))


@bp.get("/api/openapi.json")
def openapi():
    return jsonify(document(current_app.config["BASE_URL"]))


# -- errors: JSON, never the HTML error page ------------------------------------------------------
# Flask asks these handlers first for every request routed to this blueprint, errors raised by
# the app's before_request hooks included; `_unrouted` answers API paths that match no route.

API_PREFIXES = ("/sms/", "/voice/", "/you/", "/otp/", "/api/")
API_ONLY_PREFIXES = ("/sms/", "/voice/", "/you/", "/otp/")  # no page lives under these (/api/docs is a page)


def is_api_request() -> bool:
    """Answered by the API: routed to its blueprint, or an unknown path under its prefixes (the
    reference page at /api/docs is a page)."""
    if request.url_rule is not None:
        return request.blueprint == bp.name
    return request.path.startswith(API_PREFIXES)


def is_api_only_path() -> bool:
    """Whether the path is one only the API answers, known before the request is routed."""
    return request.path.startswith(API_ONLY_PREFIXES)


def is_routed_here() -> bool:
    return request.blueprint == bp.name


def api_error(error: HTTPException) -> Response:
    if error.code == 429:  # Retry-After: see whole_retry_after
        return _json({"detail": THROTTLED}, 429)
    headers = {"Allow": ", ".join(error.valid_methods)} if getattr(error, "valid_methods", None) else {}
    return _json({"detail": error.description if error.code != 404 else "Not found."}, error.code or 500, **headers)


@bp.before_app_request
def _unrouted():
    """An API path that matches no route (404) or not with this method (405) is answered in JSON
    before any other hook runs (the API is registered before the pages)."""
    error = request.routing_exception
    if isinstance(error, HTTPException) and (error.code or 0) >= 400 and is_api_request():
        return add_headers(api_error(error))
    return None


@bp.errorhandler(BadInput)
def _refused_input(error: BadInput):
    return add_headers(_json({error.field: [API_MESSAGES[error.problem]]}, 400))


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException):
    if error.code is None or error.code < 400:
        return error
    return add_headers(api_error(error))


def answer_error(error: Exception) -> Response:
    """The API's answer to an error outside Flask's dispatch (the express lane)."""
    if isinstance(error, express_sends.InDoubt):
        return _in_doubt(error)
    return _unexpected(error)


@bp.errorhandler(express_sends.InDoubt)
def _in_doubt(error: express_sends.InDoubt):
    """503, but not "nothing was done": the send may have been committed. The msgid says which
    message to look up; a retry without looking may send it twice (no Idempotency-Key here)."""
    log.error("api: express send %s in doubt: connection lost during the statement", error.msgid)
    return add_headers(_json({"detail": IN_DOUBT.format(msgid=error.msgid), "msgid": error.msgid}, 503,
                             **{"Retry-After": str(failures.RETRY_AFTER_SECONDS)}))


@bp.errorhandler(Exception)
def _unexpected(error: Exception):
    if failures.triage(error, log):
        return add_headers(_json({"detail": "The service is briefly unavailable. Nothing was done and nothing was "
                                            "charged. Try again in a few seconds."}, 503,
                                 **{"Retry-After": str(failures.RETRY_AFTER_SECONDS)}))
    return add_headers(_json({"detail": "Internal error. Nothing was charged if no answer said otherwise."}, 500))
