"""The customer API's OpenAPI 3.1 document, served at /api/openapi.json and rendered as the
API reference page. Written by hand next to the views it describes.

Every sentence a person reads goes through `_`: the JSON document is built with `untranslated`
(English, as machines and client generators expect), the reference page with the page's gettext,
so the same document reads in Japanese at /api/docs. Answers are listed in status order."""

from collections.abc import Callable

from portal.messaging.rules import TTS_LANGUAGES, TTS_MESSAGE_MAX_LENGTH

Translate = Callable[..., str]

ERROR = {"type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"]}


def untranslated(text: str, **variables) -> str:
    return text % variables if variables else text


def document(base_url: str, _: Translate = untranslated) -> dict:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Chotto API", "version": "1",
            "description": _("SMS and voice on prepaid credit, wire-compatible with Xoxzo's API: existing Xoxzo client "
                             "libraries work by changing the host. Authenticate with HTTP Basic: the credential's SID "
                             "as user name and its token as password. Paths work with and without the trailing slash."),
        },
        "servers": [{"url": base_url}],
        "components": {"securitySchemes": {"basic": {"type": "http", "scheme": "basic"}}},
        "security": [{"basic": []}],
        "paths": _paths(_),
    }


def _response(description: str, schema: dict | None = None, headers: dict | None = None) -> dict:
    answer = {"description": description}
    if schema is not None:
        answer["content"] = {"application/json": {"schema": schema}}
    if headers:
        answer["headers"] = headers
    return answer


def _in_status_order(responses: dict) -> dict:
    return dict(sorted(responses.items()))


def _body(schema: dict) -> dict:
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": schema},
                                          "application/json": {"schema": schema}}}


def _field_errors(_: Translate) -> dict:
    return {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}},
            "description": _("Every invalid field of the request at once, each with its messages, e.g. "
                             '{"recipient": ["…"], "sender": ["…"]}.')}


def _common(_: Translate) -> dict:
    retry_after = {"Retry-After": {"schema": {"type": "integer", "minimum": 1},
                                   "description": _("Whole seconds to wait, at least 1.")}}
    return {
        "401": _response(_("Missing or wrong SID and token."), ERROR),
        "403": _response(_("The credential lacks the scope, or is not allowed from this address."), ERROR),
        "429": _response(_("Too many requests for this credential (or account)."), ERROR, retry_after),
        "503": _response(_("The database cannot be reached: nothing was done and nothing was charged."), ERROR,
                         retry_after),
    }


def _sending(_: Translate) -> dict:
    return {
        **_common(_),
        "400": _response(_("Invalid input, keyed by field."), _field_errors(_)),
        "402": _response(_("Not enough credit."), ERROR),
        "422": _response(_("The Idempotency-Key was used before with a different request."), ERROR),
    }


def _idempotency(_: Translate) -> dict:
    return {"name": "Idempotency-Key", "in": "header", "required": False,
            "description": _("Retries with the same key are answered with the first answer and charged once. "
                             "A malformed key is reported in the 400 beside the invalid fields."),
            "schema": {"type": "string", "minLength": 1, "maxLength": 255}}


def _tags(_: Translate) -> dict:
    return {"type": ["string", "array"], "items": {"type": "string"},
            "description": _("Tags, comma-separated, as a JSON array, or as the form field repeated (tags=a&tags=b): "
                             "at most 10 of at most 50 characters.")}


def _phone(_: Translate) -> dict:
    return {"type": "string", "description": _("E.164, e.g. +819012345678 (a Japanese national number is accepted too)."),
            "examples": ["+819012345678"]}


def _sms_fields(_: Translate) -> dict:
    return {
        "type": "object",
        "required": ["recipient", "sender", "message"],
        "properties": {
            "recipient": _phone(_),
            "sender": {"type": "string", "description": _("Up to 10 ASCII letters and digits (A–Z, a–z, 0–9), or up to "
                                                          "15 digits; a leading + is dropped."), "examples": ["Chotto"]},
            "message": {"type": "string", "description": _("GSM-7: 160 characters a part (153 when split); otherwise "
                                                           "UCS-2: 70 (67). At most 10 parts.")},
            "callbackurl": {"type": "string", "format": "uri",
                            "description": _("Receives a signed POST on each status change.")},
            "tags": _tags(_),
        },
    }


