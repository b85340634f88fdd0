"""The error taxonomy shared by channels and providers (see STYLE.md).

Whether to retry is decided by the class, so callers never inspect status codes:

- ``TransientError`` may succeed later: retry with backoff. ``outcome_unknown`` says whether
  the provider may already have accepted the message, so that a retry may duplicate it.
- ``PermanentError`` never will as the message stands: fail the delivery.
- ``ProviderConfigurationError`` is an operator's mistake (missing setting, bad credentials).
  It is deliberately outside ``ChannelError`` so that no ``except ChannelError`` hides it, and
  it is never retried: every retry would fail the same way.

Providers translate every vendor exception into one of these with ``raise ... from exc`` and
fill in what they know of the provider's answer.
"""

from __future__ import annotations

from typing import ClassVar

# Enough of a response body to recognise the vendor's complaint; the rest goes to the logs
# of whoever can read the vendor's dashboard, not into our attempt rows.
EXCERPT_MAX_CHARS = 500


class ChannelError(Exception):
    """Base of every error raised by ``channels``; each one is transient or permanent.

    ``provider`` is the registry name of the provider that answered, ``status_code`` its HTTP
    status (``None`` when there was no HTTP answer), ``provider_code`` the vendor's own error
    code, and ``excerpt`` a short part of its response. The excerpt is stored and shown to
    support: providers pass it with credentials and recipients' personal data removed.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status_code: int | None = None,
        provider_code: str = "",
        excerpt: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status_code = status_code
        self.provider_code = provider_code
        if len(excerpt) > EXCERPT_MAX_CHARS:
            excerpt = excerpt[: EXCERPT_MAX_CHARS - 1] + "…"
        self.excerpt = excerpt

    def __str__(self) -> str:
        details = []
        if self.provider:
            details.append(f"provider={self.provider}")
        if self.status_code is not None:
            details.append(f"status={self.status_code}")
        if self.provider_code:
            details.append(f"code={self.provider_code}")
        if self.excerpt:
            details.append(f"response={self.excerpt!r}")
        return f"{self.message} ({', '.join(details)})" if details else self.message


class TransientError(ChannelError):
    """The send may succeed if retried later.

    ``outcome_unknown`` is false when the provider certainly did not take the message, so a
    retry cannot duplicate it, and true when it may have (only ``ProviderTimeout``).
    """

    outcome_unknown: ClassVar[bool] = False


class ProviderUnavailable(TransientError):
    """The provider did not take the message: connection refused or reset before the request
    was sent, DNS failure, or a 5xx (500, 502, 503, 504) answer. Safe to retry."""


class RateLimited(TransientError):
    """The provider refused the request for now: HTTP 429 or a vendor throttling code.

    ``retry_after`` is the wait in seconds the provider asked for (``Retry-After``), or
    ``None`` when it did not say; a retry should not come sooner.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        provider: str = "",
        status_code: int | None = None,
        provider_code: str = "",
        excerpt: str = "",
    ) -> None:
        super().__init__(
            message,
            provider=provider,
            status_code=status_code,
            provider_code=provider_code,
            excerpt=excerpt,
        )
        self.retry_after = retry_after


class ProviderTimeout(TransientError):
    """The request was sent but no answer came back in time (read timeout, connection lost
    after sending). The provider may have accepted the message: a retry may duplicate it, so
    the attempt is recorded as having an unknown outcome."""

    outcome_unknown: ClassVar[bool] = True


class PermanentError(ChannelError):
    """The send will never succeed as it stands: fail the delivery, do not retry."""


class InvalidRecipient(PermanentError):
    """The provider refused the destination as malformed or impossible: a bad email address,
    a number that is not a mobile number, a token of the wrong shape."""


class InvalidAddress(InvalidRecipient, ValueError):
    """An address (email, phone number, push token) is malformed for its channel.

    Raised by the channel modules' own validation, before any provider sees the address; it
    is an ``InvalidRecipient`` that we found rather than the provider.
    """


class RecipientUnreachable(PermanentError):
    """The destination is well formed but gone: an unregistered or expired push token (FCM
    ``UNREGISTERED``, APNs 410, web push 404/410), a hard bounce, a landline. The service
    deactivates the device or suppresses the address."""


class RecipientOptedOut(PermanentError):
    """The recipient asked the provider to stop: an SMS STOP, an unsubscribe or a provider-side
    suppression list. The service records a suppression."""


class MessageRejected(PermanentError):
    """The provider refused the message itself: content policy, size, a sender it does not
    accept. Sending it again unchanged would be refused again."""


class MessageTooLong(MessageRejected):
    """The message is over a limit of its medium or vendor: more SMS segments than allowed, a
    push payload over the vendor's byte limit. Found by our own rules before the vendor is
    called, so ``status_code`` is ``None``; ``size`` and ``limit`` are in ``unit``
    (``"segments"`` or ``"bytes"``)."""

    def __init__(
        self,
        message: str,
        *,
        size: int = 0,
        limit: int = 0,
        unit: str = "",
        provider: str = "",
        status_code: int | None = None,
        provider_code: str = "",
        excerpt: str = "",
    ) -> None:
        super().__init__(
            message,
            provider=provider,
            status_code=status_code,
            provider_code=provider_code,
            excerpt=excerpt,
        )
        self.size = size
        self.limit = limit
        self.unit = unit


class UnsafeHeaderValue(MessageRejected, ValueError):
    """A header value (subject, sender name, custom header) holds a line break, another control
    character or an encoded line break, which could inject headers into the message. Raised by
    ``channels.email.check_header_value``; a ``ValueError`` too, so that settings checks can
    turn it into a ``ProviderConfigurationError``."""


class UnsupportedFeature(PermanentError):
    """The message uses something this provider cannot do (an attachment, html over SMS). Raised
    rather than silently dropping the part it cannot send."""


class ProviderConfigurationError(Exception):
    """Provider settings are missing or wrong: a setting absent or malformed, an unknown
    provider name, a class that cannot be imported, or credentials the provider refuses
    (HTTP 401/403). Deliberately outside ``ChannelError``: never retried, never hidden."""

    def __init__(self, message: str, *, provider: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider

    def __str__(self) -> str:
        return f"{self.message} (provider={self.provider})" if self.provider else self.message
