"""A stand-in for Stripe's API behind stripe-python's injectable HTTP client.

Responses are built from recorded Stripe objects (tests/fixtures/stripe/*.json) with the
ids, amounts and states of a small world that tests move forward: a card payment, a konbini
voucher paid or lapsed, refunds, disputes. Every request is recorded, so tests can assert
exactly what the adapter sent (parameters and headers such as Idempotency-Key). Events are
built from the same world and signed like Stripe signs them."""

import copy
import json
import secrets
import threading
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from stripe import HTTPClient

from portal.webhooks import sign

FIXTURES = Path(__file__).parent / "fixtures" / "stripe"
WEBHOOK_SECRET = "whsec_test_primary_secret_for_the_suite"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def _ts(moment: datetime) -> int:
    return int(moment.timestamp())


class FakeStripe(HTTPClient):
    name = "fake-stripe"

    def __init__(self):
        super().__init__()
        self.requests: list[dict] = []
        self.sessions: dict[str, dict] = {}
        self.intents: dict[str, dict] = {}
        self.charges: dict[str, dict] = {}
        self.refunds: list[dict] = []
        self.disputes: list[dict] = []
        self._by_key: dict[str, tuple] = {}
        self._lock = threading.Lock()
        self.fail_next = 0

    # -- the HTTP side ---------------------------------------------------------------------

    def request(self, method, url, headers, post_data=None, *, _usage=None):
        with self._lock:
            parts = urlsplit(url)
            query = dict(parse_qsl(parts.query))
            form = dict(parse_qsl(post_data.decode() if isinstance(post_data, bytes) else (post_data or "")))
            self.requests.append({"method": method.upper(), "path": parts.path, "query": query, "form": form,
                                  "headers": dict(headers or {})})
            if self.fail_next:
                self.fail_next -= 1
                return json.dumps({"error": {"type": "api_error", "message": "upstream"}}), 500, {}
            key = (headers or {}).get("Idempotency-Key")
            if method.lower() == "post" and key in self._by_key:
                return self._by_key[key]
            answer = self._route(method.lower(), parts.path, query, form)
            if method.lower() == "post" and key:
                self._by_key[key] = answer
            return answer

    def close(self):
        pass

    def _route(self, method, path, query, form):
        segments = path.strip("/").split("/")
        if method == "post" and path == "/v1/checkout/sessions":
            return self._ok(self._create_session(form))
        if method == "post" and segments[:3] == ["v1", "checkout", "sessions"] and segments[4:] == ["expire"]:
            found = self.sessions.get(segments[3])
            if found is None:
                return self._missing("checkout.session", segments[3])
            if found["status"] != "open":  # Stripe's answer for a session that is not open
                body = {"error": {"type": "invalid_request_error",
                                  "message": "Only Checkout Sessions with a status in [\"open\"] can be expired. "
                                             f"This Checkout Session has a status of \"{found['status']}\"."}}
                return json.dumps(body), 400, {}
            found["status"] = "expired"
            return self._ok(self._expanded(found, []))
        if method == "get" and segments[:3] == ["v1", "checkout", "sessions"] and len(segments) == 4:
            found = self.sessions.get(segments[3])
            if found is None:
                return self._missing("checkout.session", segments[3])
            return self._ok(self._expanded(found, [v for k, v in query.items() if k.startswith("expand")]))
        if method == "get" and segments[:2] == ["v1", "payment_intents"] and len(segments) == 3:
            found = self.intents.get(segments[2])
            return self._ok(found) if found else self._missing("payment_intent", segments[2])
        if method == "get" and path == "/v1/refunds":
            data = [r for r in self.refunds if r["payment_intent"] == query.get("payment_intent")]
            return self._ok({"object": "list", "data": data, "has_more": False, "url": "/v1/refunds"})
        if method == "get" and path == "/v1/disputes":
            data = [d for d in self.disputes if d["payment_intent"] == query.get("payment_intent")]
            return self._ok({"object": "list", "data": data, "has_more": False, "url": "/v1/disputes"})
        return self._missing("route", path)

    @staticmethod
    def _ok(body: dict):
        return json.dumps(body), 200, {"Request-Id": f"req_{secrets.token_hex(7)}"}

    @staticmethod
    def _missing(kind, ident):
        body = {"error": {"type": "invalid_request_error", "code": "resource_missing",
                          "message": f"No such {kind}: '{ident}'"}}
        return json.dumps(body), 404, {}

    def _create_session(self, form: dict) -> dict:
        session = fixture("checkout_session")
        session_id = f"cs_test_{secrets.token_hex(16)}"
        amounts = [int(v) for k, v in form.items() if k.endswith("[price_data][unit_amount]")]
        session.update({
            "id": session_id, "url": f"https://checkout.stripe.com/c/pay/{session_id}",
            "amount_subtotal": sum(amounts), "amount_total": sum(amounts),
            "client_reference_id": form.get("client_reference_id"),
            "metadata": {k[len("metadata["):-1]: v for k, v in form.items() if k.startswith("metadata[")},
            "customer_email": form.get("customer_email"), "locale": form.get("locale"),
            "success_url": form.get("success_url"), "cancel_url": form.get("cancel_url"),
            "payment_method_types": [v for k, v in sorted(form.items()) if k.startswith("payment_method_types[")],
        })
        self.sessions[session_id] = session
        return session

    def _expanded(self, session: dict, expand: list[str]) -> dict:
        body = copy.deepcopy(session)
        intent_id = body.get("payment_intent")
        if intent_id and "payment_intent" in expand:
            intent = copy.deepcopy(self.intents[intent_id])
            if intent.get("latest_charge") and "payment_intent.latest_charge" in expand:
                intent["latest_charge"] = copy.deepcopy(self.charges[intent["latest_charge"]])
            body["payment_intent"] = intent
        return body

    # -- moving the world forward ------------------------------------------------------------

    def last_session(self) -> dict:
        return list(self.sessions.values())[-1]

    def _intent_for(self, session: dict, at: datetime) -> dict:
        if session.get("payment_intent"):
            return self.intents[session["payment_intent"]]
        intent = fixture("payment_intent")
        intent.update({"id": f"pi_test_{secrets.token_hex(12)}", "amount": session["amount_total"],
                       "created": _ts(at), "metadata": dict(session["metadata"]),
                       "payment_method_types": list(session["payment_method_types"])})
        self.intents[intent["id"]] = intent
        session["payment_intent"] = intent["id"]
        return intent

    def _charge(self, intent: dict, at: datetime, method: str) -> dict:
        charge = fixture("charge")
        details = {"type": method, method: {} if method == "konbini" else charge["payment_method_details"]["card"]}
        charge.update({"id": f"ch_test_{secrets.token_hex(12)}", "amount": intent["amount"],
                       "amount_captured": intent["amount"], "created": _ts(at), "payment_intent": intent["id"],
                       "metadata": dict(intent["metadata"]), "payment_method_details": details})
        self.charges[charge["id"]] = charge
        intent.update({"status": "succeeded", "latest_charge": charge["id"], "amount_received": intent["amount"],
                       "next_action": None})
        return charge

    def pay_by_card(self, session_id: str, at: datetime) -> None:
        session = self.sessions[session_id]
        intent = self._intent_for(session, at)
        self._charge(intent, at, "card")
        session.update({"status": "complete", "payment_status": "paid"})

    def konbini_voucher(self, session_id: str, at: datetime, expires: datetime) -> None:
        session = self.sessions[session_id]
        intent = self._intent_for(session, at)
        intent.update({"status": "requires_action", "payment_method_types": ["konbini"], "next_action": {
            "type": "konbini_display_details",
            "konbini_display_details": {"expires_at": _ts(expires), "hosted_voucher_url": "https://payments.stripe.com/konbini/voucher/test"},
        }})
        session.update({"status": "complete", "payment_status": "unpaid"})

    def konbini_paid(self, session_id: str, at: datetime) -> None:
        session = self.sessions[session_id]
        self._charge(self.intents[session["payment_intent"]], at, "konbini")
        session["payment_status"] = "paid"

    def konbini_lapsed(self, session_id: str) -> None:
        session = self.sessions[session_id]
        self.intents[session["payment_intent"]].update({"status": "requires_payment_method", "next_action": None})

    def expire(self, session_id: str) -> None:
        self.sessions[session_id]["status"] = "expired"

    def refund(self, session_id: str, amount: int, at: datetime, status: str = "succeeded") -> dict:
        intent = self.intents[self.sessions[session_id]["payment_intent"]]
        charge = self.charges[intent["latest_charge"]]
        refund = fixture("refund")
        refund.update({"id": f"re_test_{secrets.token_hex(12)}", "amount": amount, "created": _ts(at),
                       "charge": charge["id"], "payment_intent": intent["id"], "status": status})
        self.refunds.append(refund)
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        return refund

    def dispute(self, session_id: str, status: str, at: datetime) -> dict:
        intent = self.intents[self.sessions[session_id]["payment_intent"]]
        existing = [d for d in self.disputes if d["payment_intent"] == intent["id"]]
        if existing:
            existing[0]["status"] = status
            return existing[0]
        dispute = fixture("dispute")
        dispute.update({"id": f"dp_test_{secrets.token_hex(12)}", "amount": intent["amount"], "created": _ts(at),
                        "charge": intent["latest_charge"], "payment_intent": intent["id"], "status": status})
        self.disputes.append(dispute)
        self.charges[intent["latest_charge"]]["disputed"] = True
        return dispute

    # -- events ------------------------------------------------------------------------------

    def event(self, event_type: str, session_id: str, at: datetime, *, event_id: str | None = None) -> bytes:
        session = self.sessions[session_id]
        if event_type.startswith("checkout.session."):
            obj = copy.deepcopy(session)
        elif event_type.startswith("charge.dispute."):
            obj = copy.deepcopy([d for d in self.disputes if d["payment_intent"] == session["payment_intent"]][0])
        else:
            obj = copy.deepcopy(self.charges[self.intents[session["payment_intent"]]["latest_charge"]])
        body = {"id": event_id or f"evt_test_{secrets.token_hex(12)}", "object": "event", "api_version": "2026-10-28.endive",
                "created": _ts(at), "livemode": False, "pending_webhooks": 1, "type": event_type,
                "data": {"object": obj}}
        return json.dumps(body).encode()


def signature(payload: bytes, at: datetime, secret: str = WEBHOOK_SECRET) -> str:
    return sign(payload, secret, _ts(at))
