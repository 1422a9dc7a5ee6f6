"""The page that shows a new token carries code samples (curl, Python with requests, Xoxzo's
xoxzo.cloudpy) with the real SID, the token and this portal's address filled in."""

import re

from portal.web.code_samples import sms_samples
from tests.helpers import PageClient, make_user

NEW = {"name": "staging", "mode": "test", "scopes": ["sms", "read"], "networks": "", "monthly_cap": ""}


def signed_in(app, phone=None):
    make_user(app, phone=phone)
    client = PageClient(app.test_client(), app)
    client.login("owner@example.com")
    return client


def shown(response):
    html = response.get_data(as_text=True)
    sid = re.search(r'data-testid="sid">([^<]+)<', html).group(1)
    return sid, re.search(r'data-testid="token">([^<]+)<', html).group(1)


def samples_of(response) -> dict[str, str]:
    from bs4 import BeautifulSoup

    page = BeautifulSoup(response.get_data(as_text=True), "html.parser")
    return {key: page.select_one(f"[data-testid=sample-{key}]").get_text() for key in ("curl", "requests", "cloudpy")}


def test_every_sample_carries_the_real_sid_token_and_address(app):
    client = signed_in(app, phone="+819011112222")
    response = client.post("/credentials", NEW, status=200)
    sid, token = shown(response)
    samples = samples_of(response)
    assert samples["curl"].startswith("curl https://portal.chotto.test/sms/messages/ \\\n")
    assert f"  -u {sid}:{token} \\" in samples["curl"]
    assert "--data-urlencode recipient=+819011112222" in samples["curl"]  # the person's own verified number
    for python in (samples["requests"], samples["cloudpy"]):
        assert f'SID = "{sid}"\nTOKEN = "{token}"\n' in python
    assert 'requests.post(\n    "https://portal.chotto.test/sms/messages/",\n    auth=(SID, TOKEN),' in samples["requests"]
    assert 'XoxzoClient(sid=SID, auth_token=TOKEN, api_host="https://portal.chotto.test")' in samples["cloudpy"]
    assert 'recipient="+819011112222", sender="Chotto")' in samples["cloudpy"]
    assert response.headers["Cache-Control"] == "no-store"
    assert token not in client.get("/credentials").get_data(as_text=True)


def test_a_rotated_token_fills_the_samples_with_the_new_token(app):
    client = signed_in(app)
    sid, first = shown(client.post("/credentials", NEW, status=200))
    credential_id = re.search(r'/credentials/(\d+)/rotate', client.get("/credentials").get_data(as_text=True)).group(1)
    response = client.post(f"/credentials/{credential_id}/rotate", {"overlap": "0"}, status=200)
    _, second = shown(response)
    samples = samples_of(response)
    assert second != first and all(second in code and first not in code for code in samples.values())
    assert "--data-urlencode recipient=+819012345678" in samples["curl"]  # no verified number: an example


def test_a_credential_without_the_sms_scope_gets_no_sms_samples(app):
    client = signed_in(app)
    html = client.post("/credentials", NEW | {"scopes": ["read"]}, status=200).get_data(as_text=True)
    assert "sample-curl" not in html and "This credential has no SMS scope" in html


def test_the_samples_quote_what_they_carry_for_their_language():
    curl, requests, cloudpy = sms_samples(base_url="https://x.test", sid="s", token="t", recipient="+819011112222",
                                          message="It's 10 o'clock \"now\" – ちょっと")
    assert "--data-urlencode 'message=It'\"'\"'s 10 o'\"'\"'clock \"now\" – ちょっと'" in curl.code
    assert '"message": "It\'s 10 o\'clock \\"now\\" – ちょっと"' in requests.code
    compile(requests.code, "requests-sample", "exec")
    compile(cloudpy.code, "cloudpy-sample", "exec")