def _call_fields(_: Translate) -> dict:
    return {
        "type": "object",
        "required": ["caller", "recipient"],
        "properties": {
            "caller": {"type": "string", "description": _("The number shown to the person called: international digits "
                                                          "with or without + (814512345678 or +814512345678), or a "
                                                          "Japanese national number (03-1234-5678)."),
                       "examples": ["+814512345678"]},
            "recipient": _phone(_),
            "recording_url": {"type": "string", "format": "uri",
                              "description": _("An MP3 to play (or give tts_message).")},
            "tts_message": {"type": "string", "maxLength": TTS_MESSAGE_MAX_LENGTH,
                            "description": _("Text to read out (or give recording_url), at most %(count)s characters.",
                                             count=f"{TTS_MESSAGE_MAX_LENGTH:,}")},
            "tts_lang": {"type": "string", "enum": list(TTS_LANGUAGES),
                         "description": _("The language of tts_message, required with it: %(languages)s.",
                                          languages=", ".join(TTS_LANGUAGES))},
            "callbackurl": {"type": "string", "format": "uri"},
            "tags": _tags(_),
        },
    }


def _message(_: Translate) -> dict:
    return {
        "type": "object",
        "properties": {
            "msgid": {"type": "string"},
            "status": {"type": "string", "enum": ["QUEUED", "DELIVERING", "DELIVERED", "FAIL"]},
            "sent_time": {"type": "string", "description": _("YYYY-MM-DD HH:MM:SS, Japan time.")},
            "cost": {"type": "number", "description": _("Yen.")}, "sender": {"type": "string"},
            "recipient": {"type": "string"}, "url": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "segments": {"type": "integer"}, "encoding": {"type": "string"}, "test": {"type": "boolean"},
        },
    }


def _call(_: Translate) -> dict:
    return {
        "type": "object",
        "properties": {
            "callid": {"type": "string"},
            "status": {"type": "string", "enum": ["QUEUED", "IN PROGRESS", "ANSWERED", "FAILED"]},
            "duration": {"type": ["integer", "null"], "description": _("Seconds.")},
            "cost": {"type": "number", "description": _("Yen: ¥10 per started minute in Japan.")},
            "caller": {"type": "string"}, "recipient": {"type": "string"},
            "start_time": {"type": ["string", "null"]}, "end_time": {"type": ["string", "null"]},
            "tags": {"type": "array", "items": {"type": "string"}}, "test": {"type": "boolean"},
        },
    }


def _id_list(name: str) -> dict:
    return {"type": "array", "items": {"type": "object", "properties": {name: {"type": "string"}}}}


def _paths(_: Translate) -> dict:
    common = _common(_)
    return {
        "/sms/messages/": {
            "post": {
                "operationId": "sendSms", "summary": _("Send an SMS"), "parameters": [_idempotency(_)],
                "requestBody": _body(_sms_fields(_)),
                "responses": _in_status_order({"201": _response(_("Accepted and paid."), _id_list("msgid")),
                                               **_sending(_)}),
            },
            "get": {
                "operationId": "listSms", "summary": _("Messages sent in the last 90 days"),
                "parameters": [{"name": "sent_date", "in": "query", "required": False, "schema": {"type": "string"},
                                "description": _("A day (2026-10-31) or a comparison (>=2026-10-31, >, <=, <); at "
                                                 "most 90 days back. Repeat it for a range: each must hold.")}],
                "responses": _in_status_order({
                    "200": _response(_("The messages of the credential's mode (test or live), newest first."),
                                     {"type": "array", "items": _message(_)}),
                    "400": _response(_("A bad sent_date."), _field_errors(_)), **common}),
            },
        },
        "/sms/messages/{msgid}": {
            "get": {
                "operationId": "getSms", "summary": _("One message's status and cost"),
                "parameters": [{"name": "msgid", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": _in_status_order({
                    "200": _response(_("The message."), _message(_)),
                    "404": _response(_("No such message in this account and mode: a test credential reads only "
                                       "test messages, a live one only live ones."), ERROR), **common}),
            },
        },
        "/voice/simple/playbacks/": {
            "post": {
                "operationId": "startCall", "summary": _("Call and play a recording or text-to-speech"),
                "parameters": [_idempotency(_)], "requestBody": _body(_call_fields(_)),
                "responses": _in_status_order({
                    "201": _response(_("Started; ¥50 is set aside until the call ends."), _id_list("callid")),
                    **_sending(_)}),
            },
        },
        "/voice/calls/{callid}": {
            "get": {
                "operationId": "getCall", "summary": _("A call's status, duration and cost"),
                "parameters": [{"name": "callid", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": _in_status_order({
                    "200": _response(_("The call."), _call(_)),
                    "404": _response(_("No such call in this account and mode: a test credential reads only test "
                                       "calls, a live one only live ones."), ERROR), **common}),
            },
        },
        **_otp_paths(_, common),
        "/you/credits/": {
            "get": {
                "operationId": "getCredits", "summary": _("Available credit"),
                "responses": _in_status_order({
                    "200": _response(_("Available credit in yen, plus what is set aside and each lot."), {
                        "type": "object", "properties": {
                            "credits": {"type": "number"}, "held": {"type": "number"},
                            "lots": {"type": "array", "items": {"type": "object", "properties": {
                                "kind": {"type": "string"}, "remaining": {"type": "number"},
                                "expires_at": {"type": "string"}}}}}}), **common}),
            },
        },
    }


