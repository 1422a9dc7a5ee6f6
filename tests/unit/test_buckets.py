"""The API's token buckets, in process and in Redis: a request takes a token from each of its
buckets or from none, a bucket refills at its rate, and a refusal says how long to wait."""

import os
import time

import pytest

from portal import buckets
from portal.buckets import Rate


class WallClock:
    def __init__(self, at: float):
        self.at = at

    def __call__(self) -> float:
        return self.at


def test_limits_are_read_as_flask_limiter_writes_them():
    assert buckets.parse("20 per second;1200 per minute") == (Rate(20, 1), Rate(1200, 60))
    assert buckets.parse("5/hour, 100 per 2 days") == (Rate(5, 3600), Rate(100, 2 * 86400))
    with pytest.raises(ValueError):
        buckets.parse("fast")


def _redis():
    import redis

    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    url = f"redis://127.0.0.1:6379/{15 - worker % 8}"  # as tests/web/test_security.py shares Redis
    try:
        redis.Redis.from_url(url).flushdb()
    except redis.ConnectionError:
        pytest.skip("no Redis server on 127.0.0.1:6379")
    return buckets.InRedis(url)


@pytest.fixture(params=["in process", "redis"])
def store(request):
    return buckets.InProcess() if request.param == "in process" else _redis()


def test_a_request_takes_from_every_bucket_or_from_none(store, monkeypatch):
    wall = WallClock(2_000_000_000.0)
    monkeypatch.setattr(time, "time", wall)
    route = buckets.buckets("send:a", "2 per second")
    account = buckets.buckets("account:1", "3 per minute")
    assert [store.take(route + account) for _ in range(2)] == [0, 0]
    assert store.take(route + account) == pytest.approx(1 / 2)  # the route's bucket is empty: half a second
    assert store.take(account) == 0  # the refused request took nothing from the account's bucket
    assert store.take(account) == pytest.approx(20)  # 3 a minute: the next token in 20 s
    wall.at += 20
    assert store.take(account) == 0
    assert store.take(buckets.buckets("account:2", "3 per minute")) == 0  # every key has its own buckets


def test_a_bucket_refills_at_its_rate_up_to_its_size(store, monkeypatch):
    wall = WallClock(2_000_000_000.0)
    monkeypatch.setattr(time, "time", wall)
    limit = buckets.buckets("read:a", "1 per second;3 per minute")
    assert store.take(limit) == 0
    assert store.take(limit) == pytest.approx(1.0)
    wall.at += 0.95
    assert store.take(limit) == pytest.approx(0.05)
    assert buckets.retry_after(0.05) == 1 and buckets.retry_after(1.2) == 2
    wall.at += 3600  # long idle: both buckets full again, never fuller
    taken = []
    for _ in range(3):
        taken.append(store.take(limit))
        wall.at += 1
    assert taken == [0, 0, 0]
    assert store.take(limit) == pytest.approx((1 - 3 * 3 / 60) * 20)  # the minute's 3 tokens are spent
