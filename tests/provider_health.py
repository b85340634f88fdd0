"""Helpers for the tests of circuit breakers and provider rate limits: Redis keys of a test's
own, and the bodies of the worker processes that share one breaker or one bucket.

The process bodies run under multiprocessing's spawn start method, so they take everything as
arguments and touch no Django setting.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from notifier.notifications.breakers import CircuitBreakers, reset_breakers
from notifier.notifications.throttle import ProviderThrottle, reset_throttle
from tests.brokers import free_port


@contextmanager
def redis_prefix(url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards (never a FLUSH)."""
    prefix = f"notifier:test:{uuid.uuid4().hex}"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
        client.close()


@contextmanager
def isolated_provider_health(settings: Any) -> Iterator[None]:
    """The process's breakers and throttle (``breakers()``, ``throttle()``) under key prefixes
    of this test's own, with twilio limited to 100/s besides the configured sandbox."""
    url = settings.REDIS_URL
    with redis_prefix(url) as breaker_prefix, redis_prefix(url) as throttle_prefix:
        settings.NOTIFIER_BREAKER_PREFIX = breaker_prefix
        settings.NOTIFIER_THROTTLE_PREFIX = throttle_prefix
        settings.NOTIFIER_PROVIDER_RATE_LIMITS = {"twilio": {"RATE": 100, "BURST": 100}}
        reset_breakers()
        reset_throttle()
        try:
            yield
        finally:
            reset_breakers()
            reset_throttle()


def unreachable_redis() -> str:
    """A Redis URL on a free port nothing listens on: connecting fails at once."""
    return f"redis://127.0.0.1:{free_port()}/0"


def take_probe_slots(
    url: str, prefix: str, provider: str, open_for: float, calls: int, start: Any, results: Any
) -> None:
    """Ask ``allow`` ``calls`` times as soon as every process is ready; report the grants and
    when this process started and finished (epoch seconds)."""
    breakers = CircuitBreakers(url, prefix=prefix, open_for=open_for)
    start.wait(timeout=120)
    started = time.time()
    granted = sum(breakers.allow(provider) for _ in range(calls))
    results.put((granted, started, time.time()))


def hammer_throttle(
    url: str,
    prefix: str,
    provider: str,
    limit: tuple[float, int],
    seconds: float,
    start: Any,
    results: Any,
) -> None:
    """Acquire as fast as possible for ``seconds``; report when each grant was asked for."""
    throttle = ProviderThrottle(url, prefix=prefix, limits={provider: limit}, processes_hint=1)
    start.wait(timeout=120)
    granted: list[float] = []
    end = time.time() + seconds
    while (asked := time.time()) < end:
        if throttle.acquire(provider).allowed:
            granted.append(asked)
    results.put(granted)
