"""Fields as Xoxzo takes them (issue 9, items 13 and 10): a voice caller with or without "+",
a 400 that names every invalid field at once, ASCII-only sender ids, a bounded tts_message
and a documented list of tts_lang values."""

from urllib.parse import quote

import pytest
from werkzeug.datastructures import MultiDict

from portal.messaging.rules import TTS_LANGUAGES, TTS_MESSAGE_MAX_LENGTH
from tests.api.test_sms import SMS, available, send
from tests.api.conftest import YEN
from tests.helpers import PageClient

CALL = {"caller": "+81312345678", "recipient": "+819012345678", "tts_message": "hello", "tts_lang": "en"}


def call(api, key, fields=None, **kwargs):
    return api.post("/voice/simple/playbacks/", data=CALL if fields is None else fields, headers=key.headers, **kwargs)


# -- the voice caller -------------------------------------------------------------------------


@pytest.mark.parametrize("caller", ["814512345678", "+814512345678", "81312345678", "+81 45-1234-5678", "045-123-4567"])
def test_a_caller_is_digits_with_or_without_a_plus_as_xoxzo_takes_it(app, api, key, caller):
    response = call(api, key, CALL | {"caller": caller})
    assert response.status_code == 201, response.json
    shown = api.get(f"/voice/calls/{response.json[0]['callid']}", headers=key.headers).json["caller"]
    assert shown.startswith("+81") and shown.lstrip("+").isdigit()


@pytest.mark.parametrize("caller", ["Chotto", "12345", "+8108012345678", "８１４５１２３４５６７８", "+81 45 1234 5678 99999"])
def test_a_caller_that_is_not_a_possible_number_is_refused(app, api, key, caller):
    response = call(api, key, CALL | {"caller": caller})
    assert response.status_code == 400 and list(response.json) == ["caller"], response.json


# -- every invalid field at once ----------------------------------------------------------------


def test_an_sms_with_several_bad_fields_names_each_of_them(app, api, key):
    response = send(api, key, {"recipient": "+8108012345678", "sender": "Chotto-Japan!", "message": "hi",
                               "tags": ",".join(["t"] * 11)})
    assert response.status_code == 400
    assert response.json == {"recipient": ["+8108012345678 is not a valid phone number."],
                             "sender": ["Use up to 10 letters and digits, or up to 15 digits."],
                             "tags": ["Use at most 10 tags of at most 50 characters."]}
    assert available(app, key.account_id) == 1050 * YEN


def test_missing_wrong_typed_and_invalid_json_fields_are_named_together(app, api, key):
    response = api.post("/sms/messages/", json={"recipient": 819012345678, "sender": "Chotto!", "tags": [1]},
                        headers=key.headers)
    assert response.status_code == 400
    assert response.json == {"recipient": ["Must be a string."], "sender": ["Use up to 10 letters and digits, or up "
                                                                            "to 15 digits."],
                             "message": ["This field is required."], "tags": ["Must be a string."]}


def test_a_recipient_the_account_may_not_reach_is_named_beside_other_bad_fields(app, api, key):
    response = send(api, key, SMS | {"recipient": "+14155552671", "sender": "Chotto-Japan!"})
    assert response.status_code == 400 and set(response.json) == {"recipient", "sender"}
    assert "US is not enabled" in response.json["recipient"][0]


def test_a_call_with_several_bad_fields_names_each_of_them(app, api, key):
    response = call(api, key, {"caller": "Chotto", "recipient": "+8108012345678", "tts_message": "x",
                               "tts_lang": "xx", "callbackurl": "ftp://example.com/x"})
    assert response.status_code == 400
    assert set(response.json) == {"caller", "recipient", "tts_lang", "callbackurl"}, response.json


def test_xoxzos_own_failing_playback_names_the_recipient(app, api, key):
    """xoxzo.cloudpy's test: caller 814512345678, recipient +8108012345678, no recording."""
    response = call(api, key, {"caller": "814512345678", "recipient": "+8108012345678"})
    assert response.status_code == 400
    assert response.json == {"recipient": ["+8108012345678 is not a valid phone number."],
                             "recording_url": ["Give either recording_url or tts_message (with tts_lang)."]}
    assert available(app, key.account_id) == 1050 * YEN


def test_every_bad_sent_date_is_named_and_several_good_ones_make_a_range(app, api, key, clock):
    first = send(api, key).json[0]["msgid"]
    clock.advance(days=2)
    second = send(api, key).json[0]["msgid"]
    clock.advance(days=2)
    send(api, key)
    between = api.get("/sms/messages/?sent_date%3E=2026-11-28&sent_date%3C=2026-11-30", headers=key.headers)
    assert [m["msgid"] for m in between.json] == [second]
    assert first not in [m["msgid"] for m in between.json]
    response = api.get(f"/sms/messages/?sent_date={quote('>=2026-13-01')}&sent_date=yesterday"
                       f"&sent_date%3E=tomorrow&sent_date={quote('<2026-08-01')}", headers=key.headers)
    assert response.status_code == 400
    assert response.json == {"sent_date": [
        "2026-13-01 is not a date.",
        "yesterday is not a date such as 2026-10-31, optionally after >=, >, <= or <.",
        "2026-08-01 is more than 90 days ago: only the last 90 days can be listed.",
        ">=tomorrow is not a date such as 2026-10-31, optionally after >=, >, <= or <.",
    ]}


