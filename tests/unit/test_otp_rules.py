"""Pure rules of OTP sites with a fixed clock: no app, no database."""

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from portal.messaging.errors import InvalidField, InvalidFields
from portal.otp import rules
from portal.otp.errors import Failure
from portal.otp.models import CodeStatus, TemplateLanguage

NOW = datetime(2026, 12, 1, 3, 0, 0, tzinfo=timezone.utc)
SECRET = b"a-test-secret"


def code(status=CodeStatus.ACTIVE, failures=0, max_attempts=5, lifetime=timedelta(minutes=5), sent=NOW):
    return rules.CodeState(status, failures, max_attempts, sent + lifetime)


@pytest.mark.parametrize("given, domain", [
    ("https://Example.com", "example.com"), ("example.com", "example.com"), ("http://shop.example.co.jp/login?x=1",
    "shop.example.co.jp"), ("https://例え.jp/", "xn--r8jz45g.jp"), ("EXAMPLE.COM.", "example.com"),
    ("http://localhost:8000", "localhost"),
])
def test_a_website_is_registered_by_its_domain(given, domain):
    assert rules.domain_of(given) == domain


@pytest.mark.parametrize("given", ["", "   ", "not a domain", "https://", "example", "http://exa_mple.com", "http://[",
                                   "[::1", "a" * 64 + ".com", "xn--.com", "\u3000"])
def test_what_is_not_a_website_is_refused_naming_the_field(given):
    with pytest.raises(InvalidField) as refused:
        rules.domain_of(given)
    assert refused.value.field == "website"


@pytest.mark.parametrize("length", range(4, 9))
def test_codes_have_the_sites_length_in_digits_and_vary(length):
    codes = {rules.new_code(length) for _ in range(50)}
    assert all(len(c) == length and c.isdigit() for c in codes) and len(codes) > 40


def test_a_code_is_stored_as_a_keyed_hash_bound_to_its_request():
    stored = rules.code_hash(SECRET, "msg1", "123456")
    assert "123456" not in stored and len(stored) == 64
    assert rules.matches(SECRET, "msg1", " 123456 ", stored)
    assert not rules.matches(SECRET, "msg1", "123457", stored)
    assert not rules.matches(SECRET, "msg2", "123456", stored)  # the same code of another request
    assert not rules.matches(b"another-secret", "msg1", "123456", stored)


def test_a_code_is_valid_until_the_second_before_its_lifetime_ends():
    five = code(lifetime=timedelta(minutes=5))
    assert rules.refusal(five, NOW + timedelta(minutes=5) - timedelta(seconds=1)) is None
    assert rules.refusal(five, NOW + timedelta(minutes=5)) == Failure.EXPIRED
    assert rules.refusal(five, NOW + timedelta(minutes=5, seconds=1)) == Failure.EXPIRED


def test_the_longest_default_friendly_lifetime_meets_s17_at_ten_minutes_and_one_second():
    ten = code(lifetime=timedelta(minutes=10))
    assert rules.refusal(ten, NOW + timedelta(minutes=9, seconds=59)) is None
    assert rules.refusal(ten, NOW + timedelta(minutes=10, seconds=1)) == Failure.EXPIRED


def test_attempts_are_used_up_by_wrong_codes():
    assert rules.refusal(code(failures=4, max_attempts=5), NOW) is None
    assert rules.refusal(code(failures=5, max_attempts=5), NOW) == Failure.TOO_MANY_ATTEMPTS
    assert rules.refusal(code(status=CodeStatus.LOCKED, failures=5), NOW) == Failure.TOO_MANY_ATTEMPTS


def test_a_code_is_used_once():
    assert rules.refusal(code(status=CodeStatus.VERIFIED), NOW) == Failure.ALREADY_USED
    assert rules.refusal(code(status=CodeStatus.VERIFIED), NOW + timedelta(hours=1)) == Failure.ALREADY_USED


def test_a_replaced_code_or_none_at_all_is_no_active_code():
    assert rules.refusal(None, NOW) == Failure.NO_ACTIVE_CODE
    assert rules.refusal(code(status=CodeStatus.REPLACED), NOW) == Failure.NO_ACTIVE_CODE


