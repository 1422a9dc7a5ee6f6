"""The customer API's OpenAPI 3.1 document, served at /api/openapi.json and rendered as the
API reference page. Written by hand next to the views it describes."""

from portal.messaging.rules import TTS_LANGUAGES, TTS_MESSAGE_MAX_LENGTH

ERROR = {"type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"]}
FIELD_ERRORS = {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}},
                "description": "Every invalid field of the request at once, each with its messages, e.g. "
                               '{"recipient": ["…"], "sender": ["…"]}.'}


def _response(description: str, schema: dict | None = None, headers: dict | None = None) -> dict:
    answer = {"description": description}
    if schema is not None:
        answer["content"] = {"application/json": {"schema": schema}}
    if headers:
        answer["headers"] = headers
    return answer


COMMON = {
    "401": _response("Missing or wrong SID and token.", ERROR),
    "403": _response("The credential lacks the scope, or is not allowed from this address.", ERROR),
    "429": _response("Too many requests for this credential (or account).", ERROR, {
        "Retry-After": {"schema": {"type": "integer", "minimum": 1}, "description": "Whole seconds to wait, at least 1."}}),
    "503": _response("The database cannot be reached: nothing was done and nothing was charged.", ERROR, {
        "Retry-After": {"schema": {"type": "integer", "minimum": 1}, "description": "Whole seconds to wait, at least 1."}}),
}
SENDING = {
    **COMMON,
    "400": _response("Invalid input, keyed by field.", FIELD_ERRORS),
    "402": _response("Not enough credit.", ERROR),
    "422": _response("The Idempotency-Key was used before with a different request.", ERROR),
}
IDEMPOTENCY = {"name": "Idempotency-Key", "in": "header", "required": False,
               "description": "Retries with the same key are answered with the first answer and charged once. "
                              "A malformed key is reported in the 400 beside the invalid fields.",
               "schema": {"type": "string", "minLength": 1, "maxLength": 255}}
TAGS = {"type": ["string", "array"], "items": {"type": "string"},
        "description": "Tags, comma-separated, as a JSON array, or as the form field repeated (tags=a&tags=b): at "
                       "most 10 of at most 50 characters."}
PHONE = {"type": "string", "description": "E.164, e.g. +819012345678 (a Japanese national number is accepted too).",
         "examples": ["+819012345678"]}

