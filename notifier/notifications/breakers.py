"""Circuit breakers per provider, shared by every worker process through Redis.

The delivery pipeline asks ``allow(provider)`` before each provider call and, after a call it
was allowed to make, reports ``record(provider, ok=...)``, through a :class:`BreakerGate` per
batch of calls, which saves most of the round trips to Redis. It decides what counts as a failure:
only errors that say the provider is unhealthy (unavailable, timeouts), never a rejected
recipient. A breaker

- is **closed** while calls go through; it opens after ``consecutive_failures`` failures in a
  row, or when more than ``error_rate`` of the calls of the last ``window`` seconds failed (from
  ``min_calls`` calls on; the window moves in tenths of itself);
- stays **open** for ``open_for`` seconds, refusing every call;
- is then **half-open**: exactly one caller, across all processes, is allowed (the probe). Its
  success closes the breaker (failures and window forgotten), its failure opens it again for
  ``open_for``. A probe that never reports (its worker died) gives up its slot after
  ``open_for``, and the next caller probes. Results of calls allowed before the breaker opened
  change nothing once it is open or half-open.

Every change is one Lua call on Redis's clock. A breaker only ever says "don't call": the
pipeline then fails over or defers, so it can cause neither a duplicate nor a lost delivery.

Redis down (SPEC guarantee 9): each process keeps breakers of its own in memory with the same
rules, starting closed, and tries Redis again after ``RETRY_REDIS_AFTER`` seconds. A failing
provider then gets up to ``consecutive_failures`` calls per process before each process's
breaker opens, and one probe per process when half-open.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from notifier.core.redis_scripts import RedisScripts, RedisUnavailable
from notifier.notifications.breaker_scripts import ALLOW_SCRIPT, RECORD_SCRIPT, STATUS_SCRIPT

# The rolling window is kept as this many slots of window / WINDOW_SLOTS seconds each.
WINDOW_SLOTS = 10
# Breaker state outlives any window and any open period; idle breakers then vanish.
KEEP_FOR = 24 * 3600.0

# What the allow script answers.
_REFUSED, _ALLOWED, _PROBE = 0, 1, 2


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerStatus:
    provider: str
    state: BreakerState  # HALF_OPEN once open_for has passed, whether or not a probe is out
    failures: int  # consecutive failures
    calls: int  # in the current window
    errors: int  # in the current window
    opened_at: float | None  # epoch seconds
    retry_at: float | None  # open: when the probe may go; half-open: when its slot frees
    source: str  # "redis" | "local"


@dataclass(frozen=True)
class BreakerRules:
    consecutive_failures: int
    error_rate: float
    window: float
    min_calls: int
    open_for: float

    @property
    def keep_for(self) -> float:
        return max(KEEP_FOR, 2 * (self.window + self.open_for))


def _snapshot(
    provider: str,
    *,
    stored: str,
    failures: int,
    calls: int,
    errors: int,
    opened_at: float | None,
    retry_at: float | None,
    probe_until: float | None,
    now: float,
    source: str,
) -> BreakerStatus:
    """A status from stored fields: what a caller would meet now."""
    state, shown_retry_at = BreakerState.CLOSED, None
    if stored == BreakerState.OPEN:
        still_open = retry_at is not None and now < retry_at
        state = BreakerState.OPEN if still_open else BreakerState.HALF_OPEN
        shown_retry_at = retry_at
    elif stored == BreakerState.HALF_OPEN:
        state, shown_retry_at = BreakerState.HALF_OPEN, probe_until
    if state == BreakerState.CLOSED:
        opened_at = None
    return BreakerStatus(
        provider, state, failures, calls, errors, opened_at, shown_retry_at, source
    )


@dataclass
class _LocalBreaker:
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    retry_at: float = 0.0
    probe: str = ""
    probe_until: float = 0.0
    window: dict[int, list[int]] = field(default_factory=dict)  # slot -> [calls, errors]


class _LocalBreakers:
    """The same rules in process memory (monotonic clock), for when Redis is unreachable."""

    def __init__(self, rules: BreakerRules) -> None:
        self._rules = rules
        self._lock = threading.Lock()
        self._breakers: dict[str, _LocalBreaker] = {}

    def allow(self, provider: str, token: str) -> int:
        now = time.monotonic()
        with self._lock:
            breaker = self._breakers.setdefault(provider, _LocalBreaker())
            if breaker.state == BreakerState.CLOSED:
                return _ALLOWED
            if breaker.state == BreakerState.OPEN and now < breaker.retry_at:
                return _REFUSED
            if breaker.state == BreakerState.HALF_OPEN and now < breaker.probe_until:
                return _REFUSED
            breaker.state, breaker.probe = BreakerState.HALF_OPEN, token
            breaker.probe_until = now + self._rules.open_for
            return _PROBE

    def record(self, provider: str, *, ok: bool, token: str, earlier_successes: int = 0) -> None:
        now = time.monotonic()
        rules = self._rules
        with self._lock:
            breaker = self._breakers.setdefault(provider, _LocalBreaker())
            if breaker.state == BreakerState.OPEN:
                return
            if breaker.state == BreakerState.HALF_OPEN:
                if breaker.probe != token:
                    return
                if ok:
                    self._breakers[provider] = _LocalBreaker()
                else:
                    breaker.failures += 1
                    self._open(breaker, now)
                return
            if ok or earlier_successes:
                breaker.failures = 0
            breaker.failures += 0 if ok else 1
            slot = math.floor(now / (rules.window / WINDOW_SLOTS))
            for old in [n for n in breaker.window if n <= slot - WINDOW_SLOTS]:
                del breaker.window[old]
            counts = breaker.window.setdefault(slot, [0, 0])
            counts[0] += 1 + earlier_successes
            counts[1] += 0 if ok else 1
            calls = sum(c for c, _ in breaker.window.values())
            errors = sum(e for _, e in breaker.window.values())
            if breaker.failures >= rules.consecutive_failures or (
                calls >= rules.min_calls and errors > rules.error_rate * calls
            ):
                self._open(breaker, now)

    def _open(self, breaker: _LocalBreaker, now: float) -> None:
        breaker.state, breaker.probe, breaker.probe_until = BreakerState.OPEN, "", 0.0
        breaker.opened_at, breaker.retry_at = now, now + self._rules.open_for

    def status(self, provider: str) -> BreakerStatus:
        now, wall = time.monotonic(), time.time()
        with self._lock:
            breaker = self._breakers.get(provider, _LocalBreaker())
            slot = math.floor(now / (self._rules.window / WINDOW_SLOTS))
            current = [c for n, c in breaker.window.items() if n > slot - WINDOW_SLOTS]

            def epoch(moment: float) -> float | None:
                return wall + (moment - now) if moment else None

            return _snapshot(
                provider,
                stored=breaker.state,
                failures=breaker.failures,
                calls=sum(c for c, _ in current),
                errors=sum(e for _, e in current),
                opened_at=epoch(breaker.opened_at),
                retry_at=epoch(breaker.retry_at),
                probe_until=epoch(breaker.probe_until),
                now=wall,
                source="local",
            )

    def reset(self, provider: str) -> None:
        with self._lock:
            self._breakers.pop(provider, None)


class CircuitBreakers:
    """One breaker per provider name, in Redis under ``prefix``; see the module's docstring."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "notifier:breaker",
        consecutive_failures: int = 5,
        error_rate: float = 0.5,
        window: float = 60.0,
        min_calls: int = 10,
        open_for: float = 30.0,
    ) -> None:
        self.rules = BreakerRules(consecutive_failures, error_rate, window, min_calls, open_for)
        self._redis = RedisScripts(url, purpose=f"circuit breakers {prefix}")
        self._allow = self._redis.register(ALLOW_SCRIPT)
        self._record = self._redis.register(RECORD_SCRIPT)
        self._status = self._redis.register(STATUS_SCRIPT)
        self._prefix = prefix
        self._local = _LocalBreakers(self.rules)
        # provider -> token of the probe this thread holds: only the probe's own result may
        # close or reopen a half-open breaker (delivery tasks send from several threads).
        self._probes = threading.local()

    def _key(self, provider: str) -> str:
        return f"{self._prefix}:{provider}"

    def _held_probes(self) -> dict[str, str]:
        held: dict[str, str] | None = getattr(self._probes, "held", None)
        if held is None:
            held = self._probes.held = {}
        return held

    def allow(self, provider: str) -> bool:
        """True when closed, or when this caller takes the single half-open probe slot."""
        return self._decide(provider) != _REFUSED

    def _decide(self, provider: str) -> int:
        """What the allow script answers: refused, allowed (closed) or the probe."""
        token = uuid.uuid4().hex
        try:
            verdict = int(
                self._redis.run(
                    self._allow,
                    keys=[self._key(provider)],
                    args=[self.rules.open_for, token, self.rules.keep_for],
                )
            )
        except RedisUnavailable:
            verdict = self._local.allow(provider, token)
        held = self._held_probes()
        if verdict == _PROBE:
            held[provider] = token
        elif verdict == _ALLOWED:
            held.pop(provider, None)
        return verdict

    def holds_probe(self, provider: str) -> bool:
        """Whether this thread's last call allowed for ``provider`` was the half-open probe."""
        return provider in self._held_probes()

    def record(self, provider: str, *, ok: bool, earlier_successes: int = 0) -> None:
        """Report the outcome of a call ``allow`` let through; ``ok=False`` only for failures
        that mean the provider is unhealthy. Call it from the thread that called ``allow``: a
        half-open breaker's probe is known by the thread that took it.

        ``earlier_successes``: successful calls made before this one and not reported yet
        (:class:`BreakerGate`), counted in the window and ending a run of failures."""
        self._report(
            provider,
            ok=ok,
            token=self._held_probes().pop(provider, ""),
            earlier_successes=earlier_successes,
        )

    def _report(self, provider: str, *, ok: bool, token: str, earlier_successes: int) -> None:
        rules = self.rules
        args = [
            int(ok),
            token,
            rules.consecutive_failures,
            rules.error_rate,
            rules.window,
            rules.min_calls,
            rules.open_for,
            rules.keep_for,
            WINDOW_SLOTS,
            earlier_successes,
        ]
        try:
            self._redis.run(self._record, keys=[self._key(provider)], args=args)
        except RedisUnavailable:
            self._local.record(provider, ok=ok, token=token, earlier_successes=earlier_successes)

    def gate(self, *, trust_for: float = 1.0) -> BreakerGate:
        """The breakers as one batch of provider calls sees them (:class:`BreakerGate`)."""
        return BreakerGate(self, trust_for=trust_for)

    def status(self, provider: str) -> BreakerStatus:
        try:
            values = self._redis.run(
                self._status,
                keys=[self._key(provider)],
                args=[self.rules.window, WINDOW_SLOTS],
            )
        except RedisUnavailable:
            return self._local.status(provider)
        state, failures, calls, errors, opened_at, retry_at, probe_until, now = (
            value.decode() if isinstance(value, bytes) else str(value) for value in values
        )
        return _snapshot(
            provider,
            stored=state,
            failures=int(failures),
            calls=int(calls),
            errors=int(errors),
            opened_at=float(opened_at) if opened_at else None,
            retry_at=float(retry_at) if retry_at else None,
            probe_until=float(probe_until) if probe_until else None,
            now=float(now),
            source="redis",
        )

    def statuses(self, providers: Iterable[str]) -> list[BreakerStatus]:
        return [self.status(provider) for provider in providers]

    def reset(self, provider: str) -> None:
        """Close the provider's breaker and forget its counts (operator action)."""
        self._local.reset(provider)
        with contextlib.suppress(RedisUnavailable):
            self._redis.delete(self._key(provider))


