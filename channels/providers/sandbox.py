"""A stand-in for every vendor: accepts what it is sent, and fails when the destination says so.

The pipeline's tests and ``make run`` use it until real providers land. It stands in for no
particular vendor, so it never replaces a provider's contract suite (STYLE.md).

Records
-------
Every accepted message is kept in ``sent`` (this instance, in memory) and, when the option
``RECORD_TO`` names a file, appended to it as one JSON line with ``provider``, ``channel``,
``destination``, ``subject``, ``body``, ``html``, ``correlation_id``,
``provider_message_id``, ``priority`` and ``at`` (body and html cut at 2000 characters).
Every attempt, accepted or not, is kept in ``attempts`` and, when ``ATTEMPTS_TO`` names a
file, appended to it as ``{"correlation_id", "destination", "outcome"}``; the outcome is
``"accepted"`` or the class name of the error raised (``"ProviderUnavailable"``...).

Options: ``RECORD_TO`` and ``ATTEMPTS_TO`` (file paths; empty or absent: memory only) and
``LATENCY_MS`` (a sleep before every send; default 0) and ``JITTER_MS`` (a random extra
sleep up to that many milliseconds; default 0) and ``DOWN`` (``True``: every send raises
``ProviderUnavailable``, an outage for failover tests; default ``False``).

Failures on demand
------------------
The destination carries the script, so that separate worker processes behave alike without
sharing anything but the attempts file. A marker is looked for, case-blind, in the local part
of an email address (before the ``@``) and in the whole destination of SMS and push:

====================  ===========================================================
``fail-config``       ``ProviderConfigurationError``
``fail-permanent``    ``InvalidRecipient``
``dead-token``        ``RecipientUnreachable``
``opted-out``         ``RecipientOptedOut``
``fail-rejected``     ``MessageRejected``
``rate-limited``      ``RateLimited(retry_after=2.0)``, every time
``fail-transient-N``  ``ProviderUnavailable`` for the first N attempts of the message's
                      ``correlation_id``, then accepted. Attempts are counted in
                      ``ATTEMPTS_TO`` when it is set (so across processes), else by this
                      instance.
``timeout``           accepted and recorded, then ``ProviderTimeout``: the provider took the
                      message and the answer was lost
``slow-MS``           sleeps MS milliseconds before answering, whatever the answer
====================  ===========================================================

When a destination holds several markers, the first in this table decides.

A phone number cannot carry a word, and ``channels.sms.normalize_phone`` refuses one that
tries, so numbers of the ``+1 500 555`` range (valid for libphonenumber, and where Twilio's
test numbers live) stand for markers too:

- ``+15005550001`` fail-permanent, ``+15005550002`` dead-token, ``+15005550003`` fail-config,
  ``+15005550004`` opted-out, ``+15005550005`` fail-rejected, ``+15005550006`` rate-limited,
  ``+15005550007`` timeout;
- ``+15005551NNN`` fail-transient-NNN (``+15005551002``: fails twice, then accepted);
- ``+15005552NNN`` slow-NNN (``+15005552250``: answers after 250 ms).
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from channels.base import CHANNELS, OutboundMessage, Provider, SendResult
from channels.errors import (
    ChannelError,
    InvalidRecipient,
    MessageRejected,
    PermanentError,
    ProviderConfigurationError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    RecipientOptedOut,
    RecipientUnreachable,
)

OPTIONS = ("RECORD_TO", "ATTEMPTS_TO", "LATENCY_MS", "JITTER_MS", "DOWN")
RECORD_TEXT_MAX_CHARS = 2000
RATE_LIMIT_RETRY_AFTER = 2.0

# Marker, error and the HTTP status a vendor would typically answer with; first match wins.
_PERMANENT_MARKERS: tuple[tuple[str, type[PermanentError], int], ...] = (
    ("fail-permanent", InvalidRecipient, 400),
    ("dead-token", RecipientUnreachable, 410),
    ("opted-out", RecipientOptedOut, 400),
    ("fail-rejected", MessageRejected, 422),
)
_TRANSIENT = re.compile(r"fail-transient-(\d+)")
_SLOW = re.compile(r"slow-(\d+)")
_SMS_MARKER_NUMBER = re.compile(r"\+1500555([012])(\d{3})")
_SMS_FIXED_MARKERS = {
    "001": "fail-permanent",
    "002": "dead-token",
    "003": "fail-config",
    "004": "opted-out",
    "005": "fail-rejected",
    "006": "rate-limited",
    "007": "timeout",
}


@dataclass(frozen=True, slots=True)
class AcceptedMessage:
    """A message the sandbox accepted, as it was handed over."""

    message: OutboundMessage
    provider_message_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Attempt:
    """One call of ``send``: ``outcome`` is ``"accepted"`` or the raised error's class name."""

    correlation_id: str
    destination: str
    outcome: str


