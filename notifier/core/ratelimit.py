"""Token buckets in Redis, shared by every process, with a local fallback.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second; taking a
token is one atomic Lua call using Redis's clock, so processes on many hosts share one limit
without clock skew. The API quota (per tenant) and the outbound provider limits
(``notifier.notifications.throttle``) are such buckets.

A bucket can also be *penalized* when the service it guards answers 429: its effective rate
halves (at most once per ``PENALTY_COOLDOWN``, however many calls were refused at once, and
never below ``PENALTY_FLOOR`` of the configured rate), it empties, and it stays shut for the
Retry-After the service gave. It then recovers additively: ``RECOVERY_STEP`` of the configured
rate more for every ``RECOVERY_EVERY`` seconds without another penalty (AIMD, as TCP does).

Redis is a cache here (SPEC guarantee 9): when it is unreachable, each process falls back to a
bucket of its own with ``local_share`` of the rate and burst, so limits still hold and nothing
waits on Redis (see ``notifier.core.redis_scripts``).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from dataclasses import dataclass

from django.conf import settings

from notifier.core.redis_scripts import RedisScripts, RedisUnavailable

PENALTY_FLOOR = 0.1
PENALTY_COOLDOWN = 1.0
RECOVERY_STEP = 0.1
RECOVERY_EVERY = 10.0

# KEYS[1] bucket; ARGV rate, burst, recovery step, recovery period, then the script's own.
# Fields: tokens, at (refill starts there; in the future while blocked), eff and pen_at (the
# effective rate set by the last penalty, and when; absent when not penalized).
_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local step = tonumber(ARGV[3])
local every = tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at', 'eff', 'pen_at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
local penalized_at = tonumber(state[4])
local effective = rate
if state[3] then
  local steps = math.floor((now - penalized_at) / every)
  effective = math.min(rate, tonumber(state[3]) + steps * step * rate)
end
if now > at then
  tokens = math.min(burst, tokens + (now - at) * effective)
  at = now
end
local function save(penalized)
  redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', at)
  local ttl = math.max(0, at - now) + burst / effective + 1
  if penalized and effective < rate then
    ttl = ttl + ((rate - effective) / (step * rate) + 1) * every
  elseif state[3] then
    redis.call('HDEL', KEYS[1], 'eff', 'pen_at')
  end
  redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 1000))
end
"""

# ARGV[5] cost. Returns {allowed, wait in ms}.
_TAKE_SCRIPT = (
    _BUCKET
    + """
local cost = tonumber(ARGV[5])
local allowed = 0
local wait_ms = 0
if at <= now and tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  wait_ms = math.ceil((math.max(0, at - now) + math.max(0, cost - tokens) / effective) * 1000)
end
save(state[3] and effective < rate)
return {allowed, wait_ms}
"""
)

# ARGV[5] seconds to stay shut, ARGV[6] floor (fraction of rate), ARGV[7] cooldown.
_PENALIZE_SCRIPT = (
    _BUCKET
    + """
if not penalized_at or now - penalized_at >= tonumber(ARGV[7]) then
  effective = math.max(tonumber(ARGV[6]) * rate, effective / 2)
end
redis.call('HSET', KEYS[1], 'eff', effective, 'pen_at', now)
tokens = 0
at = math.max(at, now + tonumber(ARGV[5]))
save(true)
return 1
"""
)

# Read only. Returns {tokens, effective rate, blocked until (0 when not), now} as strings:
# Redis would truncate Lua numbers to integers.
_PEEK_SCRIPT = (
    _BUCKET
    + """
local blocked = 0
if at > now then blocked = at end
return {tostring(tokens), tostring(effective), tostring(blocked), tostring(now)}
"""
)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after: float  # seconds until the request would be allowed; 0 when allowed


@dataclass(frozen=True, slots=True)
class BucketState:
    tokens: float
    effective_rate: float
    blocked_until: float  # epoch seconds; 0 when not blocked
    source: str  # "redis" | "local"


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float
    effective: float | None = None  # set by the last penalty
    penalized_at: float | None = None