class BreakerGate:
    """The breakers for one batch of provider calls, made from any number of threads: about
    two Redis round trips per provider and batch instead of two per call.

    - One thread at a time asks Redis about a provider; the batch's other threads wait for its
      answer. A breaker found closed (or refusing) is believed by the batch's later calls to
      that provider, without asking Redis, until the batch meets a failure of it or
      ``trust_for`` seconds have passed. A breaker that another process opens meanwhile is
      therefore obeyed at most ``trust_for`` seconds late, and never after a failure this
      batch saw. The half-open probe is never believed for others: one call takes it.
    - Successes are counted here and reported together: with the next failure (before it, so
      a success still ends a run of failures), when trust runs out, and when the batch ends.
    - A failure, and anything the half-open probe reports, goes to Redis at once: a breaker
      opens on the same call as it would without the gate.

    Use it as a context manager: leaving it reports the successes still counted.
    """

    # How long a thread waits for another's answer before asking Redis itself.
    ASK_WAIT = 5.0

    def __init__(self, breakers: CircuitBreakers, *, trust_for: float = 1.0) -> None:
        self._breakers = breakers
        self._trust_for = trust_for
        self._lock = threading.Lock()
        self._believed: dict[str, tuple[float, bool]] = {}  # provider -> (until, allowed)
        self._asking: dict[str, threading.Event] = {}
        self._successes: dict[str, int] = {}

    def __enter__(self) -> BreakerGate:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def allow(self, provider: str) -> bool:
        """As :meth:`CircuitBreakers.allow`: from what the batch believes, or asked once."""
        waited = False
        while True:
            with self._lock:
                until, allowed = self._believed.get(provider, (0.0, False))
                if time.monotonic() < until:
                    return allowed
                asking = self._asking.get(provider)
                if asking is None or waited:
                    asked = self._asking[provider] = threading.Event()
                    successes = self._successes.pop(provider, 0)
                    break
            waited = not asking.wait(self.ASK_WAIT)
        try:
            if successes:
                self._flush(provider, successes)
            verdict = self._breakers._decide(provider)
            if verdict != _PROBE:
                with self._lock:
                    until = time.monotonic() + self._trust_for
                    self._believed[provider] = (until, verdict == _ALLOWED)
            return verdict != _REFUSED
        finally:
            with self._lock:
                if self._asking.get(provider) is asked:
                    del self._asking[provider]
            asked.set()

    def record(self, provider: str, *, ok: bool) -> None:
        """As :meth:`CircuitBreakers.record`, from the thread that called ``allow``."""
        if ok and not self._breakers.holds_probe(provider):
            with self._lock:
                self._successes[provider] = self._successes.get(provider, 0) + 1
            return
        with self._lock:
            successes = self._successes.pop(provider, 0)
            # A failure, or the probe's result: what the batch believed may no longer hold.
            self._believed.pop(provider, None)
        self._breakers.record(provider, ok=ok, earlier_successes=successes)

    def close(self) -> None:
        """Report the successes still counted."""
        with self._lock:
            pending, self._successes = self._successes, {}
            self._believed.clear()
        for provider, successes in pending.items():
            self._flush(provider, successes)

    def _flush(self, provider: str, successes: int) -> None:
        # No probe token: a success counted here was never the probe's, so it cannot close
        # a half-open breaker (the script ignores it there, as it ignores late results).
        self._breakers._report(provider, ok=True, token="", earlier_successes=successes - 1)


