"""Circuit breakers per provider: when they open, how long, the single half-open probe across
processes, operator reset, and the local fallback while Redis is unreachable.

Rule tests run twice: against the real Redis, and with Redis unreachable (each process's local
breaker follows the same rules). Times are measured from the moment just before the call that
opened the breaker, so a slow machine can only make waits look longer, never shorter.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from notifier.notifications.breakers import BreakerState, CircuitBreakers, breakers
from tests.provider_health import redis_prefix, take_probe_slots, unreachable_redis

REDIS_URL = settings.REDIS_URL
MakeBreakers = Callable[..., CircuitBreakers]


@pytest.fixture
def prefix() -> Iterator[str]:
    with redis_prefix(REDIS_URL) as prefix:
        yield prefix


@pytest.fixture(params=["redis", "local"])
def make(request: pytest.FixtureRequest, prefix: str) -> MakeBreakers:
    """Breakers on the real Redis, or on an unreachable one (local fallback)."""
    url = REDIS_URL if request.param == "redis" else unreachable_redis()

    def make(**rules: Any) -> CircuitBreakers:
        return CircuitBreakers(url, prefix=prefix, **rules)

    return make


@pytest.fixture
def other_caller() -> Iterator[ThreadPoolExecutor]:
    """Another caller: one thread of its own (a probe belongs to the thread that took it)."""
    with ThreadPoolExecutor(max_workers=1) as executor:
        yield executor


def call(breakers: CircuitBreakers, provider: str, *, ok: bool) -> None:
    assert breakers.allow(provider)
    breakers.record(provider, ok=ok)


def open_breaker(breakers: CircuitBreakers, provider: str = "twilio") -> float:
    """Fail until it opens; returns the monotonic time just before the call that opened it."""
    for _ in range(breakers.rules.consecutive_failures - 1):
        call(breakers, provider, ok=False)
    before = time.monotonic()
    call(breakers, provider, ok=False)
    assert breakers.status(provider).state == BreakerState.OPEN
    return before


def wait_for_probe(breakers: CircuitBreakers, provider: str = "twilio") -> float:
    """Poll ``allow`` until it lets a call through; returns when it did (monotonic)."""
    deadline = time.monotonic() + 10
    while not breakers.allow(provider):
        assert time.monotonic() < deadline, "the breaker never let a probe through"
        time.sleep(0.01)
    return time.monotonic()


def count_questions(breakers: CircuitBreakers) -> list[str]:
    """The providers ``breakers`` asks Redis (or its local fallback) about, from now on."""
    asked: list[str] = []
    decide = breakers._decide

    def counted(provider: str) -> int:
        asked.append(provider)
        return decide(provider)

    breakers._decide = counted  # type: ignore[method-assign]
    return asked


class TestOpening:
    def test_opens_after_five_consecutive_failures(self, make: MakeBreakers) -> None:
        # given four failures, a success, then four more: never five in a row
        breakers = make()
        for ok in [False] * 4 + [True] + [False] * 4:
            call(breakers, "twilio", ok=ok)
        assert breakers.status("twilio").state == BreakerState.CLOSED

        # when the fifth consecutive failure comes
        call(breakers, "twilio", ok=False)

        # then
        status = breakers.status("twilio")
        assert status.state == BreakerState.OPEN
        assert status.failures == 5
        assert not breakers.allow("twilio")

    def test_opens_when_more_than_half_the_calls_of_the_window_failed(
        self, make: MakeBreakers
    ) -> None:
        # given two failures for each success (never five in a row), 9 calls: under min_calls
        breakers = make()
        pattern = [False, False, True] * 3
        for ok in pattern:
            call(breakers, "ses", ok=ok)
        assert breakers.status("ses").state == BreakerState.CLOSED

        # when the tenth call fails (7 of 10 failed)
        call(breakers, "ses", ok=False)

        # then
        status = breakers.status("ses")
        assert status.state == BreakerState.OPEN
        assert (status.calls, status.errors) == (10, 7)

    def test_exactly_half_failed_is_not_more_than_half(self, make: MakeBreakers) -> None:
        breakers = make()
        for ok in [True, False] * 10:
            call(breakers, "ses", ok=ok)

        status = breakers.status("ses")
        assert status.state == BreakerState.CLOSED
        assert (status.calls, status.errors) == (20, 10)

    def test_calls_older_than_the_window_do_not_count(self, make: MakeBreakers) -> None:
        # given 3 failed calls, then a wait longer than the 1-s window
        breakers = make(consecutive_failures=100, min_calls=4, window=1.0)
        for _ in range(3):
            call(breakers, "ses", ok=False)
        time.sleep(1.3)

        # when a fourth call fails
        call(breakers, "ses", ok=False)

        # then the window holds one call, not four: still closed
        status = breakers.status("ses")
        assert status.state == BreakerState.CLOSED
        assert (status.calls, status.errors) == (1, 1)

    def test_each_provider_has_a_breaker_of_its_own(self, make: MakeBreakers) -> None:
        breakers = make()
        open_breaker(breakers, "twilio")

        assert breakers.allow("ses")
        assert [s.state for s in breakers.statuses(["twilio", "ses"])] == [
            BreakerState.OPEN,
            BreakerState.CLOSED,
        ]


class TestHalfOpen:
    def test_stays_open_for_open_for_then_lets_one_probe_through(
        self, make: MakeBreakers, other_caller: ThreadPoolExecutor
    ) -> None:
        # given
        breakers = make(open_for=0.5)
        opened = open_breaker(breakers)
        status = breakers.status("twilio")
        assert status.retry_at is not None
        assert status.opened_at is not None
        assert status.retry_at - status.opened_at == pytest.approx(0.5)

        # when
        probed = wait_for_probe(breakers)

        # then it stayed open at least open_for, and nobody else gets through meanwhile
        assert probed - opened >= 0.5 - 0.02  # 0.02: monotonic vs Redis clock rounding
        assert probed - opened < 5
        assert breakers.status("twilio").state == BreakerState.HALF_OPEN
        assert not other_caller.submit(breakers.allow, "twilio").result()

    def test_probe_success_closes_and_forgets_the_failures(self, make: MakeBreakers) -> None:
        breakers = make(open_for=0.3)
        open_breaker(breakers)
        wait_for_probe(breakers)

        breakers.record("twilio", ok=True)

        status = breakers.status("twilio")
        assert (status.state, status.failures, status.calls, status.errors) == (
            BreakerState.CLOSED,
            0,
            0,
            0,
        )
        assert (status.opened_at, status.retry_at) == (None, None)
        assert all(breakers.allow("twilio") for _ in range(10))

    def test_probe_failure_reopens_for_open_for(self, make: MakeBreakers) -> None:
        # given a probe out
        breakers = make(open_for=0.5)
        open_breaker(breakers)
        wait_for_probe(breakers)

        # when it fails
        before = time.monotonic()
        breakers.record("twilio", ok=False)

        # then the breaker is open again, for open_for from now
        status = breakers.status("twilio")
        assert status.state == BreakerState.OPEN
        assert status.failures == 6
        assert not breakers.allow("twilio")
        assert wait_for_probe(breakers) - before >= 0.5 - 0.02

    def test_an_abandoned_probe_frees_its_slot_after_open_for(
        self, make: MakeBreakers, other_caller: ThreadPoolExecutor
    ) -> None:
        # given this caller took the probe and never reports (its worker died)
        breakers = make(open_for=0.5)
        open_breaker(breakers)
        taken = wait_for_probe(breakers)
        assert not other_caller.submit(breakers.allow, "twilio").result()

        # when another caller keeps asking
        freed = other_caller.submit(wait_for_probe, breakers).result()

        # then it becomes the probe once open_for has passed
        assert freed - taken >= 0.5 - 0.02
        # and the first probe's late result decides nothing: only the new probe's does
        breakers.record("twilio", ok=False)
        assert breakers.status("twilio").state == BreakerState.HALF_OPEN
        other_caller.submit(breakers.record, "twilio", ok=True).result()
        assert breakers.status("twilio").state == BreakerState.CLOSED

    def test_results_of_calls_allowed_before_it_opened_change_nothing(
        self, make: MakeBreakers, other_caller: ThreadPoolExecutor
    ) -> None:
        # given a call allowed while closed, still in flight when the breaker opens
        breakers = make(open_for=0.5)
        assert other_caller.submit(breakers.allow, "twilio").result()
        open_breaker(breakers)

        # when it succeeds
        other_caller.submit(breakers.record, "twilio", ok=True).result()

        # then the breaker stays open
        assert breakers.status("twilio").state == BreakerState.OPEN


def test_exactly_one_probe_across_processes(prefix: str) -> None:
    # given an open breaker, and 4 processes ready to ask 200 times each at once
    open_for = 3.0
    breakers = CircuitBreakers(REDIS_URL, prefix=prefix, open_for=open_for)
    open_breaker(breakers)
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(5)
    results = spawn.Queue()
    processes = [
        spawn.Process(
            target=take_probe_slots,
            args=(REDIS_URL, prefix, "twilio", open_for, 200, start, results),
        )
        for _ in range(4)
    ]
    for process in processes:
        process.start()

    # when they are released together once open_for has passed
    while breakers.status("twilio").state != BreakerState.HALF_OPEN:
        time.sleep(0.02)
    start.wait(timeout=120)
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)

    # then exactly one call in 800 was let through
    assert sum(granted for granted, _, _ in outcomes) == 1
    assert all(process.exitcode == 0 for process in processes)
    # all asked within open_for of each other, so the probe's slot could not free meanwhile
    assert max(end for _, _, end in outcomes) - min(start for _, start, _ in outcomes) < open_for


class TestGate:
    """A batch's view of the breakers: a closed breaker trusted for a while, successes reported
    together, failures and the probe's outcome at once."""

    def test_successes_are_reported_together_when_the_batch_ends(self, make: MakeBreakers) -> None:
        breakers = make()
        with breakers.gate() as gate:
            for _ in range(7):
                assert gate.allow("ses")
                gate.record("ses", ok=True)
            assert breakers.status("ses").calls == 0

        status = breakers.status("ses")
        assert (status.state, status.calls, status.errors) == (BreakerState.CLOSED, 7, 0)

    def test_a_failure_is_reported_at_once_after_the_successes_before_it(
        self, make: MakeBreakers
    ) -> None:
        # given four consecutive failures already
        breakers = make()
        for _ in range(4):
            call(breakers, "ses", ok=False)

        # when a batch succeeds twice, then fails
        with breakers.gate() as gate:
            for ok in (True, True, False):
                assert gate.allow("ses")
                gate.record("ses", ok=ok)

            # then the successes ended the run of failures: one failure in a row, not five
            status = breakers.status("ses")
            assert (status.state, status.failures) == (BreakerState.CLOSED, 1)
            assert (status.calls, status.errors) == (7, 5)

    def test_it_opens_on_the_same_failure_as_without_the_gate(self, make: MakeBreakers) -> None:
        breakers = make()
        with breakers.gate() as gate:
            for _ in range(5):
                assert gate.allow("ses")
                gate.record("ses", ok=False)

            assert breakers.status("ses").state == BreakerState.OPEN
            assert not gate.allow("ses")

    def test_a_breaker_opened_elsewhere_is_obeyed_once_trust_runs_out(
        self, make: MakeBreakers, other_caller: ThreadPoolExecutor
    ) -> None:
        # given a batch that found the breaker closed, and successes counted
        breakers = make()
        with breakers.gate(trust_for=0.3) as gate:
            assert gate.allow("ses")
            gate.record("ses", ok=True)
            trusted_at = time.monotonic()

            # when another caller opens it
            other_caller.submit(open_breaker, breakers, "ses").result()

            # then the batch goes on trusting it for at most trust_for, then obeys
            while gate.allow("ses"):
                assert time.monotonic() - trusted_at < 0.3 + 0.2, "the gate never asked again"
                time.sleep(0.02)
            assert time.monotonic() - trusted_at >= 0.3 - 0.02
        # and the late success changed nothing: the breaker is open
        assert breakers.status("ses").state == BreakerState.OPEN

    def test_successes_are_reported_when_trust_runs_out(self, make: MakeBreakers) -> None:
        breakers = make()
        with breakers.gate(trust_for=0.2) as gate:
            for _ in range(3):
                assert gate.allow("ses")
                gate.record("ses", ok=True)
            time.sleep(0.25)

            assert gate.allow("ses")

            assert breakers.status("ses").calls == 3

    def test_a_batch_of_concurrent_calls_asks_redis_once(self, make: MakeBreakers) -> None:
        # given a batch of 200 calls from 32 threads at once
        breakers = make()
        asked = count_questions(breakers)
        with breakers.gate(trust_for=30) as gate, ThreadPoolExecutor(32) as threads:

            def send() -> None:
                assert gate.allow("ses")
                gate.record("ses", ok=True)

            for future in [threads.submit(send) for _ in range(200)]:
                future.result()

        # then one thread asked, the others believed its answer, and every call counted
        assert asked == ["ses"]
        assert breakers.status("ses").calls == 200

    def test_an_open_breaker_is_believed_too(
        self, make: MakeBreakers, other_caller: ThreadPoolExecutor
    ) -> None:
        breakers = make()
        other_caller.submit(open_breaker, breakers, "ses").result()
        asked = count_questions(breakers)

        with breakers.gate() as gate:
            assert not any(gate.allow("ses") for _ in range(50))

        assert asked == ["ses"]

    def test_the_probe_closes_the_breaker_at_once(self, make: MakeBreakers) -> None:
        # given a half-open breaker
        breakers = make(open_for=0.3)
        open_breaker(breakers)
        time.sleep(0.35)

        with breakers.gate() as gate:
            # when the batch's first call is the probe, and it succeeds
            assert gate.allow("twilio")
            assert not gate.allow("twilio")
            gate.record("twilio", ok=True)

            # then the breaker closes before the batch ends
            status = breakers.status("twilio")
            assert (status.state, status.failures) == (BreakerState.CLOSED, 0)
            assert gate.allow("twilio")


