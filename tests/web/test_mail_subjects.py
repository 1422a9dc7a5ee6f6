"""Every mail's subject starts with the same prefix in both languages, written in one place
(portal.mail.SUBJECT_PREFIX); the subject templates never repeat the product's name."""

from datetime import date
from types import SimpleNamespace

import pytest

from portal.config import ROOT
from flask_babel import force_locale

from portal.mail import SUBJECT_PREFIX, rendered_subject

SUBJECTS = sorted(path.name.removesuffix(".subject.txt") for path in (ROOT / "templates" / "mail").glob("*.subject.txt"))
CONTEXT = {"inviter": SimpleNamespace(name="Olivia Owner"), "account": SimpleNamespace(name="Acme"),
           "member": SimpleNamespace(name="Dev Member"), "purchase": SimpleNamespace(amount_yen=1000),
           "site": SimpleNamespace(display_name="Acme Shop"),
           "application": SimpleNamespace(legal_name="Acme KK"),
           "invoice": SimpleNamespace(number="P202611-000001", total_yen=1100, due_on=date(2026, 12, 31)),
           "contract": SimpleNamespace(limit_yen=100000), "percent": 80}


def subject(app, template: str, language: str) -> str:
    with app.test_request_context(), force_locale(language):
        return rendered_subject(template, CONTEXT)


@pytest.mark.parametrize("language", ["en", "ja"])
@pytest.mark.parametrize("template", SUBJECTS)
def test_every_subject_has_the_one_prefix(app, template, language):
    text = subject(app, template, language)
    rest = text.removeprefix(SUBJECT_PREFIX)
    assert text.startswith(SUBJECT_PREFIX) and rest.strip() == rest and rest
    assert "Chotto" not in rest and "【" not in rest


def test_the_prefix_is_the_same_in_both_languages(app):
    assert subject(app, "verify_email", "en") == "[Chotto] Confirm your e-mail address"
    assert subject(app, "verify_email", "ja") == "[Chotto] メールアドレスのご確認"
    assert len(SUBJECTS) >= 11