def rules_from_settings() -> BreakerRules:
    """``NOTIFIER_BREAKER`` checked; fails naming the setting."""
    configured = settings.NOTIFIER_BREAKER
    names = {
        "CONSECUTIVE_FAILURES": "consecutive_failures",
        "ERROR_RATE": "error_rate",
        "WINDOW": "window",
        "MIN_CALLS": "min_calls",
        "OPEN_FOR": "open_for",
    }
    if not isinstance(configured, dict) or set(configured) != set(names):
        raise ImproperlyConfigured(f"NOTIFIER_BREAKER must have exactly the keys {sorted(names)}")
    rules = BreakerRules(
        consecutive_failures=int(configured["CONSECUTIVE_FAILURES"]),
        error_rate=float(configured["ERROR_RATE"]),
        window=float(configured["WINDOW"]),
        min_calls=int(configured["MIN_CALLS"]),
        open_for=float(configured["OPEN_FOR"]),
    )
    if rules.consecutive_failures < 1 or not 0 < rules.error_rate < 1:
        raise ImproperlyConfigured(
            "NOTIFIER_BREAKER: CONSECUTIVE_FAILURES must be >= 1, ERROR_RATE between 0 and 1"
        )
    if rules.window <= 0 or rules.open_for <= 0 or rules.min_calls < 1:
        raise ImproperlyConfigured("NOTIFIER_BREAKER: WINDOW, OPEN_FOR and MIN_CALLS must be > 0")
    return rules


