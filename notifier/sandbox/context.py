"""What every stand-in shares: the record, the faults, the credentials, and how an HTTP stand-in
applies a fault (see :mod:`notifier.sandbox.faults` for the order of effects)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from notifier.sandbox.callbacks import CallbackSender
from notifier.sandbox.credentials import SandboxCredentials
from notifier.sandbox.faults import Fault, FaultBoard
from notifier.sandbox.store import MessageStore

ErrorResponder = Callable[[int, int | None], web.Response]
"""Builds a provider's own error answer for an HTTP status (and ``Retry-After`` for 429)."""


@dataclass
class SandboxContext:
    credentials: SandboxCredentials
    store: MessageStore = field(default_factory=MessageStore)
    faults: FaultBoard = field(default_factory=FaultBoard)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    """Set on shutdown, so that hanging requests let go of their connections."""
    sns_cert_pem: bytes = b""
    """The certificate of the key SNS messages are signed with (``GET /_sandbox/sns/cert.pem``)."""
    callbacks: CallbackSender | None = None
    """Sends delivery callbacks to our webhooks (:mod:`notifier.sandbox.callbacks`)."""
    faults_changed: Callable[[], Awaitable[None]] | None = None
    """Called on the loop after faults are set or cleared: opens and closes provider ports."""

    async def apply_faults(self) -> None:
        if self.faults_changed is not None:
            await self.faults_changed()


CONTEXT = web.AppKey("sandbox_context", SandboxContext)


def with_retry_after(response: web.Response, retry_after: int | None) -> web.Response:
    """``response`` with a ``Retry-After`` header when the fault gives one (429s)."""
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


class Answer(Exception):
    """Stop handling a request and send ``response``; caught by :func:`answer_middleware`."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__(response.status)
        self.response = response


class ConnectionDropped(Exception):
    """The request's connection was closed on purpose (fault ``drop``, ``down`` or ``hang``)."""


@web.middleware
async def answer_middleware(
    request: web.Request,
    handler: Callable[[web.Request], object],
) -> web.StreamResponse:
    try:
        response = await handler(request)  # type: ignore[misc]
    except Answer as answer:
        return answer.response
    except ConnectionDropped:
        # The transport is already gone; aiohttp finds nothing to write this to.
        return web.Response(status=503)
    assert isinstance(response, web.StreamResponse)
    return response


def drop_connection(request: web.Request) -> ConnectionDropped:
    """Close the client's connection without an answer, the way an unreachable provider looks
    from the client (connection reset / remote disconnected)."""
    request.protocol.force_close()
    if request.transport is not None:
        request.transport.abort()
    return ConnectionDropped()


async def apply_fault(request: web.Request, provider: str, errors: ErrorResponder) -> Fault | None:
    """Take this request's fault and apply what happens before the provider looks at it.

    Returns the fault (for ``unregistered`` and ``hang``, applied later by the handler).
    """
    context = request.app[CONTEXT]
    fault = context.faults.take(provider)
    if fault is None:
        return None
    if fault.down or fault.drop:
        # ``down`` reaches here only through the shared port (the provider's own is closed),
        # which cannot refuse one provider's connections: the request is dropped unanswered.
        raise drop_connection(request)
    if fault.latency_ms:
        await asyncio.sleep(fault.latency_ms / 1000)
    if fault.status is not None:
        raise Answer(errors(fault.status, None))
    if fault.retry_after is not None:
        raise Answer(errors(429, fault.retry_after))
    return fault


async def hang_if_told(request: web.Request, fault: Fault | None) -> None:
    """The "timeout after accept" case: the message is recorded, the answer never comes.

    Holds the connection until the sandbox stops; the client gives up first.
    """
    if fault is None or not fault.hang:
        return
    await request.app[CONTEXT].stopping.wait()
    raise drop_connection(request)
