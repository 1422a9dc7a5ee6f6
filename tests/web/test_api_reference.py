"""The API reference at /api/docs reads in the page's language (headings, descriptions and field
explanations; paths, names and examples unchanged) and lists each operation's answers in status
order. The JSON document stays English."""

from portal.openapi import document
from tests.helpers import PageClient

JA = {"Accept-Language": "ja"}
EN = {"Accept-Language": "en"}


def reference(app, headers):
    return PageClient(app.test_client(), app).page("/api/docs", headers=headers)


def answer_codes(page) -> list[list[str]]:
    return [[item.code.get_text() for item in operation.select("h3 + ul")[-1].select("li")]
            for operation in page.select("article.operation")]


def test_the_reference_reads_in_japanese(app):
    page = reference(app, JA)
    text = page.get_text(" ", strip=True)
    assert page.h1.get_text(strip=True) == "APIリファレンス"
    for japanese in ["SMSを送信", "過去90日間に送信したメッセージ", "クレジットが不足しています。", "レスポンス",
                     "E.164形式（例：+819012345678）", "読み上げるテキスト（またはrecording_urlを指定）。1,000文字以内",
                     "ステータスコールバック", "クエリ文字列", "必須"]:
        assert japanese in text, japanese
    for unchanged in ["/sms/messages/", "Idempotency-Key", "sent_date", "recipient", "+819012345678"]:
        assert unchanged in text
    assert "Send an SMS" not in text and "Not enough credit." not in text
    items = [item.get_text() for item in page.select("article.operation li")]
    assert "recipient（必須）：E.164形式（例：+819012345678）。国内形式の番号も指定できます。" in items
    assert any(item.startswith("Idempotency-Key（ヘッダー）：同じキーで再試行すると") for item in items)


def test_the_reference_reads_in_english(app):
    text = reference(app, EN).get_text(" ", strip=True)
    assert "Send an SMS" in text and "Not enough credit." in text and "SMSを送信" not in text
    assert "sent_date (query string): A day (2026-10-31)" in text


def test_answers_are_listed_in_status_order_in_both_languages(app):
    for headers in (JA, EN):
        codes = answer_codes(reference(app, headers))
        assert len(codes) == 9 and all(c == sorted(c) for c in codes), codes
        assert codes[0] == ["201", "400", "401", "402", "403", "422", "429", "503"]


def test_the_json_document_stays_english_and_in_status_order(app):
    spec = app.test_client().get("/api/openapi.json").get_json()
    send = spec["paths"]["/sms/messages/"]["post"]
    assert send["summary"] == "Send an SMS" and send["responses"]["402"]["description"] == "Not enough credit."
    assert list(document("http://x")["paths"]["/sms/messages/"]["post"]["responses"]) == sorted(send["responses"])