def test_a_new_code_keeps_the_wrong_attempts_of_the_one_it_replaces():
    assert rules.carried_failures(code(failures=3), NOW, NOW + timedelta(minutes=1)) == 3
    assert rules.carried_failures(code(status=CodeStatus.LOCKED, failures=5), NOW, NOW + timedelta(minutes=9)) == 5
    assert rules.carried_failures(code(failures=3, lifetime=timedelta(minutes=1)), NOW, NOW + timedelta(minutes=2)) == 3


def test_failures_are_forgotten_after_a_verification_or_ten_minutes():
    assert rules.carried_failures(code(status=CodeStatus.VERIFIED, failures=2), NOW, NOW + timedelta(minutes=1)) == 0
    assert rules.carried_failures(code(failures=4), NOW, NOW + timedelta(minutes=10)) == 0
    assert rules.carried_failures(None, None, NOW) == 0


def test_the_resend_cooldown_counts_whole_seconds_down():
    assert rules.cooldown_left(None, 30, NOW) == 0
    assert rules.cooldown_left(NOW, 30, NOW) == 30
    assert rules.cooldown_left(NOW, 30, NOW + timedelta(seconds=29, milliseconds=500)) == 1
    assert rules.cooldown_left(NOW, 30, NOW + timedelta(seconds=30)) == 0
    assert rules.cooldown_left(NOW, 0, NOW) == 0


def test_the_default_templates_fit_one_segment_with_the_longest_code():
    for language, template in rules.DEFAULT_TEMPLATES.items():
        split = rules.template_parts(template, site="Example Shop", code_length=8, minutes=30)
        assert split.parts == 1
    assert rules.checked(rules.default_settings("Example Shop", TemplateLanguage.EN))


@pytest.mark.parametrize("template, problem", [
    ("Your code for {site}", "must contain {code}"),
    ("Code {code} for {user}", "only the placeholders"),
    ("Code {code:>8}", "only the placeholders"),
    ("Code {code} {", "only the placeholders"),
    ("{code}" + "あ" * 63, "one SMS segment"),
    ("{code}" + "a" * 153, "one SMS segment"),
])
def test_a_template_names_the_code_and_fits_one_segment(template, problem):
    with pytest.raises(InvalidField) as refused:
        rules.template_parts(template, site="Shop", code_length=8, minutes=5)
    assert refused.value.field == "template" and problem in refused.value.reason


def test_a_template_just_fitting_one_segment_is_accepted():
    assert rules.template_parts("{code}" + "あ" * 62, site="", code_length=8, minutes=5).parts == 1
    assert rules.template_parts("{code}" + "a" * 152, site="", code_length=8, minutes=5).parts == 1


def test_rendering_fills_the_three_placeholders():
    text = rules.render(rules.DEFAULT_TEMPLATES[TemplateLanguage.JA], code="012345", site="ちょっと商店", minutes=5)
    assert text == "ちょっと商店の認証コードは012345です。5分以内に入力してください。"


def test_settings_out_of_range_are_all_named_at_once():
    bad = replace(rules.default_settings("Shop"), code_length=3, lifetime_minutes=31, max_attempts=0,
                  resend_cooldown_seconds=-1, per_number_limit=6, allowed_countries=(), template="no code")
    with pytest.raises(InvalidFields) as refused:
        rules.checked(bad)
    assert set(refused.value.errors) == {"code_length", "lifetime_minutes", "max_attempts", "resend_cooldown_seconds",
                                         "per_number_limit", "allowed_countries", "template"}


def test_settings_at_their_bounds_are_accepted():
    for low_or_high in (0, -1):
        values = {name: bounds[low_or_high] for name, bounds in rules.RANGES.items()}
        assert rules.checked(replace(rules.default_settings("Shop", TemplateLanguage.EN), **values))


def test_the_defaults_meet_s17():
    defaults = rules.default_settings("Shop")
    assert defaults.code_length == 6 and defaults.lifetime_minutes <= 10 and defaults.max_attempts <= 5


# -- fraud guards -------------------------------------------------------------------------------


def sends(count, every=timedelta(seconds=1), start=NOW):
    return [start + every * i for i in range(count)]


