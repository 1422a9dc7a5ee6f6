from babel.messages.pofile import read_po

from portal.config import ROOT


def test_japanese_browsers_get_japanese_and_others_english(client):
    assert "アカウントを作成" in client.text("/signup", headers={"Accept-Language": "ja,en;q=0.5"})
    assert "Create account" in client.text("/signup", headers={"Accept-Language": "fr-FR,de;q=0.8"})
    assert client.page("/signup", headers={"Accept-Language": "ja"}).html["lang"] == "ja"


def test_the_language_switch_sticks_for_the_session(client):
    client.post("/language/ja", {"next": "/pricing"}, status=302)
    assert "料金" in client.text("/pricing", headers={"Accept-Language": "en"})
    client.post("/language/en", {"next": "/pricing"}, status=302)
    assert "Pricing" in client.text("/pricing", headers={"Accept-Language": "ja"})


def test_the_language_switch_only_returns_to_local_pages(client):
    response = client.post("/language/ja", {"next": "https://evil.example/"}, status=302)
    assert response.headers["Location"] == "/"
    client.post("/language/xx", status=400)


def test_the_japanese_catalog_translates_every_message():
    with open(ROOT / "translations" / "ja" / "LC_MESSAGES" / "messages.po", "rb") as handle:
        catalog = read_po(handle)
    with open(ROOT / "translations" / "messages.pot", "rb") as handle:
        template = read_po(handle)
    missing = [m.id for m in template if m.id and (m.id not in catalog or not catalog[m.id].string)]
    assert missing == []
    fuzzy = [m.id for m in catalog if m.id and m.fuzzy]
    assert fuzzy == []


def test_the_catalog_template_is_up_to_date():
    """Run `make translations-extract` after changing user-facing text."""
    from babel.messages.extract import extract_from_dir

    method_map = [("portal/**.py", "python"), ("templates/**.html", "jinja2"), ("templates/**.txt", "jinja2")]
    keywords = {"_": None, "gettext": None, "_l": None, "lazy_gettext": None, "ngettext": (1, 2)}
    found = {message for _, _, message, _, _ in extract_from_dir(str(ROOT), method_map, keywords=keywords)}
    with open(ROOT / "translations" / "messages.pot", "rb") as handle:
        known = {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(handle) if m.id}  # plurals: (one, other)
    assert {m if isinstance(m, str) else m[0] for m in found} <= known
