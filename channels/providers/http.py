"""What HTTP providers share: status → error, ``Retry-After``, requests exceptions, excerpts.

Every HTTP vendor answers in the same few ways; this module says once what each means in
``channels.errors``, so that a provider module only adds its own vendor codes on top.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from channels.errors import (
    ChannelError,
    MessageRejected,
    ProviderConfigurationError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)

_EMAIL = re.compile(r"[\w.+%-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"\+?\d[\d ().-]{6,}\d")
_BEARER = re.compile(r"(?i)(bearer|basic)\s+[\w.~+/=-]+")
REDACTED = "[redacted]"


def redact(text: str, *secrets: str) -> str:
    """``text`` without ``secrets`` (tokens, keys, the destination), email addresses, phone
    numbers and Authorization credentials: an excerpt is stored and shown to support."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _BEARER.sub(rf"\1 {REDACTED}", text)
    text = _EMAIL.sub(REDACTED, text)
    return _PHONE.sub(REDACTED, text)


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """The wait a ``Retry-After`` header asks for: delta-seconds or an HTTP date (RFC 9110
    §10.2.3); ``None`` when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds or seconds == float("inf"):  # NaN or infinite
        return None
    return max(seconds, 0.0)


def error_for_status(
    status: int,
    message: str,
    *,
    provider: str,
    provider_code: str = "",
    excerpt: str = "",
    retry_after: float | None = None,
) -> ChannelError | ProviderConfigurationError:
    """The error a status means when the vendor's own code says nothing more precise:
    429 rate limited, 5xx unavailable, 401/403 credentials refused, any other 4xx rejected."""
    details = {
        "provider": provider,
        "status_code": status,
        "provider_code": provider_code,
        "excerpt": excerpt,
    }
    if status == 429:
        return RateLimited(message, retry_after=retry_after, **details)  # type: ignore[arg-type]
    if status >= 500:
        return ProviderUnavailable(message, **details)  # type: ignore[arg-type]
    if status in (401, 403):
        return ProviderConfigurationError(
            f"{message} (status {status}: credentials refused)", provider=provider
        )
    return MessageRejected(message, **details)  # type: ignore[arg-type]


def error_for_requests_exception(exc: requests.RequestException, *, provider: str) -> ChannelError:
    """Translate a ``requests`` failure: could the request have reached the vendor?

    Connecting failed (refused, DNS, connect timeout): it certainly was not taken. The
    answer did not come (read timeout, connection dropped after sending): it may have been.
    """
    if isinstance(exc, requests.ConnectTimeout):
        return ProviderUnavailable(f"connect timeout: {exc}", provider=provider)
    if isinstance(exc, requests.ReadTimeout):
        return ProviderTimeout(f"no answer in time: {exc}", provider=provider)
    if isinstance(exc, requests.ConnectionError) and _failed_to_connect(exc):
        return ProviderUnavailable(f"cannot connect: {exc}", provider=provider)
    if isinstance(exc, requests.ConnectionError):
        return ProviderTimeout(f"connection lost awaiting the answer: {exc}", provider=provider)
    return ProviderUnavailable(f"request failed: {exc}", provider=provider)


def _failed_to_connect(exc: BaseException) -> bool:
    """Whether the cause chain of a ``ConnectionError`` is a failure to connect."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(
            current,
            urllib3.exceptions.NewConnectionError
            | urllib3.exceptions.ConnectTimeoutError
            | urllib3.exceptions.NameResolutionError
            | ConnectionRefusedError,
        ):
            return True
        if isinstance(current, urllib3.exceptions.MaxRetryError):
            pending.append(current.reason)
        pending.extend([current.__cause__, current.__context__])
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
    return False


def session_without_retries(*, max_connections: int) -> requests.Session:
    """A ``requests`` session that never retries (the pipeline owns retries) and keeps up to
    ``max_connections`` connections per host, so concurrent threads do not queue."""
    session = requests.Session()
    adapter = HTTPAdapter(
        pool_connections=4,
        pool_maxsize=max_connections,
        # ``read=False`` re-raises a read error as itself (requests' ``ReadTimeout``) instead
        # of wrapping it in ``MaxRetryError``, which would read as a connection failure.
        max_retries=urllib3.Retry(total=0, read=False),
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
