"""Headers on every response, and the cross-site check on every unsafe browser request."""

from urllib.parse import urlsplit

from flask import abort, current_app, request

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def refuse_cross_site() -> None:
    """Fetch metadata first; browsers that send none are judged by Origin."""
    if request.method in SAFE_METHODS or request.endpoint == "webhooks.stripe_webhook":
        return  # the webhook is server to server, authenticated by its signature
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        if site == "cross-site":
            abort(403)
        return
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        allowed = {_origin(current_app.config["BASE_URL"]), _origin(request.host_url)}
        if origin.lower() not in allowed:
            abort(403)
    elif origin == "null":
        abort(403)


def allow_form_action(response, origin: str):
    """A page whose form leads (through our redirect) to another origin, such as Stripe's
    hosted checkout: browsers apply form-action to the redirect too."""
    response.headers["Content-Security-Policy"] = CSP.replace("form-action 'self'", f"form-action 'self' {origin}")
    return response


_BY_LOWER_NAME = [(name.lower(), name, value) for name, value in HEADERS.items()]


def add_headers(response):
    """Each header of HEADERS the response does not set itself, and HX-Request in Vary. The
    names present are read in one pass (a setdefault per header scanned them all each time:
    a twentieth of an API send's CPU time)."""
    headers = response.headers
    present = {name.lower() for name, _value in headers.items()}
    headers.extend([(name, value) for lowered, name, value in _BY_LOWER_NAME if lowered not in present])
    if "vary" in present:
        response.vary.add("HX-Request")
    else:
        headers.add("Vary", "HX-Request")
    if response.mimetype == "text/html" and "cache-control" not in present:
        headers.add("Cache-Control", "no-store")
    return response
