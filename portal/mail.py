"""E-mail: rendered in the recipient's language, queued in the outbox, sent by the worker.

With PORTAL_SMTP_URL set the worker speaks SMTP; otherwise each mail is logged and kept in
the development mailbox (a page that exists only in development and test mode).
"""

import logging
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from typing import Protocol
from urllib.parse import unquote, urlparse

from flask import render_template
from flask_babel import force_locale
from sqlalchemy import Column, String, Text
from sqlmodel import Field, Session, SQLModel

from portal import db, outbox
from portal.db import utc_column
from portal.outbox import OutboxKind

log = logging.getLogger(__name__)

SUBJECT_PREFIX = "[Chotto] "  # every subject, in every language: the one place it is written


class DevMail(SQLModel, table=True):
    __tablename__ = "dev_mailbox"

    id: int | None = Field(default=None, primary_key=True)
    recipient: str = Field(sa_column=Column(String(254), nullable=False, index=True))
    subject: str = Field(sa_column=Column(String(300), nullable=False))
    text_body: str = Field(sa_column=Column(Text, nullable=False))
    html_body: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=utc_column())


def queue(session: Session, *, to: str, template: str, language: str, now: datetime, **context) -> None:
    """Render templates/mail/<template>.{txt,html} in `language` and add it to the outbox."""
    outbox.enqueue(session, kind=OutboxKind.EMAIL, payload={"to": to, **_render(template, language, context)}, now=now)


def defer(session: Session, *, to: str, compose: str, now: datetime, **data) -> None:
    """Queue a mail that the worker composes and renders when it delivers it (see
    portal.accounts.mails): the request writes one outbox row whatever it knows about `to`."""
    outbox.enqueue(session, kind=OutboxKind.EMAIL, payload={"to": to, "compose": compose, **data}, now=now)


class Composed(Protocol):
    template: str
    language: str
    context: dict


def rendered(session: Session, *, payload: dict, now: datetime,
             compose: Callable[..., Composed | None]) -> dict | None:
    """The mail to send for an outbox payload: as queued, or composed (by `compose`, which the
    worker passes in: portal.worker.compose) and rendered now; None when there is
    nothing to send. Composing is one unit of work, committed before rendering (a reset link
    exists before its mail leaves), so no transaction stays open while the mail server is
    talked to."""
    if "compose" not in payload:
        return payload
    with db.write(session):
        content = compose(session, payload=payload, now=now)
    if content is None:
        return None
    return {"to": payload["to"], **_render(content.template, content.language, content.context)}


def rendered_subject(template: str, context: dict) -> str:
    """A mail's subject in the current language, behind the one prefix all subjects share."""
    return SUBJECT_PREFIX + render_template(f"mail/{template}.subject.txt", **context).strip()


def render(template: str, language: str, context: dict) -> dict:
    """templates/mail/<template> in `language`: its subject (behind the prefix), text and HTML."""
    return _render(template, language, context)


def _render(template: str, language: str, context: dict) -> dict:
    with force_locale(language):
        subject = rendered_subject(template, context)
        text_body = render_template(f"mail/{template}.txt", **context)
        html_body = render_template(f"mail/{template}.html", subject=subject, **context)
    return {"subject": subject, "text": text_body, "html": html_body}


class Mailer(Protocol):
    def send(self, *, session: Session, payload: dict, now: datetime, deadline: float | None = None) -> None:
        """Send one mail; with `deadline`, give up (TimeoutError) once the whole exchange has
        taken that many seconds, however slowly the server answers."""


class DevMailbox:
    def send(self, *, session: Session, payload: dict, now: datetime, deadline: float | None = None) -> None:
        log.info("mail to=%s subject=%r (kept in the development mailbox)", payload["to"], payload["subject"])
        session.add(
            DevMail(
                recipient=payload["to"],
                subject=payload["subject"],
                text_body=payload["text"],
                html_body=payload["html"],
                created_at=now,
            )
        )


SMTP_TIMEOUT = 30  # seconds for the connection and each answer


class SMTPMailer:
    """smtp://user:pass@host:587 (STARTTLS) or smtps://user:pass@host:465; smtp+plain://host:port
    for a local relay (no TLS)."""

    def __init__(self, url: str, sender: str):
        self.url = urlparse(url)
        self.sender = sender

    def send(self, *, session: Session, payload: dict, now: datetime, deadline: float | None = None) -> None:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = payload["to"]
        message["Subject"] = payload["subject"]
        for name, value in payload.get("headers", {}).items():  # e.g. an alert's X-Chotto-Notice-Id
            message[name] = value
        message.set_content(payload["text"])
        message.add_alternative(payload["html"], subtype="html")
        # the watchdog cuts the exchange at the deadline; the socket's own timeout, a second
        # later, is only the backstop for a watchdog thread that a busy machine ran late
        timeout = SMTP_TIMEOUT if deadline is None else min(SMTP_TIMEOUT, deadline + 1)
        smtp = self._client(timeout)
        expired = threading.Event()
        watchdog = threading.Timer(deadline, _cut, args=(smtp, expired)) if deadline is not None else None
        started = time.monotonic()
        if watchdog is not None:
            watchdog.start()
        try:
            self._exchange(smtp, message, expired)
        except (OSError, smtplib.SMTPException):
            if deadline is not None and time.monotonic() - started >= deadline:
                expired.set()
            if not expired.is_set():
                raise
        finally:
            if watchdog is not None:
                watchdog.cancel()
            smtp.close()
        if expired.is_set():  # checked after success too: the cut may have come at the very end
            raise TimeoutError(f"the mail server took longer than {deadline} s")

    def _client(self, timeout: float) -> smtplib.SMTP:
        """Not connected yet: the watchdog can reach its socket as soon as it is opened."""
        if self.url.scheme == "smtps":
            return smtplib.SMTP_SSL(context=ssl.create_default_context(), timeout=timeout)
        return smtplib.SMTP(timeout=timeout)

    def _exchange(self, smtp: smtplib.SMTP, message: EmailMessage, expired: threading.Event) -> None:
        host = self.url.hostname
        smtp._host = host  # what TLS checks the certificate against; SMTP() without a host leaves it empty
        smtp.connect(host, self.url.port or (465 if self.url.scheme == "smtps" else 587))
        if expired.is_set():  # the deadline passed during a TLS handshake, before the socket could be cut
            raise TimeoutError("the mail server's connection outlasted the deadline")
        if self.url.scheme == "smtp":  # smtp+plain: a local relay or test server only, no TLS
            smtp.starttls(context=ssl.create_default_context())
        if self.url.username:
            smtp.login(unquote(self.url.username), unquote(self.url.password or ""))
        smtp.send_message(message)
        try:
            smtp.quit()
        except smtplib.SMTPServerDisconnected:  # the mail was accepted; a server hanging up first is fine
            pass


def _cut(smtp: smtplib.SMTP, expired: threading.Event) -> None:
    """The deadline passed: shut the socket, so the exchange's next read or write fails at once."""
    expired.set()
    sock = getattr(smtp, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def mailer_for(config: dict) -> Mailer:
    if config["SMTP_URL"]:
        return SMTPMailer(config["SMTP_URL"], config["MAIL_FROM"])
    return DevMailbox()
