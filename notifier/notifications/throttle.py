"""Outbound rate limits per provider account, shared by every worker through Redis.

Providers cap how fast an account may call them (Twilio: messages per second per number or
account; SES: its sending rate). The delivery pipeline asks ``acquire`` before each provider
call and waits (defers the delivery) for ``retry_after`` when refused; when the provider still
answers 429 it calls ``penalize``, which halves the effective rate and shuts the bucket for the
provider's Retry-After; the rate then recovers additively (``notifier.core.ratelimit``).

Redis down (SPEC guarantee 9): each process limits itself to its share of the limit, the
configured rate and burst divided by ``NOTIFIER_WORKER_PROCESSES_HINT``. With as many worker
processes as the hint says, the total stays at the configured limit; with more, it exceeds it
in proportion, and the provider's 429s (penalize) take over. A throttle only ever delays a call,
so it can cause neither a duplicate nor a lost delivery.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from notifier.core.ratelimit import TokenBuckets


@dataclass(frozen=True)
class Permit:
    allowed: bool
    retry_after: float  # seconds until a token would be available; 0 when allowed


class ProviderThrottle:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "notifier:throttle",
        limits: Mapping[str, tuple[float, int]],
        processes_hint: int | None = None,
    ) -> None:
        """``limits``: provider -> (rate per second, burst). ``processes_hint``: worker
        processes sharing the limit, each taking its share while Redis is down (default:
        ``NOTIFIER_WORKER_PROCESSES_HINT``)."""
        self._limits = dict(limits)
        if processes_hint is None:
            processes_hint = getattr(settings, "NOTIFIER_WORKER_PROCESSES_HINT", 4)
        self._buckets = TokenBuckets(
            url, prefix=f"{prefix}:", local_share=1 / max(1, processes_hint)
        )

    def limit(self, provider: str) -> tuple[float, int] | None:
        return self._limits.get(provider)

    def acquire(self, provider: str, tokens: int = 1) -> Permit:
        """Take ``tokens`` from the provider's bucket if it has them; providers without a limit
        are always allowed."""
        limit = self._limits.get(provider)
        if limit is None:
            return Permit(allowed=True, retry_after=0.0)
        rate, burst = limit
        decision = self._buckets.take(provider, rate=rate, burst=burst, cost=tokens)
        return Permit(allowed=decision.allowed, retry_after=decision.retry_after)

    def penalize(self, provider: str, retry_after: float | None) -> None:
        """The provider answered 429: halve its effective rate (at most once a second, never
        below 10% of the configured one) and refuse every call for ``retry_after`` seconds."""
        limit = self._limits.get(provider)
        if limit is None:
            return
        rate, burst = limit
        self._buckets.penalize(provider, rate=rate, burst=burst, block=retry_after or 0.0)

    def status(self, provider: str) -> dict[str, float]:
        """Configured ``rate`` and ``burst``, ``effective_rate``, ``tokens`` now and
        ``blocked_until`` (epoch seconds, 0 when not blocked); empty without a limit. ``local``
        is 1 when Redis is down and the figures are this process's share, else 0."""
        limit = self._limits.get(provider)
        if limit is None:
            return {}
        rate, burst = limit
        state = self._buckets.peek(provider, rate=rate, burst=burst)
        return {
            "rate": float(rate),
            "burst": float(burst),
            "effective_rate": state.effective_rate,
            "tokens": state.tokens,
            "blocked_until": state.blocked_until,
            "local": float(state.source == "local"),
        }

    def reset(self, provider: str) -> None:
        """Forget the provider's bucket and penalty (operator action, tests)."""
        self._buckets.forget(provider)


def limits_from_settings() -> dict[str, tuple[float, int]]:
    """``NOTIFIER_PROVIDER_RATE_LIMITS`` as (rate, burst) per provider; fails naming the setting."""
    configured = settings.NOTIFIER_PROVIDER_RATE_LIMITS
    if not isinstance(configured, Mapping):
        raise ImproperlyConfigured("NOTIFIER_PROVIDER_RATE_LIMITS must be a mapping")
    limits: dict[str, tuple[float, int]] = {}
    for provider, entry in configured.items():
        path = f"NOTIFIER_PROVIDER_RATE_LIMITS[{provider!r}]"
        if not isinstance(entry, Mapping) or set(entry) - {"RATE", "BURST"} or "RATE" not in entry:
            raise ImproperlyConfigured(f"{path} must be {{'RATE': per second, 'BURST': n}}")
        rate = float(entry["RATE"])
        burst = int(entry.get("BURST", max(1, round(rate))))
        if rate <= 0 or burst < 1:
            raise ImproperlyConfigured(f"{path}: RATE must be > 0 and BURST >= 1")
        limits[str(provider)] = (rate, burst)
    return limits


_throttle: tuple[tuple[object, ...], ProviderThrottle] | None = None
_throttle_lock = threading.Lock()


def throttle() -> ProviderThrottle:
    """The process's throttle, from settings: created on first use (in each worker), and again
    when the settings it was made from change (tests, ``override_settings``)."""
    global _throttle
    limits = limits_from_settings()
    made_from = (
        settings.REDIS_URL,
        settings.NOTIFIER_THROTTLE_PREFIX,
        tuple(sorted(limits.items())),
        settings.NOTIFIER_WORKER_PROCESSES_HINT,
    )
    with _throttle_lock:
        if _throttle is None or _throttle[0] != made_from:
            instance = ProviderThrottle(
                settings.REDIS_URL,
                prefix=settings.NOTIFIER_THROTTLE_PREFIX,
                limits=limits,
                processes_hint=settings.NOTIFIER_WORKER_PROCESSES_HINT,
            )
            _throttle = (made_from, instance)
        return _throttle[1]


def reset_throttle() -> None:
    """Forget the process's throttle and its local buckets (tests, reloads)."""
    global _throttle
    with _throttle_lock:
        _throttle = None
