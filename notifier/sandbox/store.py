"""What the sandbox accepted: a bounded, thread-safe record of messages.

The asyncio loop appends while test threads and the JSON API read, so every access holds one
lock. The record is bounded (oldest dropped first) because ``make run`` may leave the sandbox up
for days while a campaign pushes millions of messages through it.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

DEFAULT_CAPACITY = 10_000

PROVIDER_CHANNELS = {
    "fcm": "push",
    "apns": "push",
    "twilio": "sms",
    "sns": "sms",
    "ses": "email",
    "smtp": "email",
}
PROVIDERS = tuple(PROVIDER_CHANNELS)


@dataclass(frozen=True)
class SandboxMessage:
    """One message a stand-in accepted, normalized across providers.

    ``to`` is the first recipient; ``recipients`` lists all of them (an email may have several).
    ``headers`` holds the delivery options as the provider received them: APNs' ``apns-*``
    headers, FCM's ``android.ttl``, Twilio's ``ValidityPeriod``/``StatusCallback``, SES'
    ``EmailTags``, or the email headers for SMTP and raw SES messages.
    """

    id: str
    provider: str
    to: str
    recipients: tuple[str, ...] = ()
    sender: str | None = None
    subject: str | None = None
    title: str | None = None
    body: str | None = None
    html: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, Any] = field(default_factory=dict)
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def channel(self) -> str:
        return PROVIDER_CHANNELS[self.provider]

    def addressed_to(self, recipient: str) -> bool:
        return recipient == self.to or recipient in self.recipients

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of ``GET /_sandbox/messages`` and ``SandboxServer.messages()``."""
        return {
            "id": self.id,
            "provider": self.provider,
            "channel": self.channel,
            "to": self.to,
            "recipients": list(self.recipients or (self.to,)),
            "from": self.sender,
            "subject": self.subject,
            "title": self.title,
            "body": self.body,
            "html": self.html,
            "data": self.data,
            "headers": self.headers,
            "received_at": self.received_at.isoformat(),
        }


class MessageStore:
    """Accepted messages, oldest first, at most ``capacity`` of them."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._messages: deque[SandboxMessage] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._sequence = itertools.count(1)

    def add(self, message: SandboxMessage) -> SandboxMessage:
        with self._lock:
            self._messages.append(message)
        return message

    def next_number(self) -> int:
        """A process-wide increasing number, for provider ids that look sequential."""
        with self._lock:
            return next(self._sequence)

    def list(
        self,
        *,
        provider: str | None = None,
        to: str | None = None,
        channel: str | None = None,
    ) -> list[SandboxMessage]:
        with self._lock:
            messages = list(self._messages)
        return [
            message
            for message in messages
            if (provider is None or message.provider == provider)
            and (channel is None or message.channel == channel)
            and (to is None or message.addressed_to(to))
        ]

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