class _LocalBuckets:
    """The same algorithm in process memory (monotonic clock), for when Redis is unreachable."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: dict[str, _Bucket] = {}

    def _refilled(self, key: str, rate: float, burst: int, now: float) -> tuple[_Bucket, float]:
        bucket = self._state.setdefault(key, _Bucket(tokens=float(burst), at=now))
        effective = rate
        if bucket.effective is not None and bucket.penalized_at is not None:
            steps = math.floor((now - bucket.penalized_at) / RECOVERY_EVERY)
            effective = min(rate, bucket.effective + steps * RECOVERY_STEP * rate)
            if effective >= rate:
                bucket.effective = bucket.penalized_at = None
        if now > bucket.at:
            bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.at) * effective)
            bucket.at = now
        return bucket, effective

    def take(self, key: str, *, rate: float, burst: int, cost: int) -> Decision:
        now = time.monotonic()
        with self._lock:
            bucket, effective = self._refilled(key, rate, burst, now)
            if bucket.at <= now and bucket.tokens >= cost:
                bucket.tokens -= cost
                return Decision(allowed=True, retry_after=0.0)
            wait = max(0.0, bucket.at - now) + max(0.0, cost - bucket.tokens) / effective
            return Decision(allowed=False, retry_after=wait)

    def penalize(self, key: str, *, rate: float, burst: int, block: float) -> None:
        now = time.monotonic()
        with self._lock:
            bucket, effective = self._refilled(key, rate, burst, now)
            if bucket.penalized_at is None or now - bucket.penalized_at >= PENALTY_COOLDOWN:
                effective = max(PENALTY_FLOOR * rate, effective / 2)
            bucket.effective, bucket.penalized_at = effective, now
            bucket.tokens = 0.0
            bucket.at = max(bucket.at, now + block)

    def peek(self, key: str, *, rate: float, burst: int) -> BucketState:
        now = time.monotonic()
        with self._lock:
            bucket, effective = self._refilled(key, rate, burst, now)
            blocked = time.time() + (bucket.at - now) if bucket.at > now else 0.0
            return BucketState(bucket.tokens, effective, blocked, source="local")

    def forget(self, key: str) -> None:
        with self._lock:
            self._state.pop(key, None)


class TokenBuckets:
    """Buckets under ``prefix`` in Redis; ``local_share`` of each limit per process without it.

    ``local_share`` is 1 for the API quota (every web process keeps the tenant's full quota
    while Redis is down) and 1 / processes for provider limits, whose total must hold.
    """

    def __init__(self, url: str, *, prefix: str, local_share: float = 1.0) -> None:
        self._redis = RedisScripts(url, purpose=f"rate limiter {prefix}")
        self._take = self._redis.register(_TAKE_SCRIPT)
        self._penalize = self._redis.register(_PENALIZE_SCRIPT)
        self._peek = self._redis.register(_PEEK_SCRIPT)
        self._prefix = prefix
        self._local = _LocalBuckets()
        self._local_share = local_share

    def _args(self, rate: float, burst: int) -> list[float]:
        return [rate, burst, RECOVERY_STEP, RECOVERY_EVERY]

    def _local_limit(self, rate: float, burst: int) -> tuple[float, int]:
        return rate * self._local_share, max(1, math.floor(burst * self._local_share))

    def take(self, key: str, *, rate: float, burst: int, cost: int = 1) -> Decision:
        """Take ``cost`` tokens from bucket ``key`` if it has them."""
        try:
            allowed, wait_ms = self._redis.run(
                self._take, keys=[self._prefix + key], args=[*self._args(rate, burst), cost]
            )
        except RedisUnavailable:
            local_rate, local_burst = self._local_limit(rate, burst)
            return self._local.take(key, rate=local_rate, burst=local_burst, cost=cost)
        return Decision(allowed=bool(allowed), retry_after=int(wait_ms) / 1000)

    def penalize(self, key: str, *, rate: float, burst: int, block: float = 0.0) -> None:
        """Halve the bucket's effective rate, empty it, and keep it shut ``block`` seconds."""
        args = [*self._args(rate, burst), max(0.0, block), PENALTY_FLOOR, PENALTY_COOLDOWN]
        try:
            self._redis.run(self._penalize, keys=[self._prefix + key], args=args)
        except RedisUnavailable:
            local_rate, local_burst = self._local_limit(rate, burst)
            self._local.penalize(key, rate=local_rate, burst=local_burst, block=max(0.0, block))

    def peek(self, key: str, *, rate: float, burst: int) -> BucketState:
        """The bucket as it is now, changing nothing. From the local fallback, this process's
        share of it."""
        try:
            tokens, effective, blocked, _ = self._redis.run(
                self._peek, keys=[self._prefix + key], args=self._args(rate, burst)
            )
        except RedisUnavailable:
            local_rate, local_burst = self._local_limit(rate, burst)
            return self._local.peek(key, rate=local_rate, burst=local_burst)
        return BucketState(float(tokens), float(effective), float(blocked), source="redis")

    def forget(self, key: str) -> None:
        """Delete bucket ``key``, in Redis and locally (operator reset, tests)."""
        self._local.forget(key)
        with contextlib.suppress(RedisUnavailable):
            self._redis.delete(self._prefix + key)


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