SMS_FIELDS = {
    "type": "object",
    "required": ["recipient", "sender", "message"],
    "properties": {
        "recipient": PHONE,
        "sender": {"type": "string", "description": "Up to 10 ASCII letters and digits (A–Z, a–z, 0–9), or up to 15 "
                                                    "digits; a leading + is dropped.", "examples": ["Chotto"]},
        "message": {"type": "string", "description": "GSM-7: 160 characters a part (153 when split); otherwise "
                                                     "UCS-2: 70 (67). At most 10 parts."},
        "callbackurl": {"type": "string", "format": "uri", "description": "Receives a signed POST on each status change."},
        "tags": TAGS,
    },
}
CALL_FIELDS = {
    "type": "object",
    "required": ["caller", "recipient"],
    "properties": {
        "caller": {"type": "string", "description": "The number shown to the person called: international digits with "
                                                    "or without + (814512345678 or +814512345678), or a Japanese "
                                                    "national number (03-1234-5678).",
                   "examples": ["+814512345678"]},
        "recipient": PHONE,
        "recording_url": {"type": "string", "format": "uri", "description": "An MP3 to play (or give tts_message)."},
        "tts_message": {"type": "string", "maxLength": TTS_MESSAGE_MAX_LENGTH,
                        "description": f"Text to read out (or give recording_url), at most {TTS_MESSAGE_MAX_LENGTH:,} "
                                       "characters."},
        "tts_lang": {"type": "string", "enum": list(TTS_LANGUAGES),
                     "description": f"The language of tts_message, required with it: {', '.join(TTS_LANGUAGES)}."},
        "callbackurl": {"type": "string", "format": "uri"},
        "tags": TAGS,
    },
}
MESSAGE = {
    "type": "object",
    "properties": {
        "msgid": {"type": "string"}, "status": {"type": "string", "enum": ["QUEUED", "DELIVERING", "DELIVERED", "FAIL"]},
        "sent_time": {"type": "string", "description": "YYYY-MM-DD HH:MM:SS, Japan time."},
        "cost": {"type": "number", "description": "Yen."}, "sender": {"type": "string"}, "recipient": {"type": "string"},
        "url": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}},
        "segments": {"type": "integer"}, "encoding": {"type": "string"}, "test": {"type": "boolean"},
    },
}
CALL = {
    "type": "object",
    "properties": {
        "callid": {"type": "string"},
        "status": {"type": "string", "enum": ["QUEUED", "IN PROGRESS", "ANSWERED", "FAILED"]},
        "duration": {"type": ["integer", "null"], "description": "Seconds."},
        "cost": {"type": "number", "description": "Yen: ¥10 per started minute in Japan."},
        "caller": {"type": "string"}, "recipient": {"type": "string"},
        "start_time": {"type": ["string", "null"]}, "end_time": {"type": ["string", "null"]},
        "tags": {"type": "array", "items": {"type": "string"}}, "test": {"type": "boolean"},
    },
}
OTP_REGISTER_FIELDS = {
    "type": "object", "required": ["website"],
    "properties": {"website": {"type": "string", "description": "The site's URL or domain, e.g. https://example.com.",
                               "examples": ["https://example.com"]},
                   "template_id": {"type": "string", "description": "Accepted for Xoxzo's clients and ignored: the "
                                                                    "template is set in the portal."}},
}
OTP_REQUEST_FIELDS = {
    "type": "object", "required": ["website", "phone_number"],
    "properties": {
        "website": {"type": "string", "description": "A registered site's URL or domain."},
        "phone_number": PHONE,
        "channel": {"type": "string", "enum": ["sms", "voice"], "description": "sms (the default, ¥3), or voice: a "
                                                                             "call that reads the code out, priced "
                                                                             "as a call."},
        "ip": {"type": "string", "description": "The end user's IP address, for the site's per-IP limit."},
    },
}
OTP_VERIFY_FIELDS = {
    "type": "object", "required": ["code"],
    "description": "Give website and phone_number, or otp_id (or msgid) from the request.",
    "properties": {"code": {"type": "string", "description": "The digits the end user typed."},
                   "website": {"type": "string"}, "phone_number": PHONE,
                   "otp_id": {"type": "string"}, "msgid": {"type": "string"}},
}
REASONED = {"type": "object", "properties": {"detail": {"type": "string"}, "reason": {"type": "string"}}}
OTP_FAILED = {
    "type": "object", "description": "The code was not accepted (or a field is invalid, keyed by field).",
    "properties": {"code": {"type": "array", "items": {"type": "string"}},
                   "reason": {"type": "string", "enum": ["wrong", "expired", "too_many_attempts", "already_used",
                                                         "no_active_code"]},
                   "attempts_left": {"type": "integer"}},
    "additionalProperties": True,
}
OTP_BLOCKED_REASONS = ("A fraud guard refused the request (recorded with its reason in the portal): number_limit, "
                       "ip_limit, prefix_limit, number_locked, or resend_cooldown.")


def _body(schema: dict) -> dict:
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": schema},
                                          "application/json": {"schema": schema}}}