def _otp_paths(_: Translate, common: dict) -> dict:
    reasoned = {"type": "object", "properties": {"detail": {"type": "string"}, "reason": {"type": "string"}}}
    retry_after = {"Retry-After": {"schema": {"type": "integer", "minimum": 1},
                                   "description": _("Whole seconds to wait, at least 1.")}}
    failed = {
        "type": "object", "additionalProperties": True,
        "properties": {"code": {"type": "array", "items": {"type": "string"}},
                       "reason": {"type": "string", "enum": ["wrong", "expired", "too_many_attempts", "already_used",
                                                             "no_active_code"]},
                       "attempts_left": {"type": "integer"}},
    }
    website = {"type": "string", "description": _("A registered site's URL or domain.")}
    return {
        "/otp/register-website/": {
            "post": {
                "operationId": "registerOtpWebsite", "summary": _("Register a website for one-time codes"),
                "requestBody": _body({"type": "object", "required": ["website"], "properties": {
                    "website": {"type": "string", "examples": ["https://example.com"],
                                "description": _("The site's URL or domain, e.g. https://example.com.")},
                    "template_id": {"type": "string", "description": _("Accepted for Xoxzo's clients and ignored: "
                                                                       "the template is set in the portal.")}}}),
                "responses": _in_status_order({
                    "201": _response(_("Registered. Serve verification_token at verification_url to send codes to any "
                                       "number; until then they go only to the account's verified numbers."), {
                        "type": "object", "properties": {
                            "message": {"type": "string"}, "website": {"type": "string"},
                            "verification_url": {"type": "string"}, "verification_token": {"type": "string"}}}),
                    "400": _response(_("Invalid, or already registered."), _field_errors(_)), **common}),
            },
        },
        "/otp/request/": {
            "post": {
                "operationId": "requestOtp", "summary": _("Send a verification code (¥3 an SMS)"),
                "parameters": [_idempotency(_)],
                "requestBody": _body({"type": "object", "required": ["website", "phone_number"], "properties": {
                    "website": website, "phone_number": _phone(_),
                    "channel": {"type": "string", "enum": ["sms", "voice"],
                                "description": _("sms (the default), or voice: a call that reads the code out, priced "
                                                 "as a call.")},
                    "ip": {"type": "string", "description": _("The end user's IP address, for the site's per-IP "
                                                              "limit.")}}}),
                "responses": _in_status_order({
                    **common,
                    "201": _response(_("Sent. A new code replaces the number's previous one but keeps its count of "
                                       "wrong attempts."), {"type": "object", "properties": {
                                           "msgid": {"type": "string"}, "otp_id": {"type": "string"},
                                           "expires_at": {"type": "string"}}}),
                    "400": _response(_("Invalid input, keyed by field; a country the site does not allow, or a number "
                                       "an unproven site may not send to, is keyed phone_number with a reason."),
                                     _field_errors(_)),
                    "402": _response(_("Not enough credit."), ERROR),
                    "403": _response(_("The credential lacks the otp scope or may not use this site, or the site is "
                                       "paused (reason site_paused)."), reasoned),
                    "422": _response(_("The Idempotency-Key was used before with a different request."), ERROR),
                    "429": _response(_("Refused by a limit, recorded with its reason: number_limit, ip_limit, "
                                       "prefix_limit, number_locked or resend_cooldown."), reasoned, retry_after)}),
            },
        },
        "/otp/verify/": {
            "post": {
                "operationId": "verifyOtp", "summary": _("Check a code the end user typed"),
                "requestBody": _body({"type": "object", "required": ["code"],
                                      "description": _("Give website and phone_number, or otp_id (or msgid)."),
                                      "properties": {"code": {"type": "string"}, "website": website,
                                                     "phone_number": _phone(_), "otp_id": {"type": "string"},
                                                     "msgid": {"type": "string"}}}),
                "responses": _in_status_order({
                    "200": _response(_("Verified: the code is used up."), {"type": "object", "properties": {
                        "message": {"type": "string"}, "verified": {"type": "boolean"}, "otp_id": {"type": "string"},
                        "phone_number": {"type": "string"}}}),
                    "400": _response(_("Not accepted, with a reason: wrong (with attempts_left), expired, "
                                       "too_many_attempts, already_used or no_active_code."), failed), **common}),
            },
        },
    }