class TestReset:
    def test_reset_closes_an_open_breaker(self, make: MakeBreakers) -> None:
        breakers = make()
        open_breaker(breakers)

        breakers.reset("twilio")

        status = breakers.status("twilio")
        assert (status.state, status.failures, status.calls) == (BreakerState.CLOSED, 0, 0)
        assert breakers.allow("twilio")


class TestStatus:
    def test_fields_of_a_closed_breaker(self, make: MakeBreakers) -> None:
        breakers = make()
        for ok in (False, False, True, False):
            call(breakers, "twilio", ok=ok)

        status = breakers.status("twilio")

        assert status.provider == "twilio"
        assert (status.state, status.failures, status.calls, status.errors) == (
            BreakerState.CLOSED,
            1,
            4,
            3,
        )
        assert (status.opened_at, status.retry_at) == (None, None)

    def test_fields_of_an_open_breaker(self, make: MakeBreakers) -> None:
        breakers = make(open_for=30)
        before = time.time()
        open_breaker(breakers)

        status = breakers.status("twilio")

        assert status.state == BreakerState.OPEN
        assert status.opened_at is not None
        assert status.retry_at is not None
        assert before - 1 < status.opened_at < time.time() + 1  # epoch seconds
        assert status.retry_at == pytest.approx(status.opened_at + 30)

    def test_an_unknown_provider_is_closed(self, make: MakeBreakers) -> None:
        assert make().status("never-called").state == BreakerState.CLOSED


