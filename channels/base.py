"""The provider contract: what the delivery pipeline hands a provider and what it gets back."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final

from channels.errors import ProviderConfigurationError

# The same values as ``notifier.core.enums.Channel`` and the priorities of notification types;
# repeated here because ``channels`` never imports ``notifier``.
CHANNELS: Final = ("push", "email", "sms")
PRIORITIES: Final = ("critical", "high", "normal", "low")
# A push device's platform (``notifier``'s device platforms), or "" when unknown or not push.
PLATFORMS: Final = ("ios", "android", "web", "")


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One rendered message for one destination, as the pipeline hands it to a provider."""

    channel: str  # "push" | "email" | "sms"
    destination: str  # normalized email address, E.164 number or push token
    subject: str  # email subject / push title ("" for sms)
    body: str  # text
    html: str  # email html ("" otherwise)
    correlation_id: str  # our delivery id; providers echo it where the vendor allows
    priority: str = "normal"  # critical | high | normal | low
    expires_at: datetime | None = None  # aware; providers pass the remaining TTL where they can
    data: Mapping[str, str] = field(default_factory=dict)  # push data payload
    platform: str = ""  # push: the device's platform, ios | android | web ("" if unknown)

    def __post_init__(self) -> None:
        if self.channel not in CHANNELS:
            raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, not {self.channel!r}")
        if self.priority not in PRIORITIES:
            raise ValueError(
                f"priority must be one of {', '.join(PRIORITIES)}, not {self.priority!r}"
            )
        if self.platform not in PLATFORMS:
            raise ValueError(
                f"platform must be one of {', '.join(map(repr, PLATFORMS))}, not {self.platform!r}"
            )
        if self.expires_at is not None and self.expires_at.utcoffset() is None:
            raise ValueError("expires_at must be timezone-aware")
        # A copy, so that a caller changing its dict later cannot change a message in flight.
        object.__setattr__(self, "data", dict(self.data))

    def remaining_ttl(self, now: datetime | None = None) -> timedelta | None:
        """Time left until ``expires_at`` (never negative), or ``None`` when it never expires.

        For vendors that take a relative TTL (FCM ``ttl``, Twilio ``ValidityPeriod``). Whether
        an expired message is sent at all is the pipeline's decision, not the provider's.
        """
        if self.expires_at is None:
            return None
        return max(self.expires_at - (now or datetime.now(UTC)), timedelta(0))


@dataclass(frozen=True, slots=True)
class SendResult:
    """The provider accepted the message."""

    provider: str  # registry name of the provider, e.g. "sandbox"
    provider_message_id: str  # the vendor's id, to match delivery receipts and webhooks


class Provider(ABC):
    """A way to send messages of a channel: one vendor API, or a stand-in for one.

    To add a provider, subclass this in a module of ``channels.providers``, set
    ``supported_channels``, and implement:

    - ``__init__(*, name, channel, options)``: call ``super().__init__`` and read ``options``
      (the ``OPTIONS`` of its settings entry). Raise ``ProviderConfigurationError`` for a
      missing or malformed option. Do no network I/O here: the registry builds providers
      lazily, in each worker process, and a constructor that connects would do so at import
      of the first task.
    - ``send(message)``: send one message and return a ``SendResult`` once the vendor has
      accepted it.

    ``send`` raises only from ``channels.errors``, translating every vendor exception with
    ``raise ... from exc``:

    - ``ProviderUnavailable``: the message certainly was not taken (connect error, 5xx).
    - ``ProviderTimeout``: the request went out and no answer came back; it may have been taken.
    - ``RateLimited``: 429 or a throttle code, with ``retry_after`` when the vendor gives one.
    - ``InvalidRecipient``, ``RecipientUnreachable``, ``RecipientOptedOut``,
      ``MessageRejected``, ``UnsupportedFeature``: it never will be taken as it stands.
    - ``ProviderConfigurationError``: credentials refused (401/403) or settings wrong.

    A provider never retries, never sleeps for ``retry_after`` and never swallows an error:
    the pipeline owns retries and records every attempt. One instance serves every thread of
    a worker process, so ``send`` must be thread-safe.
    """

    # The channels this class can be configured for; the registry refuses any other.
    supported_channels: ClassVar[frozenset[str]] = frozenset()

    name: str  # the key of its settings entry, e.g. "twilio"
    channel: str  # the channel it was configured for

    def __init__(self, *, name: str, channel: str, options: Mapping[str, Any]) -> None:
        if channel not in self.supported_channels:
            raise ProviderConfigurationError(
                f"{type(self).__name__} cannot send {channel!r} messages; it supports "
                f"{', '.join(sorted(self.supported_channels)) or 'no channel'}",
                provider=name,
            )
        self.name = name
        self.channel = channel
        self.options = options

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.channel}/{self.name}>"

    @abstractmethod
    def send(self, message: OutboundMessage) -> SendResult:
        """Send ``message`` and return what the vendor answered; see the class docstring."""
