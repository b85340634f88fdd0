"""APNs' provider API: HTTP/2 over TLS (ALPN ``h2``) with token (ES256 JWT) authentication.

Written on ``h2`` directly rather than a web framework because clients depend on wire details
frameworks change: Apple sends an error body and END_STREAM in one DATA frame (aioapns parses
each DATA frame as JSON), and one connection carries many concurrent streams.
https://developer.apple.com/documentation/usernotifications/sending-notification-requests-to-apns
https://developer.apple.com/documentation/usernotifications/handling-notification-responses-from-apns
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
import trustme
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RequestReceived,
    StreamEnded,
    StreamReset,
)
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes

from notifier.sandbox import markers
from notifier.sandbox.context import SandboxContext
from notifier.sandbox.faults import Fault
from notifier.sandbox.store import SandboxMessage

PROVIDER = "apns"
MAX_PAYLOAD_BYTES = 4096
MAX_COLLAPSE_ID_BYTES = 64
# Apple rejects provider tokens older than an hour (403 ExpiredProviderToken).
TOKEN_MAX_AGE_SECONDS = 3600
PUSH_TYPES = frozenset(
    [
        "alert",
        "background",
        "location",
        "voip",
        "complication",
        "fileprovider",
        "mdm",
        "liveactivity",
        "pushtoplaytalk",
        "widgets",
    ]
)
DEVICE_PATH = re.compile(r"^/3/device/(?P<token>[^/]+)$")
_STATUS_REASONS = {429: "TooManyRequests", 500: "InternalServerError", 503: "ServiceUnavailable"}

logger = logging.getLogger(__name__)


class Rejection(Exception):
    def __init__(self, status: int, reason: str, **extra: Any) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.extra = extra


@dataclass
class _Stream:
    headers: dict[str, str]
    body: bytearray = field(default_factory=bytearray)
    too_large: bool = False


class APNsProtocol(asyncio.Protocol):
    """One client connection; each request stream is answered by its own task, so slow or
    hanging answers (faults) never hold up the other streams."""

    def __init__(self, context: SandboxContext) -> None:
        self.context = context
        self.connection = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, _Stream] = {}
        self.tasks: dict[int, asyncio.Task[None]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.connection.local_settings.update({SettingCodes.MAX_CONCURRENT_STREAMS: 1000})
        self.connection.initiate_connection()
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        for task in self.tasks.values():
            task.cancel()
        self.tasks.clear()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.connection.receive_data(data)
        except ProtocolError:
            self.flush()
            if self.transport is not None:
                self.transport.close()
            return
        for event in events:
            if isinstance(event, RequestReceived):
                self.streams[event.stream_id] = _Stream(headers=_text_headers(event.headers))
            elif isinstance(event, DataReceived) and event.stream_id in self.streams:
                self._receive_body(event)
            elif isinstance(event, StreamEnded) and event.stream_id in self.streams:
                stream = self.streams.pop(event.stream_id)
                self._start_answer(event.stream_id, stream)
            elif isinstance(event, StreamReset):
                self.streams.pop(event.stream_id, None)
                if task := self.tasks.pop(event.stream_id, None):
                    task.cancel()
            elif isinstance(event, ConnectionTerminated) and self.transport is not None:
                self.transport.close()
        self.flush()

    def _start_answer(self, stream_id: int, stream: _Stream) -> None:
        task = asyncio.get_running_loop().create_task(self._answer(stream_id, stream))
        self.tasks[stream_id] = task

        def forget(_: asyncio.Task[None]) -> None:
            self.tasks.pop(stream_id, None)

        task.add_done_callback(forget)

    def _receive_body(self, event: DataReceived) -> None:
        stream = self.streams[event.stream_id]
        data = event.data or b""
        # Keep at most one byte past the limit: enough to answer PayloadTooLarge.
        if len(stream.body) + len(data) > MAX_PAYLOAD_BYTES:
            stream.too_large = True
        else:
            stream.body.extend(data)
        self.connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)

    def flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.connection.data_to_send())

    async def _answer(self, stream_id: int, stream: _Stream) -> None:
        fault = self.context.faults.take(PROVIDER)
        apns_id = stream.headers.get("apns-id") or str(uuid.uuid4()).upper()
        if fault is not None and fault.down:
            if self.transport is not None:
                self.transport.abort()
            return
        try:
            if fault is not None:
                await self._apply_fault(fault)
            message = self._accept(stream, apns_id, fault)
        except Rejection as rejection:
            self._respond(stream_id, apns_id, rejection)
            return
        self.context.store.add(message)
        if fault is not None and fault.hang:
            await self.context.stopping.wait()
            return
        self._respond(stream_id, apns_id, None)

    async def _apply_fault(self, fault: Fault) -> None:
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000)
        if fault.status is not None:
            raise Rejection(fault.status, _STATUS_REASONS.get(fault.status, "BadRequest"))
        if fault.retry_after is not None:
            raise Rejection(429, "TooManyRequests", retry_after=fault.retry_after)

    def _respond(self, stream_id: int, apns_id: str, rejection: Rejection | None) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if rejection is None:
            headers = [
                (":status", "200"),
                ("apns-id", apns_id),
                ("apns-unique-id", str(uuid.uuid4())),
            ]
            self.connection.send_headers(stream_id, headers, end_stream=True)
        else:
            body: dict[str, Any] = {"reason": rejection.reason}
            if "timestamp" in rejection.extra:
                body["timestamp"] = rejection.extra["timestamp"]
            headers = [
                (":status", str(rejection.status)),
                ("apns-id", apns_id),
                ("content-type", "application/json"),
            ]
            if "retry_after" in rejection.extra:
                headers.append(("retry-after", str(rejection.extra["retry_after"])))
            self.connection.send_headers(stream_id, headers)
            # One DATA frame carrying the body and END_STREAM, like Apple (see module docstring).
            self.connection.send_data(stream_id, json.dumps(body).encode(), end_stream=True)
        self.flush()

    def _accept(self, stream: _Stream, apns_id: str, fault: Fault | None) -> SandboxMessage:
        """Validate like APNs, in its order; raise :class:`Rejection` or return the message."""
        headers = stream.headers
        if headers.get(":method") != "POST":
            raise Rejection(405, "MethodNotAllowed")
        match = DEVICE_PATH.match(headers.get(":path", ""))
        if match is None:
            raise Rejection(404, "BadPath")
        self._authenticate(headers.get("authorization"))
        topic = headers.get("apns-topic")
        if not topic:
            raise Rejection(400, "MissingTopic")
        if topic != self.context.credentials.apns_topic:
            raise Rejection(400, "TopicDisallowed")
        device_token = match["token"]
        dead = markers.is_dead_push_token(device_token) or (
            fault is not None and fault.unregistered
        )
        if not dead and (
            markers.is_invalid_apns_token(device_token) or markers.BAD_TOKEN_MARKER in device_token
        ):
            raise Rejection(400, "BadDeviceToken")
        self._validate_headers(headers)
        if stream.too_large:
            raise Rejection(413, "PayloadTooLarge")
        if not stream.body:
            raise Rejection(400, "PayloadEmpty")
        if dead:
            raise Rejection(410, "Unregistered", timestamp=int(time.time() * 1000))
        try:
            payload = json.loads(stream.body)
        except ValueError:
            raise Rejection(400, "BadPayload") from None
        if not isinstance(payload, dict):
            raise Rejection(400, "BadPayload")
        return _record(apns_id, device_token, headers, payload)

    def _authenticate(self, authorization: str | None) -> None:
        credentials = self.context.credentials
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Rejection(403, "MissingProviderToken")
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(
                token,
                credentials.apns_public_key(),
                algorithms=["ES256"],
                options={"require": ["iss", "iat"]},
            )
        except jwt.InvalidTokenError:
            raise Rejection(403, "InvalidProviderToken") from None
        if (
            header.get("kid") != credentials.apns_key_id
            or claims["iss"] != credentials.apns_team_id
        ):
            raise Rejection(403, "InvalidProviderToken")
        if (
            not isinstance(claims["iat"], int)
            or claims["iat"] < time.time() - TOKEN_MAX_AGE_SECONDS
        ):
            raise Rejection(403, "ExpiredProviderToken")

    @staticmethod
    def _validate_headers(headers: dict[str, str]) -> None:
        push_type = headers.get("apns-push-type")
        if push_type is not None and push_type not in PUSH_TYPES:
            raise Rejection(400, "InvalidPushType")
        if headers.get("apns-priority", "10") not in {"1", "5", "10"}:
            raise Rejection(400, "BadPriority")
        if not headers.get("apns-expiration", "0").isdigit():
            raise Rejection(400, "BadExpirationDate")
        if len(headers.get("apns-collapse-id", "").encode()) > MAX_COLLAPSE_ID_BYTES:
            raise Rejection(400, "BadCollapseId")
        if "apns-id" in headers:
            try:
                uuid.UUID(headers["apns-id"])
            except ValueError:
                raise Rejection(400, "BadMessageId") from None


def _text_headers(headers: Any) -> dict[str, str]:
    """h2 decodes header names and values to ``str`` (``header_encoding``); keep the last value."""
    return {str(name): str(value) for name, value in headers or []}


def _record(
    apns_id: str, device_token: str, headers: dict[str, str], payload: dict[str, Any]
) -> SandboxMessage:
    aps = payload.get("aps") or {}
    alert = aps.get("alert")
    title, body = (
        (alert.get("title"), alert.get("body")) if isinstance(alert, dict) else (None, alert)
    )
    return SandboxMessage(
        id=apns_id,
        provider=PROVIDER,
        to=device_token,
        title=title,
        body=body,
        data=payload,
        headers={key: value for key, value in headers.items() if key.startswith("apns-")},
    )


def server_tls_context(certificate: trustme.LeafCert) -> ssl.SSLContext:
    """TLS for the listener, offering only HTTP/2 like Apple's servers."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(context)
    context.set_alpn_protocols(["h2"])
    return context


class _RefusingGate(asyncio.Protocol):
    """Accepts TCP, then either resets it (fault ``down``, before any TLS byte, so the client
    sees a failed connect like an unreachable host) or upgrades it to TLS for APNs."""

    def __init__(self, context: SandboxContext, tls: ssl.SSLContext) -> None:
        self.context = context
        self.tls = tls

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if self.context.faults.is_down(PROVIDER):
            transport.abort()
            return
        # Leave the ClientHello in the socket until start_tls reads it.
        transport.pause_reading()
        asyncio.get_running_loop().create_task(self._upgrade(transport))

    async def _upgrade(self, transport: asyncio.Transport) -> None:
        protocol = APNsProtocol(self.context)
        try:
            tls_transport = await asyncio.get_running_loop().start_tls(
                transport, protocol, self.tls, server_side=True
            )
        except (OSError, ssl.SSLError) as exc:
            logger.debug("APNs TLS handshake failed: %s", exc)
            transport.abort()
            return
        if tls_transport is None:
            transport.abort()
            return
        protocol.connection_made(tls_transport)


async def start_apns(
    context: SandboxContext, *, host: str, port: int, tls: ssl.SSLContext
) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _RefusingGate(context, tls), host, port)