def document(base_url: str) -> dict:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Chotto API", "version": "1",
            "description": "SMS, voice and one-time codes on prepaid credit, wire-compatible with Xoxzo's API: existing Xoxzo client "
                           "libraries work by changing the host. Authenticate with HTTP Basic: the credential's SID "
                           "as user name and its token as password. Paths work with and without the trailing slash.",
        },
        "servers": [{"url": base_url}],
        "components": {"securitySchemes": {"basic": {"type": "http", "scheme": "basic"}}},
        "security": [{"basic": []}],
        "paths": {
            "/sms/messages/": {
                "post": {
                    "operationId": "sendSms", "summary": "Send an SMS", "parameters": [IDEMPOTENCY],
                    "requestBody": _body(SMS_FIELDS),
                    "responses": {"201": _response("Accepted and paid.", {"type": "array", "items": {
                        "type": "object", "properties": {"msgid": {"type": "string"}}}}), **SENDING},
                },
                "get": {
                    "operationId": "listSms", "summary": "Messages sent in the last 90 days",
                    "parameters": [{"name": "sent_date", "in": "query", "required": False, "schema": {"type": "string"},
                                    "description": "A day (2026-10-31) or a comparison (>=2026-10-31, >, <=, <); "
                                                   "at most 90 days back. Repeat it for a range: each must hold."}],
                    "responses": {"200": _response("The messages of the credential's mode (test or live), newest "
                                                   "first.", {"type": "array", "items": MESSAGE}),
                                  "400": _response("A bad sent_date.", FIELD_ERRORS), **COMMON},
                },
            },
            "/sms/messages/{msgid}": {
                "get": {
                    "operationId": "getSms", "summary": "One message's status and cost",
                    "parameters": [{"name": "msgid", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {"200": _response("The message.", MESSAGE),
                                  "404": _response("No such message in this account and mode: a test credential "
                                                   "reads only test messages, a live one only live ones.", ERROR),
                                  **COMMON},
                },
            },
            "/voice/simple/playbacks/": {
                "post": {
                    "operationId": "startCall", "summary": "Call and play a recording or text-to-speech",
                    "parameters": [IDEMPOTENCY], "requestBody": _body(CALL_FIELDS),
                    "responses": {"201": _response("Started; ¥50 is set aside until the call ends.", {
                        "type": "array", "items": {"type": "object", "properties": {"callid": {"type": "string"}}}}),
                        **SENDING},
                },
            },
            "/voice/calls/{callid}": {
                "get": {
                    "operationId": "getCall", "summary": "A call's status, duration and cost",
                    "parameters": [{"name": "callid", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {"200": _response("The call.", CALL),
                                  "404": _response("No such call in this account and mode: a test credential reads "
                                                   "only test calls, a live one only live ones.", ERROR), **COMMON},
                },
            },
            "/otp/register-website/": {
                "post": {
                    "operationId": "registerOtpWebsite", "summary": "Register a website for OTP",
                    "requestBody": _body(OTP_REGISTER_FIELDS),
                    "responses": {"201": _response("Registered; serve verification_token at verification_url to "
                                                   "send codes to any number.", {"type": "object", "properties": {
                                                       "message": {"type": "string"}, "website": {"type": "string"},
                                                       "verification_url": {"type": "string"},
                                                       "verification_token": {"type": "string"}}}),
                                  "400": _response("Invalid, or already registered.", FIELD_ERRORS), **COMMON},
                },
            },
            "/otp/request/": {
                "post": {
                    "operationId": "requestOtp", "summary": "Send a one-time code (¥3 an SMS)",
                    "parameters": [IDEMPOTENCY], "requestBody": _body(OTP_REQUEST_FIELDS),
                    "responses": {"201": _response("Sent; a new code replaces the number's previous one.", {
                        "type": "object", "properties": {"msgid": {"type": "string"}, "otp_id": {"type": "string"},
                                                         "expires_at": {"type": "string"}}}),
                                  "400": _response("Invalid input keyed by field; a country the site does not allow or "
                                                   "a number an unproven site may not send to is keyed phone_number "
                                                   "with a reason.", FIELD_ERRORS),
                                  "402": _response("Not enough credit.", ERROR),
                                  "422": _response("The Idempotency-Key was used before with a different request.",
                                                   ERROR),
                                  "403": _response("The credential lacks the otp scope, or the site is paused "
                                                   "(reason site_paused).", REASONED),
                                  "429": _response(OTP_BLOCKED_REASONS, REASONED, {"Retry-After": {
                                      "schema": {"type": "integer", "minimum": 1}}}),
                                  **{k: v for k, v in COMMON.items() if k not in ("403", "429")}},
                },
            },
            "/otp/verify/": {
                "post": {
                    "operationId": "verifyOtp", "summary": "Check a code the end user typed",
                    "requestBody": _body(OTP_VERIFY_FIELDS),
                    "responses": {"200": _response("Verified: the code is used up.", {"type": "object", "properties": {
                        "message": {"type": "string"}, "verified": {"type": "boolean"}, "otp_id": {"type": "string"},
                        "phone_number": {"type": "string"}}}),
                                  "400": _response("Not accepted: wrong, expired, too_many_attempts, already_used or "
                                                   "no_active_code.", OTP_FAILED), **COMMON},
                },
            },
            "/you/credits/": {
                "get": {
                    "operationId": "getCredits", "summary": "Available credit",
                    "responses": {"200": _response("Available credit in yen, plus what is set aside and each lot.", {
                        "type": "object", "properties": {
                            "credits": {"type": "number"}, "held": {"type": "number"},
                            "lots": {"type": "array", "items": {"type": "object", "properties": {
                                "kind": {"type": "string"}, "remaining": {"type": "number"},
                                "expires_at": {"type": "string"}}}}}}), **COMMON},
                },
            },
        },
    }
