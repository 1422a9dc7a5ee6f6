"""The usage history over real tables on both engines: each filter, totals, masking by role,
keyset paging (ties on time included), the CSV's bytes, Japan-time day boundaries and the
purge's 13-month boundary. Rows are written straight into sms_messages and voice_calls (the
rollup follows through the triggers); test_usage_paths.py drives the real send paths."""

import csv
import io
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, text, update

from portal import db
from portal.formats import csv_cell
from portal.accounts.models import Account
from portal.messaging.api_models import CallbackAttempt
from portal.otp import rules as otp_rules
from portal.otp.models import OtpCode, OtpTally
from portal.usage import rules, service
from portal.usage.models import UsageDay
from portal.usage.rules import Filters, InvalidFilter
from tests.usage_rows import CALLS, MESSAGES, NOVEMBER, NOW, World, call, jst, message


@pytest.fixture
def world(app, session):
    return World(app, session)


def rows_of(session, world, filters=NOVEMBER, **kwargs):
    return service.page(session, account_id=world.account_id, filters=filters, after=None, role="owner", now=NOW,
                        **kwargs).rows


# -- filters and totals ------------------------------------------------------------------------------


@pytest.fixture
def mixed(session, world):
    """One row of each kind in November, plus a test message and a refunded failure."""
    return {
        "sms": message(session, world, jst(2026, 11, 2, 9), tags="campaign,キャンペーン", segments=2, cost=6000),
        "otp": message(session, world, jst(2026, 11, 3, 9), product="otp", site=world.site, cost=3000),
        "voice": call(session, world, jst(2026, 11, 4, 9), duration=61, cost=40_000),
        "otp_call": call(session, world, jst(2026, 11, 5, 9), product="otp_call", site=world.site, duration=20,
                         cost=20_000),
        "test": message(session, world, jst(2026, 11, 6, 9), credential="staging", cost=0, country="US",
                        recipient="+14155550123"),
        "failed": message(session, world, jst(2026, 11, 7, 9), status="FAIL", refunded=True, cost=3000),
    }


@pytest.mark.parametrize("field, value, expected", [
    ("product", "otp", {"otp"}),
    ("product", "voice", {"voice"}),
    ("product", "otp_call", {"otp_call"}),
    ("status", "FAIL", {"failed"}),
    ("status", "ANSWERED", {"voice", "otp_call"}),
    ("country", "US", {"test"}),
    ("tag", "キャンペーン", {"sms"}),
    ("tag", "campaign", {"sms"}),
    ("tag", "Campaign", set()),
    ("mode", "test", {"test"}),
    ("mode", "live", {"sms", "otp", "voice", "otp_call", "failed"}),
])
def test_each_filter_keeps_only_the_matching_rows_and_the_totals_follow(session, world, mixed, field, value,
                                                                         expected):
    filters = Filters(start=NOVEMBER.start, end=NOVEMBER.end, **{field: value})
    assert {row.ref for row in rows_of(session, world, filters)} == {mixed[name] for name in expected}
    totals = service.totals(session, account_id=world.account_id, filters=filters)
    assert totals.count == len(expected)
    costs = {"sms": 6000, "otp": 3000, "voice": 40_000, "otp_call": 20_000, "test": 0, "failed": 0}
    assert totals.cost == sum(costs[name] for name in expected)


def test_credential_and_site_filters(session, world, mixed):
    by_site = Filters(start=NOVEMBER.start, end=NOVEMBER.end, site_id=world.site)
    assert {row.ref for row in rows_of(session, world, by_site)} == {mixed["otp"], mixed["otp_call"]}
    by_credential = Filters(start=NOVEMBER.start, end=NOVEMBER.end, credential_id=world.staging)
    assert [row.ref for row in rows_of(session, world, by_credential)] == [mixed["test"]]
    assert service.totals(session, account_id=world.account_id, filters=by_site).cost == 23_000