class SandboxProvider(Provider):
    """Accepts every message of every channel, except those whose destination asks to fail."""

    supported_channels: ClassVar[frozenset[str]] = frozenset(CHANNELS)

    def __init__(self, *, name: str, channel: str, options: Mapping[str, Any]) -> None:
        super().__init__(name=name, channel=channel, options=options)
        unknown = [key for key in options if key not in OPTIONS]
        if unknown:
            raise ProviderConfigurationError(
                f"unknown option(s) {', '.join(map(repr, unknown))}; expected {', '.join(OPTIONS)}",
                provider=name,
            )
        self._record_to = _path_option(options, "RECORD_TO", provider=name)
        self._attempts_to = _path_option(options, "ATTEMPTS_TO", provider=name)
        self._latency_ms = _milliseconds_option(options, "LATENCY_MS", provider=name)
        self._jitter_ms = _milliseconds_option(options, "JITTER_MS", provider=name)
        self._down = options.get("DOWN", False)
        if not isinstance(self._down, bool):
            raise ProviderConfigurationError(
                f"DOWN must be true or false, not {self._down!r}", provider=name
            )
        # Guards the in-memory records, and makes counting and recording an attempt one step.
        self._lock = threading.Lock()
        self._sent: list[AcceptedMessage] = []
        self._attempts: list[Attempt] = []

    @property
    def sent(self) -> list[AcceptedMessage]:
        """The messages this instance accepted, oldest first (a copy)."""
        with self._lock:
            return list(self._sent)

    @property
    def attempts(self) -> list[Attempt]:
        """Every ``send`` call of this instance, oldest first (a copy)."""
        with self._lock:
            return list(self._attempts)

    def clear(self) -> None:
        """Forget the in-memory records, and with them in-memory attempt counts; files stay."""
        with self._lock:
            self._sent.clear()
            self._attempts.clear()

    def send(self, message: OutboundMessage) -> SendResult:
        if message.channel != self.channel:
            raise ValueError(
                f"{self!r} was handed a {message.channel!r} message; the caller picked the "
                "wrong provider"
            )
        script = _script_of(message)
        slow = _SLOW.search(script)
        delay_ms = self._latency_ms + (int(slow[1]) if slow else 0)
        if self._jitter_ms:
            delay_ms += random.uniform(0, self._jitter_ms)  # noqa: S311 - test latency
        if delay_ms:
            time.sleep(delay_ms / 1000)
        with self._lock, self._attempts_file() as attempts_fd:
            try:
                result = self._answer(message, script, attempts_fd)
            except (ChannelError, ProviderConfigurationError) as exc:
                self._record_attempt(message, type(exc).__name__, attempts_fd)
                raise
            self._record_attempt(message, "accepted", attempts_fd)
            return result

    def _answer(self, message: OutboundMessage, script: str, attempts_fd: int | None) -> SendResult:
        """Raise what the script asks for, else accept; the caller holds ``_lock``."""
        if self._down:
            raise ProviderUnavailable(
                "sandbox is down (option DOWN)", provider=self.name, status_code=503
            )
        if "fail-config" in script:
            raise ProviderConfigurationError(
                "sandbox refuses its credentials (marker 'fail-config')", provider=self.name
            )
        for marker, error, status_code in _PERMANENT_MARKERS:
            if marker in script:
                raise error(
                    f"sandbox refuses the message (marker {marker!r})",
                    provider=self.name,
                    status_code=status_code,
                    provider_code=marker,
                )
        if "rate-limited" in script:
            raise RateLimited(
                "sandbox is throttling (marker 'rate-limited')",
                retry_after=RATE_LIMIT_RETRY_AFTER,
                provider=self.name,
                status_code=429,
                provider_code="rate-limited",
            )
        transient = _TRANSIENT.search(script)
        if transient:
            failures = int(transient[1])
            earlier = self._count_attempts(message.correlation_id, attempts_fd)
            if earlier < failures:
                raise ProviderUnavailable(
                    f"sandbox is unavailable (marker {transient[0]!r}, attempt {earlier + 1})",
                    provider=self.name,
                    status_code=503,
                    provider_code="fail-transient",
                )
        provider_message_id = self._accept(message)
        if "timeout" in script:
            raise ProviderTimeout(
                "sandbox accepted the message, then the answer was lost (marker 'timeout')",
                provider=self.name,
                provider_code="timeout",
            )
        return SendResult(provider=self.name, provider_message_id=provider_message_id)

    def _accept(self, message: OutboundMessage) -> str:
        provider_message_id = f"sandbox-{uuid.uuid4().hex}"
        at = datetime.now(UTC)
        if self._record_to is not None:
            record = {
                "provider": self.name,
                "channel": message.channel,
                "destination": message.destination,
                "subject": message.subject,
                "body": message.body[:RECORD_TEXT_MAX_CHARS],
                "html": message.html[:RECORD_TEXT_MAX_CHARS],
                "correlation_id": message.correlation_id,
                "provider_message_id": provider_message_id,
                "priority": message.priority,
                "at": at.isoformat(),
            }
            fd = _open_for_append(self._record_to)
            try:
                _write_line(fd, record, self._record_to)
            finally:
                os.close(fd)
        self._sent.append(AcceptedMessage(message, provider_message_id, at))
        return provider_message_id

    @contextmanager
    def _attempts_file(self) -> Iterator[int | None]:
        """The attempts file, locked against other processes until the block ends."""
        if self._attempts_to is None:
            yield None
            return
        fd = _open_for_append(self._attempts_to, readable=True)
        try:
            # Counting earlier attempts and appending this one must be one step across
            # processes, or two workers retrying the same message would both count N-1.
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)  # releases the lock

    def _count_attempts(self, correlation_id: str, attempts_fd: int | None) -> int:
        if attempts_fd is None:
            return sum(1 for attempt in self._attempts if attempt.correlation_id == correlation_id)
        content = os.pread(attempts_fd, os.fstat(attempts_fd).st_size, 0)
        needle = _dumps(correlation_id)
        return sum(
            1
            for line in content.split(b"\n")
            if needle in line and json.loads(line)["correlation_id"] == correlation_id
        )

    def _record_attempt(self, message: OutboundMessage, outcome: str, fd: int | None) -> None:
        attempt = Attempt(message.correlation_id, message.destination, outcome)
        if fd is not None:
            record = {
                "correlation_id": attempt.correlation_id,
                "destination": attempt.destination,
                "outcome": attempt.outcome,
            }
            _write_line(fd, record, self._attempts_to)
        self._attempts.append(attempt)