class TestRedisUnreachable:
    def test_each_process_breaks_locally_and_no_call_waits(self) -> None:
        # given
        breakers = CircuitBreakers(unreachable_redis(), open_for=0.3)
        durations = []

        def timed(method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            result = method(*args, **kwargs)
            durations.append(time.monotonic() - started)
            return result

        # when: state starts closed, opens after 5 failures, probes after open_for
        assert timed(breakers.status, "twilio").state == BreakerState.CLOSED
        for _ in range(5):
            assert timed(breakers.allow, "twilio")
            timed(breakers.record, "twilio", ok=False)
        opened = timed(breakers.status, "twilio")
        refused = timed(breakers.allow, "twilio")
        time.sleep(0.4)
        probe = timed(breakers.allow, "twilio")
        second = timed(breakers.allow, "twilio")
        timed(breakers.record, "twilio", ok=True)

        # then
        assert (opened.state, opened.source) == (BreakerState.OPEN, "local")
        assert (refused, probe, second) == (False, True, False)
        assert breakers.status("twilio").state == BreakerState.CLOSED
        assert max(durations) < 0.3


class TestFromSettings:
    def test_the_process_instance_follows_its_settings(self, settings: Any, prefix: str) -> None:
        # given
        settings.NOTIFIER_BREAKER_PREFIX = prefix
        first = breakers()

        # when a setting it was made from changes
        settings.NOTIFIER_BREAKER = {**settings.NOTIFIER_BREAKER, "OPEN_FOR": 0.5}

        # then
        assert breakers() is not first
        assert breakers().rules.open_for == 0.5
        assert breakers() is breakers()

    @pytest.mark.parametrize(
        "breaker",
        [
            {"CONSECUTIVE_FAILURES": 5},
            {**settings.NOTIFIER_BREAKER, "ERROR_RATE": 1.5},
            {**settings.NOTIFIER_BREAKER, "OPEN_FOR": 0},
        ],
    )
    def test_a_bad_setting_fails_naming_it(self, settings: Any, breaker: dict[str, Any]) -> None:
        settings.NOTIFIER_BREAKER = breaker

        with pytest.raises(ImproperlyConfigured, match="NOTIFIER_BREAKER"):
            breakers()