def test_totals_count_segments_seconds_billed_minutes_and_net_cost(session, world, mixed):
    totals = service.totals(session, account_id=world.account_id, filters=NOVEMBER)
    assert (totals.count, totals.segments, totals.seconds, totals.minutes) == (6, 2 + 1 + 1 + 1, 81, 2 + 1)
    assert totals.cost == 6000 + 3000 + 40_000 + 20_000  # the test row costs nothing, the refunded failure 0
    tagged = service.totals(session, account_id=world.account_id,
                            filters=Filters(start=NOVEMBER.start, end=NOVEMBER.end, tag="campaign"))
    assert (tagged.count, tagged.segments, tagged.cost) == (1, 2, 6000)


def test_daily_lists_every_day_with_zeros_and_the_breakdowns_name_credentials_and_sites(session, world, mixed):
    days = service.daily(session, account_id=world.account_id, filters=NOVEMBER)
    assert [day.day for day in days] == [date(2026, 11, 1) + timedelta(days=n) for n in range(30)]
    assert [(day.count, day.cost) for day in days[:8]] == [(0, 0), (1, 6000), (1, 3000), (1, 40_000), (1, 20_000),
                                                          (1, 0), (1, 0), (0, 0)]
    tagged = service.daily(session, account_id=world.account_id,
                           filters=Filters(start=NOVEMBER.start, end=NOVEMBER.end, tag="campaign"))
    assert [(day.day, day.cost) for day in tagged if day.count] == [(date(2026, 11, 2), 6000)]
    shares = service.breakdown(session, account_id=world.account_id, filters=NOVEMBER)
    assert [(share.name, share.count, share.cost) for share in shares.by_credential] == [
        ("Shop", 5, 69_000), ("Staging", 1, 0)]
    assert [(share.name, share.count, share.cost) for share in shares.by_site] == [("Example", 2, 23_000)]


def test_a_message_sent_by_chotto_has_no_credential(session, world):
    message(session, world, jst(2026, 11, 2, 9), credential=None, cost=0)
    [row] = rows_of(session, world)
    assert row.credential_id is None and row.credential_name is None
    [share] = service.breakdown(session, account_id=world.account_id, filters=NOVEMBER).by_credential
    assert share.id is None and share.count == 1


def test_japan_time_days_bound_every_range(session, world):
    last_moment = jst(2026, 10, 31, 23, 59, 59, 999000)
    message(session, world, last_moment, cost=1000)
    message(session, world, jst(2026, 11, 1, 0, 0, 0), cost=2000)
    october = Filters(start=date(2026, 10, 1), end=date(2026, 10, 31))
    assert [row.created_at for row in rows_of(session, world, october)] == [last_moment]
    assert service.totals(session, account_id=world.account_id, filters=october).cost == 1000
    assert service.totals(session, account_id=world.account_id, filters=NOVEMBER).cost == 2000
    assert service.daily(session, account_id=world.account_id, filters=october)[-1].cost == 1000
    tagged = Filters(start=october.start, end=october.end, tag="x")
    assert service.totals(session, account_id=world.account_id, filters=tagged).count == 0
    statement = service.monthly_statement(session, account_id=world.account_id, month=date(2026, 10, 15))
    assert statement.amount == 1000


# -- the list -----------------------------------------------------------------------------------------


def test_keyset_pages_walk_every_row_once_newest_first_even_when_many_share_a_time(session, world):
    same = jst(2026, 11, 10, 12)
    expected = [message(session, world, same) for _ in range(7)] + [call(session, world, same) for _ in range(5)]
    expected += [message(session, world, same - timedelta(seconds=1)), call(session, world, same + timedelta(seconds=1))]
    seen, after = [], None
    while True:
        page = service.page(session, account_id=world.account_id, filters=NOVEMBER, after=after, limit=4,
                            role="owner", now=NOW)
        seen += page.rows
        if page.next is None:
            break
        after = page.next
    assert sorted(row.ref for row in seen) == sorted(expected)
    assert len(seen) == len(expected)
    keys = [(row.created_at, row.kind in ("sms", "otp"), row.ref) for row in seen]  # messages first at a tie
    assert keys == sorted(keys, key=lambda key: (key[0], key[1]), reverse=True)


