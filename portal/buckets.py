"""Token buckets for the customer API's rate limits: one atomic operation per request, in the
process (a dict under a lock) or, when PORTAL_REDIS_URL is set, in Redis (one EVALSHA of a
script), so that every process of the portal counts together.

A limit such as "20 per second;1200 per minute" is two buckets per key: one holds at most 20
tokens and refills at 20 a second, the other holds 1200 and refills at 1200 a minute. A
request takes one token from every bucket it counts toward, or none at all when any of them
is empty; it is then told how long to wait for the token it lacks. Time is `time.time()`,
read at each call."""

import math
import re
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_RATE = re.compile(r"\s*(\d+)\s*(?:per|/)\s*(\d+)?\s*(second|minute|hour|day)s?\s*")
REDIS_PREFIX = "chotto:bucket:"
_SWEEP_AT = 10_000  # the in-process store drops full buckets once it holds this many


@dataclass(frozen=True)
class Rate:
    count: int
    seconds: int


@lru_cache(maxsize=128)
def parse(text: str) -> tuple[Rate, ...]:
    """The rates of a limit written as flask-limiter writes them: "20 per second;1200 per
    minute", "20/second", "100 per 2 hours" (separated by ";" or ",")."""
    rates = []
    for part in filter(str.strip, re.split(r"[;,]", text)):
        found = _RATE.fullmatch(part)
        if found is None:
            raise ValueError(f"not a rate limit: {part!r}")
        count, multiple, period = found.groups()
        rates.append(Rate(int(count), int(multiple or 1) * PERIODS[period]))
    return tuple(rates)


Bucket = tuple[str, Rate]  # the key (who and what is counted) and one of its rates


def buckets(key: str, limit: str) -> list[Bucket]:
    return [(f"{key}|{rate.count}/{rate.seconds}", rate) for rate in parse(limit)]


def _refilled(tokens: float, at: float, rate: Rate, now: float) -> float:
    return min(rate.count, tokens + max(0.0, now - at) * rate.count / rate.seconds)


def _wait(tokens: float, rate: Rate) -> float:
    return (1 - tokens) * rate.seconds / rate.count


class InProcess:
    """The buckets of one process (a single worker, a development server, the tests)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._store: dict[str, tuple[float, float]] = {}

    def take(self, wanted: list[Bucket]) -> float:
        """Take a token from every bucket, or none; returns 0, or the seconds to wait."""
        now = time.time()
        with self._lock:
            found = [_refilled(*self._store.get(name, (rate.count, now)), rate, now) for name, rate in wanted]
            wait = max((_wait(tokens, rate) for tokens, (_, rate) in zip(found, wanted) if tokens < 1), default=0.0)
            if wait:
                return wait
            for tokens, (name, _rate) in zip(found, wanted):
                self._store[name] = (tokens - 1, now)
            if len(self._store) > _SWEEP_AT:
                self._sweep(now)
        return 0.0

    def _sweep(self, now: float) -> None:
        """Forget the buckets that have been full for a day (a full bucket is no bucket)."""
        self._store = {name: (tokens, at) for name, (tokens, at) in self._store.items() if now - at < 86400}


# KEYS: the buckets; ARGV: now, then each bucket's capacity and seconds. All or nothing, atomic.
_SCRIPT = """
local now = tonumber(ARGV[1])
local wait, found = 0, {}
for i, key in ipairs(KEYS) do
  local capacity, seconds = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local state = redis.call('HMGET', key, 't', 'at')
  local tokens = tonumber(state[1]) or capacity
  local at = tonumber(state[2]) or now
  tokens = math.min(capacity, tokens + math.max(0, now - at) * capacity / seconds)
  if tokens < 1 then wait = math.max(wait, (1 - tokens) * seconds / capacity) end
  found[i] = tokens
end
if wait > 0 then return tostring(wait) end
for i, key in ipairs(KEYS) do
  redis.call('HSET', key, 't', tostring(found[i] - 1), 'at', ARGV[1])
  redis.call('EXPIRE', key, tonumber(ARGV[2 * i + 1]) + 1)
end
return '0'
"""


class InRedis:
    """Buckets shared by every process through Redis: one script call per request."""

    def __init__(self, url: str):
        import redis

        self._script = redis.Redis.from_url(url).register_script(_SCRIPT)

    def take(self, wanted: list[Bucket]) -> float:
        args = [repr(time.time())]
        for _name, rate in wanted:
            args += [rate.count, rate.seconds]
        return float(self._script(keys=[REDIS_PREFIX + name for name, _ in wanted], args=args))


def for_url(redis_url: str) -> InProcess | InRedis:
    return InRedis(redis_url) if redis_url else InProcess()


def retry_after(wait: float) -> int:
    """Whole seconds, at least 1."""
    return max(1, math.ceil(wait))
