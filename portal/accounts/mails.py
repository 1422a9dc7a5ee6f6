"""Mails the worker composes as it delivers them. The request that asks for one only queues
it, so a request about an address nobody has does exactly the work of one about a login."""

from datetime import datetime

from sqlmodel import Session

from portal.accounts import auth, signup
from portal.accounts.signup import DeferredMail, MailContent


def compose(session: Session, *, payload: dict, now: datetime) -> MailContent | None:
    """What to send for a deferred mail, or None (an unknown address, a superseded attempt);
    in the worker's unit of work (portal.mail.rendered)."""
    if payload["compose"] == DeferredMail.SIGNUP:
        return signup.signup_mail(session, email=payload["to"], token=payload["token"])
    if payload["compose"] == DeferredMail.RESET_PASSWORD:
        return auth.reset_mail(session, email=payload["to"], now=now)
    raise ValueError(f"unknown mail {payload['compose']!r}")