def test_a_tampered_cursor_is_an_invalid_filter(session, world):
    for cursor in ("garbage", "eyJ4IjogMX0", rules.cursor_of(rules.Position(NOW, "m", 1))[:-3] + "!!!"):
        with pytest.raises(InvalidFilter) as refused:
            service.page(session, account_id=world.account_id, filters=NOVEMBER, after=cursor, role="owner", now=NOW)
        assert refused.value.field == "after"


def test_lists_mask_numbers_for_every_role_and_the_detail_shows_them_to_owners_and_developers(session, world):
    msgid = message(session, world, jst(2026, 11, 2, 9))
    [row] = rows_of(session, world)
    assert row.recipient == "•••••••••5678"
    for role, shown in (("owner", "+819012345678"), ("developer", "+819012345678"), ("billing", "•••••••••5678")):
        detail = service.detail(session, account_id=world.account_id, kind="sms", ref=msgid, role=role)
        assert detail.recipient == shown and detail.row.recipient == "•••••••••5678"
        assert (detail.body is None) == (role == "billing")


def test_the_detail_is_only_the_accounts_own(app, session, world):
    msgid = message(session, world, jst(2026, 11, 2, 9))
    other = World(app, session, email="other@example.com")
    assert service.detail(session, account_id=other.account_id, kind="sms", ref=msgid, role="owner") is None
    assert rows_of(session, other) == []


def test_the_detail_shows_the_timeline_and_the_callbacks_answers(session, world):
    msgid = message(session, world, jst(2026, 11, 2, 9), status="FAIL", refunded=True)
    with db.write(session):
        session.execute(update(MESSAGES).where(MESSAGES.c.msgid == msgid).values(
            handed_at=jst(2026, 11, 2, 9, 0, 1), updated_at=jst(2026, 11, 2, 9, 0, 2),
            refunded_at=jst(2026, 11, 2, 9, 0, 2)))
        session.add_all([CallbackAttempt(account_id=world.account_id, ref=msgid, event="FAIL", url="https://x.test/cb",
                                         status_code=500, attempted_at=jst(2026, 11, 2, 9, 0, 3)),
                         CallbackAttempt(account_id=world.account_id, ref=msgid, event="FAIL", url="https://x.test/cb",
                                         status_code=200, attempted_at=jst(2026, 11, 2, 9, 1))])
    detail = service.detail(session, account_id=world.account_id, kind="sms", ref=msgid, role="owner")
    assert [step.event for step in detail.timeline] == ["created", "handed_to_carrier", "failed", "refunded"]
    assert [(answer.status_code, answer.event) for answer in detail.callbacks] == [(500, "FAIL"), (200, "FAIL")]
    assert (detail.charged, detail.refunded, detail.row.cost) == (3000, 3000, 0)


# -- the CSV ------------------------------------------------------------------------------------------


def exported(app, world, filters=NOVEMBER) -> bytes:
    with app.app_context():
        return b"".join(service.export(db.job_session, account_id=world.account_id, filters=filters))


def test_the_csv_starts_with_a_bom_and_a_header_and_round_trips_japanese_tags_in_japan_time(app, session, world):
    message(session, world, jst(2026, 11, 2, 0, 30), tags="=HYPERLINK(\"x\"),キャンペーン", cost=3500)
    call(session, world, jst(2026, 11, 3, 23, 59, 59))
    assert exported(app, world).startswith("\ufeffTime (Japan),Product,ID,".encode())
    with db.write(session):
        session.execute(update(Account).where(Account.id == world.account_id).values(language="ja"))
    body = exported(app, world)
    assert body.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert table[0][0] == "日時（日本時間）"  # the header speaks the account's language
    first, second = table[1], table[2]
    assert first[0] == "2026-11-02 00:30:00" and second[0] == "2026-11-03 23:59:59"
    assert first[10] == "3.500" and first[5] == "•••••••••5678" and first[3] == "Shop"
    assert first[11] == "'=HYPERLINK(\"x\"),キャンペーン"
    assert first[11][1:].split(",")[1] == "キャンペーン"


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_every_formula_start_is_neutralised(start):
    assert csv_cell(f"{start}1+1") == f"'{start}1+1"
    assert csv_cell("plain") == "plain"