def configured_providers() -> list[str]:
    """Provider names of ``NOTIFIER_PROVIDERS`` (every channel's backends) and of
    ``NOTIFIER_PROVIDER_RATE_LIMITS``, sorted, each once."""
    names = {
        name
        for channel in settings.NOTIFIER_PROVIDERS.values()
        for name in channel.get("BACKENDS", {})
    }
    return sorted(names | set(settings.NOTIFIER_PROVIDER_RATE_LIMITS))


_breakers: tuple[tuple[str, str, BreakerRules], CircuitBreakers] | None = None
_breakers_lock = threading.Lock()


def breakers() -> CircuitBreakers:
    """The process's breakers, from settings: created on first use (in each worker), and again
    when the settings they were made from change (tests, ``override_settings``)."""
    global _breakers
    rules = rules_from_settings()
    made_from = (settings.REDIS_URL, settings.NOTIFIER_BREAKER_PREFIX, rules)
    with _breakers_lock:
        if _breakers is None or _breakers[0] != made_from:
            instance = CircuitBreakers(
                made_from[0],
                prefix=made_from[1],
                consecutive_failures=rules.consecutive_failures,
                error_rate=rules.error_rate,
                window=rules.window,
                min_calls=rules.min_calls,
                open_for=rules.open_for,
            )
            _breakers = (made_from, instance)
        return _breakers[1]


def reset_breakers() -> None:
    """Forget the process's breakers and their local state (tests, reloads)."""
    global _breakers
    with _breakers_lock:
        _breakers = None
