"""Pages show codes as words and numbers as people read them: scopes and modes by name in the
page's language, Japanese phone numbers in the national form, dates the Japanese way."""

from datetime import datetime, timezone

from flask import render_template_string
from flask_babel import force_locale

from portal.web.labels import MESSAGE_STATUS_LABELS, SCOPE_LABELS
from tests.helpers import PageClient, make_user

NEW = {"name": "production web", "mode": "live", "scopes": ["sms", "voice", "read"], "networks": "", "monthly_cap": ""}
JA = {"Accept-Language": "ja"}


def signed_in(app, language="ja"):
    make_user(app, "owner@example.com", phone="+819012345678", language=language)
    client = PageClient(app.test_client(), app)
    client.login("owner@example.com")
    client.post(f"/language/{language}", {"next": "/dashboard"}, status=302)
    return client


def test_scopes_and_modes_are_words_in_japanese(app):
    client = signed_in(app)
    client.post("/credentials", NEW, status=200)
    row = client.page("/credentials").select_one("tbody tr").get_text(" ", strip=True)
    badge = client.page("/credentials").select_one("tbody .mode-badge").get_text(strip=True)
    assert "SMS、音声通話、読み取り" in row and "sms, voice" not in row and badge == "本番"


def test_a_japanese_number_is_shown_in_the_national_form(app):
    client = signed_in(app)
    assert "090-1234-5678" in client.text("/profile/") and "+819012345678" not in client.text("/profile/")
    assert "携帯電話番号の確認完了：090-1234-5678" in client.text("/dashboard")


def test_dates_on_japanese_pages_are_written_the_japanese_way(app):
    moment = datetime(2026, 11, 30, 15, 5, tzinfo=timezone.utc)
    with app.test_request_context(), force_locale("ja"):
        assert render_template_string("{{ moment|jst }}", moment=moment) == "2026年12月1日 0:05"
        assert render_template_string("{{ moment|jst_date }}", moment=moment) == "2026年12月1日"
    with app.test_request_context(), force_locale("en"):
        assert render_template_string("{{ moment|jst_date }}", moment=moment) == "December 1, 2026"


def test_every_scope_and_message_status_has_a_label():
    assert set(SCOPE_LABELS) == {"sms", "voice", "otp", "read"}
    assert {"QUEUED", "DELIVERING", "DELIVERED", "FAIL"} <= set(MESSAGE_STATUS_LABELS)


def test_a_japanese_postal_code_is_kept_with_its_hyphen_and_shown_with_its_mark(app):
    client = signed_in(app)
    profile = {"legal_name": "Example KK", "postal_code": "１５００００１", "address": "東京都渋谷区神南1-2-3",
               "billing_email": "finance@example.com", "tax_residency": "JP", "registration_number": ""}
    client.post("/billing/profile", profile, status=302)
    assert client.page("/billing/profile").select_one("input[name=postal_code]")["value"] == "150-0001"
    address = client.page("/credit/buy/confirm?amount=1000").select_one("[data-testid=recipient-address]")
    assert address.get_text(strip=True) == "〒150-0001 東京都渋谷区神南1-2-3"


def test_labels_and_notes_take_full_width_marks_on_japanese_pages(app):
    client = signed_in(app)

    def lines():
        page = client.page("/profile/")
        return [" ".join(element.get_text("").split()) for element in page.select("main p, main td")]

    assert "メールアドレス：owner@example.com" in lines()
    assert any(line.startswith("携帯電話番号：090-1234-5678（確認済み）") for line in lines())
    assert any(line.endswith("（このブラウザ）") for line in lines())
    client.post("/language/en", {"next": "/profile/"}, status=302)
    assert any(line.startswith("Mobile number: 090-1234-5678 (verified)") for line in lines())