def test_the_export_leaves_the_callers_session_usable_while_it_streams(app, session, world):
    for n in range(5):
        message(session, world, jst(2026, 11, 2, 9, n))
    with app.app_context():
        stream = service.export(db.job_session, account_id=world.account_id, filters=NOVEMBER)
        first = next(stream)
        assert service.totals(session, account_id=world.account_id, filters=NOVEMBER).count == 5
        rest = b"".join(stream)
    assert first.startswith(b"\xef\xbb\xbf") and rest.count(b"\r\n") == 5


def _open_transactions(app) -> list[str]:
    """The states of the test database's other backends that sit inside a transaction."""
    with app.extensions["portal.engine"].connect() as connection:
        return list(connection.execute(text(
            "SELECT state FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND state LIKE 'idle in transaction%'")).scalars())


@pytest.mark.postgresql
def test_a_half_read_export_holds_no_transaction_and_the_file_is_complete_with_rows_added_meanwhile_left_out(
        app, session, world):
    same = jst(2026, 11, 10, 12)  # ties across both tables at one instant, and around it
    expected = [message(session, world, same - timedelta(seconds=1))]
    expected += [call(session, world, same) for _ in range(3)] + [message(session, world, same) for _ in range(4)]
    for n in range(1, 8):
        expected.append(message(session, world, same + timedelta(minutes=n)))
        if n <= 4:
            expected.append(call(session, world, same + timedelta(minutes=n, seconds=30)))
    late = message(session, world, jst(2026, 11, 20, 9), status="DELIVERING")
    expected.append(late)
    session.commit()
    with app.app_context():
        stream = service.export(db.job_session, account_id=world.account_id, filters=NOVEMBER, batch=4)
        chunks = [next(stream), next(stream), next(stream)]  # the header and two batches of four
        assert _open_transactions(app) == []
        added = message(session, world, jst(2026, 11, 20, 10))  # after the export began: left out
        with db.write(session):
            session.execute(update(MESSAGES).where(MESSAGES.c.msgid == late).values(status="DELIVERED"))
        session.commit()
        for chunk in stream:
            chunks.append(chunk)
            assert _open_transactions(app) == []
    table = list(csv.reader(io.StringIO(b"".join(chunks).decode("utf-8-sig"))))[1:]
    assert [row[2] for row in table] == expected and added not in [row[2] for row in table]
    assert len(chunks) == 1 + 5  # 20 rows in batches of four: the last batch found the end
    assert table[-1][9] == "DELIVERED"  # not read yet when it changed: its newer state


def test_the_export_reads_every_row_once_in_batches_at_any_batch_size(app, session, world):
    same = jst(2026, 11, 10, 12)
    expected = [call(session, world, same) for _ in range(2)] + [message(session, world, same) for _ in range(3)]
    expected += [message(session, world, same + timedelta(seconds=n)) for n in range(1, 4)]
    for batch in (1, 2, 3, 7, 8, 2000):
        with app.app_context():
            body = b"".join(service.export(db.job_session, account_id=world.account_id, filters=NOVEMBER,
                                           batch=batch))
        table = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
        assert [row[2] for row in table[1:]] == expected, batch


def test_the_file_name_names_the_range():
    assert service.export_filename(NOVEMBER) == "chotto-usage-2026-11-01_2026-11-30.csv"


# -- retention ----------------------------------------------------------------------------------------


