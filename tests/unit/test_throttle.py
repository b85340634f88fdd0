"""Outbound rate limits per provider account: one limit held across processes, the adaptive
penalty for 429s and its recovery, and each process's share while Redis is unreachable.

Rates are checked by counting grants in 1-s windows of recorded timestamps (taken just before
each call), never by trusting sleeps. Rule tests run against the real Redis and with Redis
unreachable (local buckets; ``processes_hint=1`` so the local limit is the whole limit).
"""

from __future__ import annotations

import bisect
import multiprocessing
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from notifier.core import ratelimit
from notifier.notifications.throttle import ProviderThrottle, throttle
from tests.provider_health import hammer_throttle, redis_prefix, unreachable_redis

REDIS_URL = settings.REDIS_URL
MakeThrottle = Callable[..., ProviderThrottle]


@pytest.fixture
def prefix() -> Iterator[str]:
    with redis_prefix(REDIS_URL) as prefix:
        yield prefix


@pytest.fixture(params=["redis", "local"])
def make(request: pytest.FixtureRequest, prefix: str) -> MakeThrottle:
    url = REDIS_URL if request.param == "redis" else unreachable_redis()

    def make(limits: dict[str, tuple[float, int]], processes_hint: int = 1) -> ProviderThrottle:
        return ProviderThrottle(url, prefix=prefix, limits=limits, processes_hint=processes_hint)

    return make


def most_in_one_second(stamps: list[float]) -> int:
    """The most timestamps in any window [t, t + 1 s) starting at one of them."""
    stamps = sorted(stamps)
    return max(
        (bisect.bisect_left(stamps, start + 1.0) - i for i, start in enumerate(stamps)), default=0
    )


def acquire_for(throttle: ProviderThrottle, provider: str, seconds: float) -> list[float]:
    """Ask every 2 ms for ``seconds``; the times (monotonic) asked of the granted calls."""
    granted = []
    end = time.monotonic() + seconds
    while (asked := time.monotonic()) < end:
        if throttle.acquire(provider).allowed:
            granted.append(asked)
        time.sleep(0.002)
    return granted


class TestLimit:
    def test_providers_without_a_limit_are_always_allowed(self, make: MakeThrottle) -> None:
        throttle = make({"twilio": (1.0, 1)})

        permits = [throttle.acquire("ses") for _ in range(100)]

        assert all(permit.allowed and permit.retry_after == 0 for permit in permits)
        assert throttle.status("ses") == {}

    def test_a_burst_then_refusals_saying_when_to_come_back(self, make: MakeThrottle) -> None:
        # given 10 per second, 5 at once
        throttle = make({"twilio": (10.0, 5)})

        # when
        permits = [throttle.acquire("twilio") for _ in range(6)]

        # then
        assert [permit.allowed for permit in permits] == [True] * 5 + [False]
        assert 0 < permits[-1].retry_after <= 0.1 + 0.01

    def test_a_call_may_take_several_tokens(self, make: MakeThrottle) -> None:
        throttle = make({"ses": (1.0, 5)})

        assert throttle.acquire("ses", tokens=3).allowed
        refused = throttle.acquire("ses", tokens=3)

        assert not refused.allowed
        assert refused.retry_after == pytest.approx(1.0, abs=0.1)

    def test_status(self, make: MakeThrottle) -> None:
        throttle = make({"twilio": (10.0, 5)})
        throttle.acquire("twilio", tokens=2)

        status = throttle.status("twilio")

        assert (status["rate"], status["burst"], status["effective_rate"]) == (10, 5, 10)
        assert status["tokens"] == pytest.approx(3, abs=0.5)
        assert status["blocked_until"] == 0


def test_one_limit_holds_across_processes(prefix: str) -> None:
    # given 4 processes sharing one limit of 20 per second with bursts of 20
    rate, burst, seconds = 20.0, 20, 3.0
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(4)
    results = spawn.Queue()
    processes = [
        spawn.Process(
            target=hammer_throttle,
            args=(REDIS_URL, prefix, "twilio", (rate, burst), seconds, start, results),
        )
        for _ in range(4)
    ]
    for process in processes:
        process.start()

    # when they all acquire as fast as they can for 3 s
    granted = [stamp for _ in processes for stamp in results.get(timeout=120)]
    for process in processes:
        process.join(timeout=30)

    # then no 1-s window holds more than a full bucket plus one second of refill: burst + rate.
    # Stamps are taken just before each call, so a grant stamped in [t, t + 1) was decided by
    # Redis in [t, t + 1 + d), d the call's latency; we allow d up to 0.25 s (5 grants) for a
    # loaded 2-core machine. Four unshared buckets would allow 4 x (burst + rate) = 160.
    assert all(process.exitcode == 0 for process in processes)
    assert most_in_one_second(granted) <= burst + rate * 1.25
    span = max(granted) - min(granted)
    assert len(granted) <= burst + rate * (span + 0.25)
    # and the limit was reached, not starved: about burst + rate x 3 s = 80 in all
    assert len(granted) >= burst + rate * span * 0.7


