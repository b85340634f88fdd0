"""Push through Apple's APNs (HTTP/2 provider API with a token key), a small client of ours.

Options: ``TEAM_ID``, ``KEY_ID``, ``PRIVATE_KEY`` (the ``.p8`` key's PEM text) or
``PRIVATE_KEY_FILE``, ``TOPIC`` (the app's bundle id), and optionally ``BASE_URL`` (default
``https://api.push.apple.com``; ``https://api.sandbox.push.apple.com`` for development
builds, or a stand-in), ``CA_FILE`` (extra trust, for a stand-in's certificate) and
``TIMEOUT`` (seconds, default 10).

Why our own client: apns2 is dead and aioapns needs monkey-patching (ECOSYSTEM §2.5). This
one is an ``httpx2.AsyncClient(http2=True)`` per provider instance, so per worker process,
running on an event loop thread of its own: one TLS connection to Apple on which every
sending thread's request is a stream of its own (HTTP/2 multiplexing, as Apple asks), and no
retries anywhere. Not the synchronous ``httpx2.Client``: its HTTP/2 connection is one socket
read by whichever thread waits, and with 50 threads in flight against the stand-in its reads
failed with EAGAIN now and then, which a sender can only report as an unknown outcome. The
provider token (ES256 JWT) is cached for all threads and replaced every 40 minutes (Apple
refuses one older than an hour and throttles refreshes more often than every 20), or at once
when Apple calls it expired.

Headers: ``apns-topic``, ``apns-push-type: alert``, ``apns-priority`` (10 for critical and
high, 5 otherwise), ``apns-expiration`` (``expires_at`` in epoch seconds, 0 when it never
expires: see ``expiration_header``), ``apns-collapse-id`` from
``data["collapse_id"]`` (at most 64 bytes) and ``apns-id``, a UUID derived from our delivery
id (the correlation id itself when it is a UUID), which Apple echoes and reports.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import ssl
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Final

import httpx2
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from channels.base import OutboundMessage, Provider, SendResult
from channels.email import check_header_value
from channels.errors import (
    ChannelError,
    InvalidRecipient,
    MessageRejected,
    ProviderConfigurationError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    RecipientUnreachable,
)
from channels.providers.http import error_for_status, redact, retry_after_seconds
from channels.providers.options import OptionReader
from channels.push import APNS_MAX_PAYLOAD_BYTES, fit_payload

OPTIONS: Final = (
    "TEAM_ID",
    "KEY_ID",
    "PRIVATE_KEY",
    "PRIVATE_KEY_FILE",
    "TOPIC",
    "BASE_URL",
    "CA_FILE",
    "TIMEOUT",
)
DEFAULT_BASE_URL: Final = "https://api.push.apple.com"
TOKEN_LIFETIME_SECONDS: Final = 40 * 60
MAX_COLLAPSE_ID_BYTES: Final = 64
CORRELATION_KEY: Final = "notifier_delivery_id"
COLLAPSE_KEY: Final = "collapse_id"
# apns-id for correlation ids that are not UUIDs: uuid5 in a namespace of our own.
_APNS_ID_NAMESPACE: Final = uuid.UUID("5f1d8c52-6c1e-4d7a-9a53-2f7b3e0c9a41")
_HIGH_PRIORITIES: Final = ("critical", "high")
_TOKEN_REASONS: Final = frozenset({"ExpiredProviderToken", "InvalidProviderToken"})

# Apple's reasons: https://developer.apple.com/documentation/usernotifications/handling-notification-responses-from-apns
_REASONS: Final[Mapping[str, type[ChannelError]]] = {
    "BadDeviceToken": RecipientUnreachable,  # a token of another environment, or garbage
    "Unregistered": RecipientUnreachable,
    "ExpiredToken": RecipientUnreachable,
    "DeviceTokenNotForTopic": InvalidRecipient,
    "PayloadTooLarge": MessageRejected,
    "TooManyRequests": RateLimited,
    "TooManyProviderTokenUpdates": RateLimited,
    "InternalServerError": ProviderUnavailable,
    "ServiceUnavailable": ProviderUnavailable,
    "Shutdown": ProviderUnavailable,
}
# The key, team or topic is wrong: every push would be refused the same way.
_CONFIGURATION_REASONS: Final = frozenset(
    {
        "BadCertificate",
        "BadCertificateEnvironment",
        "BadTopic",
        "Forbidden",
        "InvalidProviderToken",
        "ExpiredProviderToken",
        "MissingProviderToken",
        "MissingTopic",
        "TopicDisallowed",
        "InvalidPushType",
        "BadPath",
    }
)


class ProviderToken:
    """The ES256 JWT APNs authenticates us with: made when missing or 40 minutes old, or
    when a request was refused with the current one; shared by all threads."""

    def __init__(self, *, team_id: str, key_id: str, private_key: ec.EllipticCurvePrivateKey):
        self._team_id = team_id
        self._key_id = key_id
        self._private_key = private_key
        self._lock = threading.Lock()
        self._token = ""
        self._issued_at = 0.0

    def current(self, *, refused: str = "", now: float | None = None) -> str:
        now = time.time() if now is None else now
        with self._lock:
            stale = now - self._issued_at >= TOKEN_LIFETIME_SECONDS
            if not self._token or stale or self._token == refused:
                self._token = jwt.encode(
                    {"iss": self._team_id, "iat": int(now)},
                    self._private_key,
                    algorithm="ES256",
                    headers={"kid": self._key_id},
                )
                self._issued_at = now
            return self._token


class APNsProvider(Provider):
    """Sends each push as one HTTP/2 request on the process's shared connection."""

    supported_channels: ClassVar[frozenset[str]] = frozenset({"push"})

    def __init__(self, *, name: str, channel: str, options: Mapping[str, Any]) -> None:
        super().__init__(name=name, channel=channel, options=options)
        reader = OptionReader(options, provider=name, known=OPTIONS)
        self.topic = reader.string("TOPIC")
        self.base_url = reader.url("BASE_URL", required=False, default=DEFAULT_BASE_URL)
        self.timeout = reader.timeout()
        self.token = ProviderToken(
            team_id=reader.string("TEAM_ID"),
            key_id=reader.string("KEY_ID"),
            private_key=_private_key(reader),
        )
        self.client = httpx2.AsyncClient(
            http2=True,
            base_url=self.base_url,
            verify=_ssl_context(reader),
            timeout=httpx2.Timeout(self.timeout),
            # No connection pool to speak of: HTTP/2 carries every thread's request on one.
            limits=httpx2.Limits(max_connections=4, max_keepalive_connections=1),
        )
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name=f"apns-{name}", daemon=True).start()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.client.aclose(), self._loop).result(self.timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)

    def send(self, message: OutboundMessage) -> SendResult:
        body = self.build_payload(message)
        headers = self.build_headers(message)
        token = self.token.current()
        response = self._post(message, body, headers, token)
        if response.status_code == 403 and _reason(response) in _TOKEN_REASONS:
            # Apple took nothing; one new token decides between a stale token and a bad key.
            response = self._post(message, body, headers, self.token.current(refused=token))
        if response.status_code != 200:
            raise self._error(response, message)
        apns_id = response.headers.get("apns-id") or headers["apns-id"]
        return SendResult(provider=self.name, provider_message_id=str(apns_id))

    def build_payload(self, message: OutboundMessage) -> bytes:
        """The JSON body: ``aps.alert`` with the body cut to fit 4096 bytes, then the data
        keys (``aps`` excepted) and our ``notifier_delivery_id`` at the top level."""
        custom = {key: value for key, value in message.data.items() if key != "aps"}
        custom[CORRELATION_KEY] = message.correlation_id

        def build(body: str) -> dict[str, Any]:
            return {
                "aps": {"alert": {"title": message.subject, "body": body}, "sound": "default"},
                **custom,
            }

        _, encoded = fit_payload(build, message.body, max_bytes=APNS_MAX_PAYLOAD_BYTES)
        return encoded

    def build_headers(self, message: OutboundMessage) -> dict[str, str]:
        headers = {
            "apns-topic": self.topic,
            "apns-push-type": "alert",
            "apns-priority": "10" if message.priority in _HIGH_PRIORITIES else "5",
            "apns-expiration": expiration_header(message),
            "apns-id": apns_id(message.correlation_id),
        }
        collapse_id = message.data.get(COLLAPSE_KEY, "")
        if collapse_id:
            check_header_value(collapse_id, field="collapse_id", provider=self.name)
            if len(collapse_id.encode()) > MAX_COLLAPSE_ID_BYTES:
                raise MessageRejected(
                    f"collapse_id is {len(collapse_id.encode())} bytes; APNs allows "
                    f"{MAX_COLLAPSE_ID_BYTES}",
                    provider=self.name,
                )
            headers["apns-collapse-id"] = collapse_id
        return headers

    def _post(
        self, message: OutboundMessage, body: bytes, headers: dict[str, str], token: str
    ) -> httpx2.Response:
        request = self.client.post(
            f"/3/device/{message.destination}",
            content=body,
            headers={**headers, "authorization": f"bearer {token}"},
        )
        future = asyncio.run_coroutine_threadsafe(request, self._loop)
        try:
            # httpx2's own timeouts end the request first; this bounds a stuck loop.
            return future.result(timeout=self.timeout * 3)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise ProviderTimeout("no answer from APNs in time", provider=self.name) from exc
        except (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout) as exc:
            raise ProviderUnavailable(
                f"cannot connect to APNs: {exc!r}", provider=self.name
            ) from exc
        except httpx2.WriteTimeout as exc:
            # The stream never ended, and APNs acts only on a complete request.
            raise ProviderUnavailable(
                f"request not sent in time: {exc!r}", provider=self.name
            ) from exc
        except httpx2.TransportError as exc:
            # Read timeout, stream reset, connection lost: the request may have been taken.
            raise ProviderTimeout(f"no answer from APNs: {exc!r}", provider=self.name) from exc

    def _error(
        self, response: httpx2.Response, message: OutboundMessage
    ) -> ChannelError | ProviderConfigurationError:
        status, reason = response.status_code, _reason(response)
        excerpt = redact(response.text, message.destination)
        details: dict[str, Any] = {
            "provider": self.name,
            "status_code": status,
            "provider_code": reason,
            "excerpt": excerpt,
        }
        described = f"APNs answered {status} {reason}".rstrip()
        if reason in _CONFIGURATION_REASONS or status == 403:
            return ProviderConfigurationError(f"{described}: {excerpt}", provider=self.name)
        error_class = _REASONS.get(reason)
        if error_class is RateLimited or status == 429:
            retry_after = retry_after_seconds(response.headers.get("retry-after"))
            return RateLimited(described, retry_after=retry_after, **details)
        if error_class is not None:
            return error_class(described, **details)
        if status == 410:
            return RecipientUnreachable(described, **details)
        if status == 413:
            return MessageRejected(described, **details)
        return error_for_status(
            status, described, provider=self.name, provider_code=reason, excerpt=excerpt
        )


