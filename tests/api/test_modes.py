"""Test and live credentials see only their own mode's messages and calls: the other mode's id
answers exactly as another account's id does (issue 9, item 7)."""

import pytest

from tests.api.conftest import new_key
from tests.api.test_sms import SMS
from tests.helpers import deliver_outbox

CALL = {"caller": "+81312345678", "recipient": "+819012345678", "tts_message": "hello", "tts_lang": "en"}
UNKNOWN = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def both(app, api, key):
    """A live and a test credential of one account, each having sent an SMS and made a call."""
    test_key = new_key(app, key.account_id, key.user_id, mode="test", name="test")
    sent = {}
    for mode, credential in (("live", key), ("test", test_key)):
        msgid = api.post("/sms/messages/", data=SMS, headers=credential.headers).json[0]["msgid"]
        callid = api.post("/voice/simple/playbacks/", data=CALL, headers=credential.headers).json[0]["callid"]
        sent[mode] = (credential, msgid, callid)
    deliver_outbox(app)
    return sent


@pytest.mark.parametrize("mode, other", [("live", "test"), ("test", "live")])
def test_a_credential_lists_only_the_messages_of_its_own_mode(api, both, mode, other):
    credential, msgid, _ = both[mode]
    listed = api.get("/sms/messages/", headers=credential.headers).json
    assert [m["msgid"] for m in listed] == [msgid] and listed[0]["test"] is (mode == "test")
    in_range = api.get("/sms/messages/?sent_date=%3E%3D2026-11-27", headers=credential.headers).json
    assert [m["msgid"] for m in in_range] == [msgid]


@pytest.mark.parametrize("mode, other", [("live", "test"), ("test", "live")])
def test_the_other_modes_message_and_call_answer_like_an_unknown_id(api, both, mode, other):
    credential, msgid, callid = both[mode]
    _, their_msgid, their_callid = both[other]
    assert api.get(f"/sms/messages/{msgid}", headers=credential.headers).status_code == 200
    assert api.get(f"/voice/calls/{callid}", headers=credential.headers).status_code == 200
    for path, unknown in ((f"/sms/messages/{their_msgid}", f"/sms/messages/{UNKNOWN}"),
                          (f"/voice/calls/{their_callid}", f"/voice/calls/{UNKNOWN}")):
        theirs, nobodys = api.get(path, headers=credential.headers), api.get(unknown, headers=credential.headers)
        assert (theirs.status_code, theirs.data) == (nobodys.status_code, nobodys.data) == (404, b'{"detail": "Not found."}')
