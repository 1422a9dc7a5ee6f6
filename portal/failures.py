"""What every face does first with an error no view handled: roll the request's transaction
back and log the error without its values. Each face then answers in its own shape."""

import logging

from flask import request

from portal import db

RETRY_AFTER_SECONDS = 5


def triage(error: Exception, log: logging.Logger) -> bool:
    """True when the database cannot answer right now (a 503 with Retry-After), False for a bug (a 500)."""
    db.rollback_request_session()
    if db.unavailable(error):
        log.warning("database unavailable on %s %s: %s", request.method, request.path, db.describe(error, frames=False))
        return True
    if db.is_database_error(error):
        log.error("unhandled database error on %s %s: %s", request.method, request.path, db.describe(error))
    else:
        log.error("unhandled error on %s %s", request.method, request.path, exc_info=error)
    return False