def test_the_last_representable_day_lists_nothing_rather_than_failing(app, api, key):
    send(api, key)
    listed = {}
    for value in ("9999-12-31", ">=9999-12-31", ">9999-12-31", "<9999-12-31", "<=9999-12-31"):
        response = api.get(f"/sms/messages/?sent_date={quote(value)}", headers=key.headers)
        assert response.status_code == 200, (value, response.data)
        listed[value] = len(response.json)
    assert listed == {"9999-12-31": 0, ">=9999-12-31": 0, ">9999-12-31": 0, "<9999-12-31": 1, "<=9999-12-31": 1}


@pytest.mark.parametrize("value", ["<0001-01-01", "<=0001-01-01", "0001-01-01"])
def test_the_first_representable_day_is_refused_as_beyond_the_listable_history(app, api, key, value):
    response = api.get(f"/sms/messages/?sent_date={quote(value)}", headers=key.headers)
    assert response.status_code == 400
    assert response.json == {"sent_date": ["0001-01-01 is more than 90 days ago: only the last 90 days can be listed."]}


# -- sender ids, tts_message and tts_lang -------------------------------------------------------


@pytest.mark.parametrize("sender", ["１２３４５", "Ｃｈｏｔｔｏ", "١٢٣٤", "Chötto", "発信者", "12３"])
def test_a_sender_id_is_ascii_letters_and_digits_only(app, api, key, sender):
    response = send(api, key, SMS | {"sender": sender})
    assert response.status_code == 400 and list(response.json) == ["sender"], response.json


def test_tts_message_has_a_documented_maximum_length(app, api, key):
    assert call(api, key, CALL | {"tts_message": "あ" * TTS_MESSAGE_MAX_LENGTH}).status_code == 201
    response = call(api, key, CALL | {"tts_message": "あ" * (TTS_MESSAGE_MAX_LENGTH + 1)})
    assert response.status_code == 400 and response.json == {"tts_message": ["Use at most 1,000 characters."]}
    spec = api.get("/api/openapi.json").json
    fields = spec["paths"]["/voice/simple/playbacks/"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert fields["properties"]["tts_message"]["maxLength"] == TTS_MESSAGE_MAX_LENGTH == 1000
    assert fields["properties"]["tts_lang"]["enum"] == list(TTS_LANGUAGES)
    text = PageClient(app.test_client(), app).page("/api/docs").get_text()
    assert "at most 1,000 characters" in text and ", ".join(TTS_LANGUAGES) in text


@pytest.mark.parametrize("language", [None, "", "  "])
def test_tts_message_without_tts_lang_names_tts_lang_as_required(app, api, key, language):
    fields = {name: value for name, value in CALL.items() if name != "tts_lang"}
    response = call(api, key, fields | ({} if language is None else {"tts_lang": language}))
    assert response.status_code == 400 and response.json == {"tts_lang": ["This field is required."]}
    assert available(app, key.account_id) == 1050 * YEN


@pytest.mark.parametrize("language", ["xx", "JA", "ja-JP"])
def test_tts_lang_outside_the_documented_list_is_refused(app, api, key, language):
    response = call(api, key, CALL | {"tts_lang": language})
    assert response.status_code == 400 and response.json == {"tts_lang": ["Use a language code such as ja or en."]}


@pytest.mark.parametrize("language", TTS_LANGUAGES)
def test_every_documented_tts_lang_is_accepted(app, api, key, language):
    assert call(api, key, CALL | {"tts_lang": language}).status_code == 201


# -- the Idempotency-Key and repeated form fields -------------------------------------------------


@pytest.mark.parametrize("idempotency_key", ["k" * 256, "   "])
def test_a_malformed_idempotency_key_is_named_beside_the_invalid_fields(app, api, key, idempotency_key):
    headers = {"Idempotency-Key": idempotency_key}
    response = send(api, key, SMS | {"recipient": "+8108012345678", "sender": "Chotto-Japan!"}, headers=headers)
    assert response.status_code == 400
    assert response.json == {"Idempotency-Key": ["Use 1 to 255 characters."],
                             "recipient": ["+8108012345678 is not a valid phone number."],
                             "sender": ["Use up to 10 letters and digits, or up to 15 digits."]}
    response = api.post("/voice/simple/playbacks/", data=CALL | {"caller": "Chotto"}, headers=key.headers | headers)
    assert response.status_code == 400 and set(response.json) == {"Idempotency-Key", "caller"}
    alone = send(api, key, headers=headers)
    assert alone.status_code == 400 and alone.json == {"Idempotency-Key": ["Use 1 to 255 characters."]}
    assert available(app, key.account_id) == 1050 * YEN


def test_a_repeated_tags_field_in_a_form_body_keeps_every_tag(app, api, key):
    body = MultiDict(list(SMS.items()) + [("tags", "billing"), ("tags", "signup")])
    response = api.post("/sms/messages/", data=body, headers=key.headers)
    assert response.status_code == 201, response.json
    shown = api.get(f"/sms/messages/{response.json[0]['msgid']}", headers=key.headers).json
    assert shown["tags"] == ["billing", "signup"]
    documented = api.get("/api/openapi.json").json["paths"]["/sms/messages/"]["post"]["requestBody"]
    assert "tags=a&tags=b" in documented["content"]["application/x-www-form-urlencoded"]["schema"]["properties"][
        "tags"]["description"]


def test_a_repeated_single_value_field_in_a_form_body_is_refused_not_half_read(app, api, key):
    body = MultiDict(list(SMS.items()) + [("recipient", "+819099998888")])
    response = api.post("/sms/messages/", data=body, headers=key.headers)
    assert response.status_code == 400 and response.json == {"recipient": ["Give one value, not a list."]}
    assert available(app, key.account_id) == 1050 * YEN