def expiration_header(message: OutboundMessage) -> str:
    """``apns-expiration``: when Apple may stop trying to deliver, in epoch seconds.

    With no ``expires_at`` we send 0: Apple tries once and does not store the notification.
    (Without the header Apple would store it for a while of its choosing.)
    """
    if message.expires_at is None:
        return "0"
    return str(max(math.floor(message.expires_at.timestamp()), 1))


def apns_id(correlation_id: str) -> str:
    """The ``apns-id`` for a delivery: its id when that is a UUID, else a UUID derived from it
    (the same one on every retry, so Apple's logs group the attempts)."""
    try:
        return str(uuid.UUID(correlation_id))
    except ValueError:
        return str(uuid.uuid5(_APNS_ID_NAMESPACE, correlation_id))


def _reason(response: httpx2.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("reason", "")) if isinstance(body, dict) else ""


def _private_key(reader: OptionReader) -> ec.EllipticCurvePrivateKey:
    text = reader.string("PRIVATE_KEY", required=False, multiline=True)
    path = reader.string("PRIVATE_KEY_FILE", required=False)
    if bool(text) == bool(path):
        raise reader.error("set one of PRIVATE_KEY and PRIVATE_KEY_FILE")
    try:
        pem = Path(path).read_bytes() if path else text.encode()
        key = load_pem_private_key(pem, password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise reader.error(f"cannot read the APNs private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise reader.error("the APNs private key must be an EC P-256 key (a .p8 token key)")
    return key


def _ssl_context(reader: OptionReader) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca_file = reader.string("CA_FILE", required=False)
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise reader.error(f"cannot read CA_FILE: {exc}") from exc
    return context
