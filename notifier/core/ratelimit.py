"""Token buckets in Redis, shared by every process, with a local fallback.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second; taking a
token is one atomic Lua call using Redis's clock, so web processes on many hosts share one
limit without clock skew. Redis is a cache here (SPEC guarantee 9): when it is unreachable,
each process falls back to a bucket of its own with the same rate and burst, so limits still
hold per process (the global limit becomes ``rate`` × processes) and nothing waits on Redis.
After a Redis failure the local bucket is used for ``RETRY_REDIS_AFTER`` seconds before Redis
is tried again, so an outage costs one short timeout, not one per request.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

RETRY_REDIS_AFTER = 5.0
# A rate limiter must never slow the request it guards: give up on Redis quickly.
REDIS_TIMEOUT = 0.1

# KEYS[1] bucket; ARGV rate (tokens/s), burst, cost. Returns {allowed, wait in ms}.
_TAKE_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed = 0
local wait_ms = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  wait_ms = math.ceil((cost - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, wait_ms}
"""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after: float  # seconds until the request would be allowed; 0 when allowed


class _LocalBuckets:
    """The same algorithm in process memory, for when Redis is unreachable."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: dict[str, tuple[float, float]] = {}

    def take(self, key: str, *, rate: float, burst: int, cost: int) -> Decision:
        now = time.monotonic()
        with self._lock:
            tokens, at = self._state.get(key, (float(burst), now))
            tokens = min(float(burst), tokens + (now - at) * rate)
            if tokens >= cost:
                self._state[key] = (tokens - cost, now)
                return Decision(allowed=True, retry_after=0.0)
            self._state[key] = (tokens, now)
            return Decision(allowed=False, retry_after=(cost - tokens) / rate)


class TokenBuckets:
    def __init__(self, url: str, *, prefix: str) -> None:
        self._client = redis.Redis.from_url(
            url, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT
        )
        self._take = self._client.register_script(_TAKE_SCRIPT)
        self._prefix = prefix
        self._local = _LocalBuckets()
        self._redis_down_until = 0.0

    def take(self, key: str, *, rate: float, burst: int, cost: int = 1) -> Decision:
        """Take ``cost`` tokens from bucket ``key`` if it has them."""
        if time.monotonic() >= self._redis_down_until:
            try:
                allowed, wait_ms = self._take(
                    keys=[f"{self._prefix}{key}"], args=[rate, burst, cost]
                )
            except redis.RedisError as exc:
                self._redis_down_until = time.monotonic() + RETRY_REDIS_AFTER
                logger.warning("rate limiter: Redis unavailable (%s), using local buckets", exc)
            else:
                return Decision(allowed=bool(allowed), retry_after=int(wait_ms) / 1000)
        return self._local.take(key, rate=rate, burst=burst, cost=cost)


_buckets: TokenBuckets | None = None
_buckets_lock = threading.Lock()


def buckets() -> TokenBuckets:
    """The process's buckets, created on first use (after a fork, in each worker)."""
    global _buckets
    with _buckets_lock:
        if _buckets is None:
            _buckets = TokenBuckets(settings.REDIS_URL, prefix=settings.NOTIFIER_RATE_LIMIT_PREFIX)
        return _buckets


def reset_buckets() -> None:
    """Forget the process's buckets, so changed settings take effect (tests, reloads)."""
    global _buckets
    with _buckets_lock:
        _buckets = None


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
