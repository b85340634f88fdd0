"""Scripted failures, per provider: how the sandbox imitates a provider having a bad day.

A fault is set for one provider and applies to its next ``times`` requests (or until cleared).
Each stand-in takes the fault once per request (per connection for SMTP) and applies it in the
same order, so one fault may combine effects:

1. ``down``: the provider cannot be reached, so the client knows nothing was sent. The HTTP
   stand-ins (FCM, Twilio, SES, SNS) close their own port until the fault is cleared
   (connection refused; so ``times`` does not apply to them); APNs and SMTP reset each new
   connection before the first byte (TLS or greeting), counting connections. Nothing is recorded.
   ``drop``: HTTP stand-ins only; read the request, then close the connection without an
   answer. Nothing is recorded, but the client cannot tell (an unknown outcome).
2. ``latency_ms``: wait before answering.
3. ``status`` (e.g. 500, 503), then ``rate_limit`` (429 with ``Retry-After``): answer with the
   provider's own error shape; nothing is recorded.
4. ``unregistered``: answer with the provider's "this recipient is gone" error.
5. ``hang``: record the message as accepted, then never answer (the client times out, not
   knowing whether it was sent: the "timeout after accept" case).

``callbacks`` shapes the delivery callbacks of the messages accepted meanwhile (Twilio status
callbacks, SES events over SNS): ``normal`` (the default), ``off`` (none), ``duplicate`` (each
sent twice) or ``out_of_order`` (in reverse: ``delivered`` before ``sent``).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import asdict, dataclass, replace
from typing import Any

from notifier.sandbox.store import PROVIDERS

CALLBACK_MODES = ("normal", "off", "duplicate", "out_of_order")
HTTP_PROVIDERS = ("fcm", "twilio", "ses", "sns")
"""The stand-ins served over plain HTTP, each on its own port (closed while ``down``)."""


class FaultError(ValueError):
    """A fault specification the sandbox cannot apply; the API answers 400 with its text."""


@dataclass(frozen=True)
class Fault:
    latency_ms: int = 0
    status: int | None = None
    retry_after: int | None = None
    """Set by ``rate_limit``: answer 429 with this ``Retry-After`` (seconds)."""
    unregistered: bool = False
    hang: bool = False
    down: bool = False
    drop: bool = False
    callbacks: str = "normal"
    times: int | None = None
    """How many more requests this fault applies to; ``None`` = until cleared."""

    @property
    def rate_limited(self) -> bool:
        return self.retry_after is not None

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Fault:
        """Build a fault from the JSON API's (or ``set_fault``'s) keyword form, validating it."""
        spec = dict(spec)
        rate_limit = spec.pop("rate_limit", None)
        unknown = set(spec) - {
            "latency_ms",
            "status",
            "unregistered",
            "hang",
            "down",
            "drop",
            "callbacks",
            "times",
        }
        if unknown:
            raise FaultError(f"unknown fault keys: {', '.join(sorted(unknown))}")
        retry_after = None
        if rate_limit is not None:
            if rate_limit is True:
                rate_limit = {}
            if not isinstance(rate_limit, dict):
                raise FaultError('rate_limit must be an object like {"retry_after": 2}')
            retry_after = _integer(rate_limit.get("retry_after", 1), "rate_limit.retry_after")
        status = spec.get("status")
        if status is not None:
            status = _integer(status, "status")
            if not 400 <= status <= 599:
                raise FaultError("status must be an HTTP error status (400-599)")
        times = spec.get("times")
        if times is not None:
            times = _integer(times, "times")
            if times < 1:
                raise FaultError("times must be at least 1 (omit it for 'until cleared')")
        callbacks = spec.get("callbacks", "normal")
        if callbacks not in CALLBACK_MODES:
            raise FaultError(f"callbacks must be one of {', '.join(CALLBACK_MODES)}")
        return cls(
            callbacks=callbacks,
            latency_ms=_integer(spec.get("latency_ms", 0), "latency_ms"),
            status=status,
            retry_after=retry_after,
            unregistered=_flag(spec, "unregistered"),
            hang=_flag(spec, "hang"),
            down=_flag(spec, "down"),
            drop=_flag(spec, "drop"),
            times=times,
        )

    def as_spec(self) -> dict[str, Any]:
        """The inverse of :meth:`from_spec`, as ``GET /_sandbox/faults`` shows it."""
        spec = asdict(self)
        retry_after = spec.pop("retry_after")
        if retry_after is not None:
            spec["rate_limit"] = {"retry_after": retry_after}
        return spec


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FaultError(f"{name} must be a non-negative integer")
    return value


def _flag(spec: dict[str, Any], name: str) -> bool:
    value = spec.get(name, False)
    if not isinstance(value, bool):
        raise FaultError(f"{name} must be true or false")
    return value


class FaultBoard:
    """The faults currently set, one per provider; shared by the loop and the caller's threads."""

    def __init__(self) -> None:
        self._faults: dict[str, Fault] = {}
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()

    def set(self, provider: str, fault: Fault) -> None:
        if provider not in PROVIDERS:
            raise FaultError(f"unknown provider {provider!r}; one of {', '.join(PROVIDERS)}")
        if provider in HTTP_PROVIDERS and fault.down and fault.times is not None:
            raise FaultError(
                f"down closes {provider}'s port until cleared; refused connections cannot be"
                " counted, so times does not apply (drop does count requests)"
            )
        if provider not in HTTP_PROVIDERS and fault.drop:
            raise FaultError(f"drop applies to the HTTP stand-ins ({', '.join(HTTP_PROVIDERS)})")
        with self._lock:
            self._faults[provider] = fault

    def clear(self, provider: str | None = None) -> None:
        with self._lock:
            if provider is None:
                self._faults.clear()
            else:
                self._faults.pop(provider, None)

    def current(self) -> dict[str, Fault]:
        with self._lock:
            return dict(self._faults)

    def take(self, provider: str) -> Fault | None:
        """The fault for this request, counting it against ``times``."""
        with self._lock:
            self._seen[provider] += 1
            return self._take_locked(provider)

    def requests_seen(self, provider: str) -> int:
        """Requests (SMTP: connections) that reached ``provider``, faulted or not: what a test
        counts to bound the calls made to a provider that is failing."""
        with self._lock:
            return self._seen[provider]

    def down(self) -> frozenset[str]:
        """The providers that are down now."""
        with self._lock:
            return frozenset(name for name, fault in self._faults.items() if fault.down)

    def is_down(self, provider: str) -> bool:
        """For listeners that refuse whole connections: take the fault only if it is ``down``."""
        with self._lock:
            fault = self._faults.get(provider)
            if fault is None or not fault.down:
                return False
            self._seen[provider] += 1
            self._take_locked(provider)
            return True

    def _take_locked(self, provider: str) -> Fault | None:
        fault = self._faults.get(provider)
        if fault is None or fault.times is None:
            return fault
        if fault.times <= 1:
            del self._faults[provider]
        else:
            self._faults[provider] = replace(fault, times=fault.times - 1)
        return fault