class TestPenalty:
    def test_a_429_halves_the_rate_and_blocks_until_retry_after(self, make: MakeThrottle) -> None:
        # given 20 per second, 20 at once
        throttle = make({"twilio": (20.0, 20)})
        asked, asked_at = time.time(), time.monotonic()

        # when the provider answers 429 with Retry-After: 0.5
        throttle.penalize("twilio", retry_after=0.5)

        # then no call goes through for 0.5 s, and then at 10 per second
        status = throttle.status("twilio")
        assert status["effective_rate"] == 10
        assert asked + 0.5 - 0.05 < status["blocked_until"] < time.time() + 0.5 + 0.05
        refused = throttle.acquire("twilio")
        assert not refused.allowed
        assert 0.3 < refused.retry_after <= 0.5 + 0.1 + 0.01
        granted = acquire_for(throttle, "twilio", 1.6)
        assert granted
        assert granted[0] - asked_at >= 0.5 - 0.05
        # from empty at 10/s: at most 1 + 10 in a second (+1 for latency), where 20/s gives 21
        assert 6 <= most_in_one_second(granted) <= 12

    def test_a_429_without_retry_after_empties_the_bucket(self, make: MakeThrottle) -> None:
        throttle = make({"twilio": (20.0, 20)})

        throttle.penalize("twilio", retry_after=None)

        status = throttle.status("twilio")
        assert status["effective_rate"] == 10
        assert status["blocked_until"] == 0
        assert status["tokens"] < 1

    def test_a_volley_of_429s_halves_once(self, make: MakeThrottle) -> None:
        # given every worker's call was refused at once
        throttle = make({"twilio": (20.0, 20)})

        # when each reports it
        for _ in range(8):
            throttle.penalize("twilio", retry_after=None)

        # then the rate halved once, not 8 times
        assert throttle.status("twilio")["effective_rate"] == 10

    def test_the_rate_never_falls_below_a_tenth(
        self, make: MakeThrottle, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(ratelimit, "PENALTY_COOLDOWN", 0.0)
        throttle = make({"twilio": (20.0, 20)})

        rates = []
        for _ in range(6):
            throttle.penalize("twilio", retry_after=None)
            rates.append(throttle.status("twilio")["effective_rate"])

        assert rates == pytest.approx([10, 5, 2.5, 2, 2, 2])

    def test_the_rate_recovers_by_a_tenth_per_quiet_period(
        self, make: MakeThrottle, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # given a quiet period of 0.2 s instead of 10 s
        monkeypatch.setattr(ratelimit, "RECOVERY_EVERY", 0.2)
        throttle = make({"twilio": (20.0, 20)})
        penalized = time.monotonic()
        throttle.penalize("twilio", retry_after=None)

        # when no other 429 comes
        seen = []
        while (rate := throttle.status("twilio")["effective_rate"]) < 20 - 1e-9:
            seen.append(rate)
            assert time.monotonic() - penalized < 10
            time.sleep(0.02)
        recovered = time.monotonic()

        # then it climbed back in steps of 2 (10% of 20), one per 0.2 s
        assert seen == sorted(seen)
        assert {round(rate, 6) for rate in seen} <= {10, 12, 14, 16, 18}
        assert recovered - penalized >= 5 * 0.2 - 0.05

    def test_recovered_buckets_drop_the_penalty(self, prefix: str) -> None:
        throttle = ProviderThrottle(REDIS_URL, prefix=prefix, limits={"twilio": (20.0, 20)})
        throttle.penalize("twilio", retry_after=None)
        client = redis.Redis.from_url(REDIS_URL)
        assert client.hget(f"{prefix}:twilio", "eff") == b"10"

        throttle.reset("twilio")

        assert throttle.status("twilio")["effective_rate"] == 20
        assert not client.exists(f"{prefix}:twilio")
        client.close()


class TestRedisUnreachable:
    def test_each_process_takes_its_share_and_no_call_waits(self) -> None:
        # given a limit of 20/s, bursts of 20, shared by 4 worker processes
        throttle = ProviderThrottle(
            unreachable_redis(), limits={"twilio": (20.0, 20)}, processes_hint=4
        )
        durations = []

        def timed(method: Callable[..., Any], *args: Any) -> Any:
            started = time.monotonic()
            result = method(*args)
            durations.append(time.monotonic() - started)
            return result

        # when
        permits = [timed(throttle.acquire, "twilio") for _ in range(50)]
        timed(throttle.penalize, "twilio", 1.0)
        status = timed(throttle.status, "twilio")

        # then this process keeps to a quarter: 5 at once, 5/s, halved by the 429
        assert sum(permit.allowed for permit in permits) == 5
        assert not permits[-1].allowed
        assert permits[-1].retry_after == pytest.approx(0.2, abs=0.05)
        assert (status["effective_rate"], status["local"]) == (2.5, 1)
        assert max(durations) < 0.3


class TestFromSettings:
    def test_limits_come_from_settings(self, settings: Any, prefix: str) -> None:
        settings.NOTIFIER_THROTTLE_PREFIX = prefix
        settings.NOTIFIER_PROVIDER_RATE_LIMITS = {"ses": {"RATE": 14, "BURST": 2}}

        permits = [throttle().acquire("ses").allowed for _ in range(3)]

        assert permits == [True, True, False]
        assert throttle().limit("ses") == (14.0, 2)
        assert throttle().limit("twilio") is None

    @pytest.mark.parametrize(
        "limits",
        [
            {"ses": {"RATE": 0, "BURST": 1}},
            {"ses": {"RATE": 14, "BURST": 0}},
            {"ses": {"BURST": 14}},
            {"ses": {"RATE": 14, "PER": "second"}},
            {"ses": 14},
        ],
    )
    def test_a_bad_limit_fails_naming_it(self, settings: Any, limits: dict[str, Any]) -> None:
        settings.NOTIFIER_PROVIDER_RATE_LIMITS = limits

        with pytest.raises(ImproperlyConfigured, match=r"NOTIFIER_PROVIDER_RATE_LIMITS\['ses'\]"):
            throttle()
