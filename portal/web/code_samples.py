"""Code samples for the page that shows a new token: sending one SMS with curl, Python's
`requests` and Xoxzo's own client library (`xoxzo.cloudpy`, pointed at this portal by
`api_host`), with the real SID and token filled in, so a pasted sample works as it is.
Values are quoted for their language here, not in the template."""

import json
import shlex
from dataclasses import dataclass

SENDER = "Chotto"


@dataclass(frozen=True)
class Sample:
    key: str  # curl, requests, cloudpy
    install: str | None  # what to install first
    code: str


def sms_samples(*, base_url: str, sid: str, token: str, recipient: str, message: str) -> list[Sample]:
    url = f"{base_url}/sms/messages/"
    return [
        Sample("curl", None, "\n".join([
            f"curl {shlex.quote(url)} \\",
            f"  -u {shlex.quote(f'{sid}:{token}')} \\",
            f"  --data-urlencode {shlex.quote(f'recipient={recipient}')} \\",
            f"  --data-urlencode {shlex.quote(f'sender={SENDER}')} \\",
            f"  --data-urlencode {shlex.quote(f'message={message}')}",
        ])),
        Sample("requests", "pip install requests", "\n".join([
            "import requests",
            "",
            *_credential(sid, token),
            "answer = requests.post(",
            f"    {_py(url)},",
            "    auth=(SID, TOKEN),",
            f"    data={{\"recipient\": {_py(recipient)}, \"sender\": {_py(SENDER)}, \"message\": {_py(message)}}},",
            ")",
            "print(answer.status_code, answer.json())",
        ])),
        Sample("cloudpy", "pip install xoxzo.cloudpy", "\n".join([
            "from xoxzo.cloudpy import XoxzoClient",
            "",
            *_credential(sid, token),
            f"client = XoxzoClient(sid=SID, auth_token=TOKEN, api_host={_py(base_url)})",
            "result = client.send_sms(",
            f"    message={_py(message)}, recipient={_py(recipient)}, sender={_py(SENDER)})",
            "print(result.messages if result.errors is None else (result.errors, result.message))",
        ])),
    ]


def _credential(sid: str, token: str) -> list[str]:
    return [f"SID = {_py(sid)}", f"TOKEN = {_py(token)}", ""]


def _py(text: str) -> str:
    """A Python string literal (JSON's double-quoted form is one)."""
    return json.dumps(text, ensure_ascii=False)