def _script_of(message: OutboundMessage) -> str:
    """The part of the destination that may hold markers, lowercased."""
    destination = message.destination
    if message.channel == "email":
        local_part, at, _ = destination.rpartition("@")
        return (local_part if at else destination).lower()
    if message.channel == "sms":
        number = _SMS_MARKER_NUMBER.fullmatch(destination)
        if number:
            kind, digits = number.groups()
            if kind == "1":
                return f"fail-transient-{int(digits)}"
            if kind == "2":
                return f"slow-{int(digits)}"
            return _SMS_FIXED_MARKERS.get(digits, "")
    return destination.lower()


def _path_option(options: Mapping[str, Any], key: str, *, provider: str) -> str | None:
    value = options.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str | os.PathLike):
        raise ProviderConfigurationError(
            f"{key} must be a file path, not {type(value).__name__}", provider=provider
        )
    return os.fspath(value)


def _open_for_append(path: str, *, readable: bool = False) -> int:
    flags = os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | (os.O_RDWR if readable else os.O_WRONLY)
    return os.open(path, flags, 0o644)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _write_line(fd: int, record: Mapping[str, Any], path: str | None) -> None:
    """Append ``record`` as one JSON line with a single ``write``.

    With ``O_APPEND`` the kernel moves to the end and writes in one step, and Linux holds
    the file's lock for the whole write to a local regular file, so lines from concurrent
    processes never interleave. POSIX promises no such thing beyond ``PIPE_BUF`` (4096
    bytes, and for pipes only) and NFS does not keep it; that is why the record's body and
    html are truncated, and why the files belong on local disk.
    """
    line = _dumps(record) + b"\n"
    written = os.write(fd, line)
    if written != len(line):
        raise OSError(f"short write to {path}: {written} of {len(line)} bytes")


def _milliseconds_option(options: Mapping[str, Any], key: str, *, provider: str) -> float:
    value = options.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ProviderConfigurationError(
            f"{key} must be a number of milliseconds >= 0, not {value!r}", provider=provider
        )
    return float(value)