def test_the_sixth_send_to_a_number_within_ten_minutes_is_refused_until_the_first_leaves_the_window():
    five = sends(5, every=timedelta(minutes=1))
    now = NOW + timedelta(minutes=5)
    assert rules.over_limit(five[:4], limit=5, window=rules.NUMBER_WINDOW, now=now) is None
    assert rules.over_limit(five, limit=5, window=rules.NUMBER_WINDOW, now=now) == 300
    assert rules.over_limit(five, limit=5, window=rules.NUMBER_WINDOW, now=NOW + timedelta(minutes=10)) is None


def test_the_per_ip_limit_counts_an_hour():
    ten = sends(10, every=timedelta(minutes=1))
    assert rules.over_limit(ten, limit=10, window=rules.IP_WINDOW, now=NOW + timedelta(minutes=59)) == 60
    assert rules.over_limit(ten, limit=10, window=rules.IP_WINDOW, now=NOW + timedelta(minutes=60)) is None


def test_a_hundred_requests_to_numbers_sharing_a_prefix_send_at_most_twenty():
    numbers = [f"+81901234{n:04d}" for n in range(100)]
    assert {rules.prefix_of(number) for number in numbers} == {"+81901234"}
    sent: list[datetime] = []
    for i, number in enumerate(numbers):
        now = NOW + timedelta(seconds=i)
        if rules.over_limit(sent, limit=rules.PREFIX_LIMIT, window=rules.PREFIX_WINDOW, now=now) is None:
            sent.append(now)
    assert len(sent) == 20


def test_a_site_is_paused_below_twenty_percent_over_at_least_fifty_decided_codes():
    assert not rules.should_pause(49, 0)
    assert rules.should_pause(50, 9)
    assert not rules.should_pause(50, 10)
    assert rules.should_pause(200, 0)
    assert not rules.should_pause(200, 40)


# -- logs and statistics ------------------------------------------------------------------------


@pytest.mark.parametrize("status, message, later, expected", [
    (CodeStatus.VERIFIED, "DELIVERED", 0, "verified"), (CodeStatus.ACTIVE, "FAIL", 0, "failed"),
    (CodeStatus.LOCKED, "DELIVERED", 0, "failed"), (CodeStatus.REPLACED, "DELIVERED", 0, "replaced"),
    (CodeStatus.ACTIVE, "DELIVERED", 5, "expired"), (CodeStatus.ACTIVE, "DELIVERED", 4, "delivered"),
    (CodeStatus.ACTIVE, "QUEUED", 0, "sent"), (CodeStatus.ACTIVE, None, 0, "sent"),
])
def test_each_request_has_one_status_in_the_log(status, message, later, expected):
    assert rules.outcome(status, NOW + timedelta(minutes=5), message, NOW + timedelta(minutes=later)) == expected


def test_statistics_count_by_japan_day():
    late = datetime(2026, 12, 1, 14, 59, tzinfo=timezone.utc)  # 23:59 in Japan
    early = late + timedelta(minutes=2)  # the next day there
    sent = [rules.Sent(late, "verified", True, False, 3000), rules.Sent(late, "expired", True, True, 13000),
            rules.Sent(late, "failed", False, False, 0), rules.Sent(early, "delivered", True, False, 3000)]
    today, yesterday = rules.by_day(sent, [early, early])
    assert (yesterday.day.isoformat(), yesterday.requests, yesterday.delivered, yesterday.verified,
            yesterday.fallback_calls, yesterday.cost, yesterday.completion_percent) == ("2026-12-01", 3, 2, 1, 1, 16000,
                                                                                        33)
    assert (today.day.isoformat(), today.requests, today.blocked, today.completion_percent) == ("2026-12-02", 1, 2, 0)
    assert rules.by_day([], [early])[0].completion_percent is None


def test_a_spoken_code_is_masked_digit_by_digit_and_the_rest_kept():
    for language in TemplateLanguage:
        spoken = rules.spoken("0427", site="Shop 24", language=language)
        masked = rules.masked_spoken(spoken)
        assert "0" not in masked and "Shop 24" in masked and masked.count("*") == 8
    assert rules.masked("012345") == "******"