def test_the_purge_deletes_rows_older_than_13_months_to_the_second_in_batches(session, world):
    boundary = rules.purge_before(NOW)
    assert boundary == jst(2025, 10, 27, 12)
    gone = [message(session, world, boundary - timedelta(seconds=1)) for _ in range(3)]
    gone.append(call(session, world, boundary - timedelta(days=30)))
    kept = [message(session, world, boundary), message(session, world, boundary + timedelta(seconds=1)),
            call(session, world, boundary + timedelta(seconds=1))]
    codes = [_code(session, world, gone[0], boundary - timedelta(seconds=1)), _code(session, world, kept[0], boundary)]
    assert service.purge(session, now=NOW, batch=2) == 5
    left = set(session.scalars(select(MESSAGES.c.msgid))) | set(session.scalars(select(CALLS.c.callid)))
    assert left == set(kept)
    assert session.scalars(select(OtpCode.msgid)).all() == [codes[1]]
    session.commit()
    old_day = rules.jst_day(boundary - timedelta(days=30))
    assert session.scalar(select(func.count()).select_from(UsageDay).where(UsageDay.day == old_day)) == 0
    assert service.totals(session, account_id=world.account_id,
                          filters=Filters(start=rules.jst_day(boundary), end=rules.jst_day(boundary))).count == 3


def _code(session, world, msgid, at) -> str:
    with db.write(session):
        session.add(OtpCode(msgid=msgid, site_id=world.site, account_id=world.account_id, credential_id=world.shop,
                            mode="live", phone_number="+819012345678", prefix="+81901234", channel="sms",
                            code_hash="h", status="replaced", max_attempts=5, created_at=at,
                            expires_at=at + timedelta(minutes=5)))
    return msgid


def _tally_hours(session) -> list:
    session.commit()
    return sorted(session.scalars(select(OtpTally.hour)))


def test_the_purge_drops_otp_tallies_once_past_the_completion_guards_window_to_the_second(session, world):
    """The guard reads the tallies from the hour its 24-hour window starts in: the tally of hour
    H is read until H + 25 h, and purged (with an hour's margin) from H + 26 h and a second."""
    newest_purged = datetime(2026, 11, 26, 1, tzinfo=timezone.utc)
    assert otp_rules.tallies_purge_before(NOW) == newest_purged
    hours = [newest_purged - timedelta(hours=n) for n in (30, 3, 2, 1, 0)] + [newest_purged + timedelta(hours=1)]
    for number, hour in enumerate(hours):
        _code(session, world, f"tally{number}", hour + timedelta(minutes=59, seconds=59))
    assert _tally_hours(session) == hours
    for moment in (NOW - timedelta(seconds=1), NOW):  # the older four go in batches of two
        service.purge(session, now=moment, batch=2)
        assert _tally_hours(session) == hours[-2:]  # the hour just past the window is still kept
    service.purge(session, now=NOW + timedelta(seconds=1), batch=2)
    assert _tally_hours(session) == hours[-1:]
    assert len(session.scalars(select(OtpCode.msgid)).all()) == len(hours)  # the codes stay 13 months


def test_a_filter_may_not_reach_past_the_retention():
    today = date(2026, 11, 27)
    assert rules.filters_from({"range": "custom", "from": "2025-10-27", "to": "2025-10-31"}, today=today)
    with pytest.raises(InvalidFilter):
        rules.filters_from({"range": "custom", "from": "2025-10-26", "to": "2025-10-31"}, today=today)


def test_an_otp_codes_detail_says_when_it_was_verified(session, world):
    msgid = message(session, world, jst(2026, 11, 2, 9), product="otp", site=world.site)
    with db.write(session):
        session.add(OtpCode(msgid=msgid, site_id=world.site, account_id=world.account_id, credential_id=world.shop,
                            mode="live", phone_number="+819012345678", prefix="+81901234", channel="sms",
                            code_hash="h", status="verified", max_attempts=5, created_at=jst(2026, 11, 2, 9),
                            expires_at=jst(2026, 11, 2, 9, 5), verified_at=jst(2026, 11, 2, 9, 1)))
    detail = service.detail(session, account_id=world.account_id, kind="otp", ref=msgid, role="developer")
    assert detail.code_status == "verified" and detail.row.site_name == "Example"
    assert [step.event for step in detail.timeline] == ["created", "delivered", "code_verified"]
