"""Japanese pages put no half-width space beside Japanese text where templates join pieces (a
sentence and the next, a sentence and its link): 「お支払い）。 お支払い」 is the slip this catches.
The catalog's own strings are held to the same rule by tests/unit/test_japanese_catalog.py."""

import re

from bs4 import BeautifulSoup

from tests.helpers import PageClient, make_user
from tests.japanese_style import JP

STRAY = re.compile(f"{JP} +{JP}|[。、）」：] +[^\\s·|]")
TEXT_BLOCKS = "p, dd, dt, h1, h2, h3, figcaption, label, th, li"
PROFILE = {"legal_name": "株式会社サンプル", "postal_code": "1500001", "address": "東京都渋谷区神宮前1-2-3",
           "billing_email": "finance@example.com", "tax_residency": "JP", "registration_number": ""}
CREDENTIAL = {"name": "本番Webサーバー", "mode": "live", "scopes": ["sms", "read"], "networks": "", "monthly_cap": ""}
PAGES = ["/dashboard", "/credentials", "/credit/buy", "/credit/buy/confirm?amount=1000", "/billing/profile",
         "/billing/invoices", "/team", "/test-inbox", "/profile/", "/pricing", "/legal/commercial-transactions",
         "/api/docs"]


def strays(html: str) -> list[str]:
    soup = BeautifulSoup(html, "html.parser")
    for line_break in soup.select("br"):
        line_break.replace_with("|")
    for button in soup.select("button, a[role=button]"):  # side by side, each its own box
        button.insert_before("|")
        button.insert_after("|")
    found = []
    for block in soup.select("main"):
        for element in block.select(TEXT_BLOCKS):
            if element.select_one("ul, ol, form, table, p, div"):
                continue  # a container: its own blocks are checked one by one
            text = " ".join(element.get_text("").split())
            found += [f"{element.name}: …{text[max(0, m.start() - 15):m.end() + 15]}…" for m in STRAY.finditer(text)]
    return found


def test_the_check_finds_a_stray_space():
    assert strays("<main><p>お支払い）。 <a>お支払い</a></p></main>")
    assert not strays("<main><p>お支払い）。<a>お支払い</a><br>〒150-0001 東京都</p></main>")
    assert not strays('<main><p><a role="button">新規登録</a> <a role="button">料金を見る</a></p></main>')


def test_japanese_pages_have_no_stray_spaces(app):
    make_user(app, "owner@example.com", phone="+819012345678", language="ja")
    client = PageClient(app.test_client(), app)
    client.login("owner@example.com")
    client.post("/language/ja", {"next": "/dashboard"}, status=302)
    client.post("/billing/profile", PROFILE, status=302)
    client.post("/credentials", CREDENTIAL, status=200)
    found = {path: strays(client.get(path).get_data(as_text=True)) for path in PAGES}
    assert {path: lines for path, lines in found.items() if lines} == {}


def test_signed_out_japanese_pages_have_no_stray_spaces(client):
    for path in ["/", "/login", "/signup"]:
        assert strays(client.get(path, headers={"Accept-Language": "ja"}).get_data(as_text=True)) == [], path
