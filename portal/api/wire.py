"""Xoxzo's wire format, written once: the JSON of a message, a call and the credits, the
answers to a send, and times as Xoxzo writes them (Japan time). The API's answers and the
status callbacks the worker posts are both rendered here. Amounts are yen as JSON numbers
(Xoxzo answers `{"credits": 1000.0}`), converted from the stored milli-yen only here."""

import json
from dataclasses import dataclass
from datetime import datetime

from portal.clock import JST
from portal.ledger.queries import Summary
from portal.ledger.rules import MILLI_YEN
from portal.messaging.api_models import Call, CallStatus, Message, MessageStatus
from portal.messaging.service import CallStarted, Sent, StoredAnswer
from portal.otp.models import OtpSite
from portal.otp.ownership import token_url
from portal.otp.service import Issued, Verified
from portal.postpay.rules import LineFigures

XOXZO_TIME = "%Y-%m-%d %H:%M:%S"  # Japan time, as Xoxzo writes `sent_time`


def in_japan(moment: datetime) -> datetime:
    return moment.astimezone(JST)


def xoxzo_time(moment: datetime | None) -> str | None:
    return in_japan(moment).strftime(XOXZO_TIME) if moment else None


def yen(milli: int) -> float:
    return milli / MILLI_YEN


def text(body) -> str:
    """An answer's JSON text: UTF-8 as it is (a Japanese tag is sent as itself, not escaped)."""
    return json.dumps(body, ensure_ascii=False)


def sms_sent(sent: Sent) -> StoredAnswer:
    return StoredAnswer(201, text([{"msgid": sent.msgid}]))


def call_started(started: CallStarted) -> StoredAnswer:
    return StoredAnswer(201, text([{"callid": started.callid}]))


def otp_registered(site: OtpSite, *, https: bool) -> dict:
    """Xoxzo's answer, and Chotto's extras: the domain and how to prove owning it."""
    return {"message": "Website registered successfully.", "website": site.domain,
            "verification_url": token_url(site.domain, https=https), "verification_token": site.ownership_token}


def otp_requested(issued: Issued) -> StoredAnswer:
    """Xoxzo's `msgid`, also as `otp_id` (Xoxzo's documents use both names)."""
    return StoredAnswer(201, text({"msgid": issued.msgid, "otp_id": issued.msgid,
                                   "expires_at": in_japan(issued.expires_at).isoformat()}))


def otp_verified(verified: Verified) -> dict:
    return {"message": "Verified.", "verified": True, "otp_id": verified.msgid, "phone_number": verified.phone_number}


# Xoxzo's statuses are the wire's: a send Chotto is still confirming with the carrier (UNKNOWN,
# see portal.messaging.delivery) is in flight as far as a client knows, and its final status
# (and callback) follows the carrier's answer.
MESSAGE_IN_FLIGHT = {MessageStatus.UNKNOWN: MessageStatus.DELIVERING}
CALL_IN_FLIGHT = {CallStatus.UNKNOWN: CallStatus.IN_PROGRESS}


def message_json(message: Message, base_url: str) -> dict:
    return {
        "msgid": message.msgid, "status": MESSAGE_IN_FLIGHT.get(message.status, message.status), "sent_time": xoxzo_time(message.created_at),
        "cost": yen(message.cost), "sender": message.sender, "recipient": message.recipient,
        "url": f"{base_url}/sms/messages/{message.msgid}/", "tags": _tags(message.tags),
        "segments": message.segments, "encoding": message.encoding, "test": message.mode == "test",
        "status_time": xoxzo_time(message.updated_at),
    }


def call_json(call: Call) -> dict:
    """A call costs nothing until it has ended (its hold is not its cost)."""
    return {"callid": call.callid, "status": CALL_IN_FLIGHT.get(call.status, call.status), "duration": call.duration,
            "cost": yen(call.cost) if call.ended_at else 0.0,
            "caller": call.caller, "recipient": call.recipient, "start_time": xoxzo_time(call.started_at),
            "end_time": xoxzo_time(call.ended_at), "tags": _tags(call.tags), "test": call.mode == "test"}


def credits_json(summary: Summary, line: LineFigures | None = None) -> dict:
    """Xoxzo's `credits`: what sends can spend now. Chotto's extras: what calls hold and each
    live prepaid lot with its expiry (ISO 8601, Japan time); with a credit line, the prepaid
    part and the line (limit tax excluded; used = unbilled usage + unpaid invoices + calls in
    progress; available now), and `credits` is prepaid credit plus the line's availability."""
    answer = {"credits": yen(summary.available), "held": yen(summary.held),
              "lots": [{"kind": lot.kind, "remaining": yen(lot.remaining),
                        "expires_at": in_japan(lot.expires_at).isoformat()} for lot in summary.live_lots]}
    if line is not None:  # an account without a line gets the same bytes as before lines existed
        answer["prepaid_credits"] = yen(summary.prepaid)
        answer["credit_line"] = {"limit": yen(line.limit), "used": yen(max(line.used, 0)),
                                 "available": yen(line.available), "suspended": line.suspended}
    return answer


def _tags(stored: str) -> list[str]:
    return [tag for tag in stored.split(",") if tag]


@dataclass(frozen=True)
class StatusCallbacks:
    """The bodies of status callbacks: the message's or the call's JSON as the API answers it,
    with anything outside ASCII escaped (as the callbacks have always been sent)."""

    base_url: str

    def message(self, message: Message) -> str:
        return json.dumps(message_json(message, self.base_url))

    def call(self, call: Call) -> str:
        return json.dumps(call_json(call))
