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


def _body(schema: dict) -> dict:
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": schema},
                                          "application/json": {"schema": schema}}}


def document(base_url: str) -> dict:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Chotto API", "version": "1",
            "description": "SMS and voice on prepaid credit, wire-compatible with Xoxzo's API: existing Xoxzo client "
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
