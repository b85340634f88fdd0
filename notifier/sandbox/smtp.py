"""The SMTP stand-in: aiosmtpd's protocol on the sandbox's own loop.

aiosmtpd's ``Controller`` runs a loop in its own thread and cannot listen on port 0 (its
readiness probe connects to the configured port), so the sandbox serves ``SMTP`` protocol
instances from ``loop.create_server`` itself.

A fault is taken once per connection (Django's backend opens one per ``send_messages`` call)
and applies to every message sent on it: ``down`` closes the connection at once, ``status`` and
``rate_limit`` answer DATA with a transient 451, ``unregistered`` refuses recipients with 550.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from notifier.sandbox import markers
from notifier.sandbox.context import SandboxContext
from notifier.sandbox.faults import Fault
from notifier.sandbox.mime import parse_email
from notifier.sandbox.store import SandboxMessage

PROVIDER = "smtp"
HOSTNAME = "sandbox.notifier.test"


class SandboxSMTP(SMTP):
    """aiosmtpd's protocol carrying the fault taken for its connection."""

    def __init__(self, handler: RecordingHandler, fault: Fault | None, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.fault = fault


class _Refuse(asyncio.Protocol):
    """Fault ``down``: the connection is reset before the greeting."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.abort()


class RecordingHandler:
    """aiosmtpd's handler hooks (``handle_<VERB>``); they answer SMTP reply lines."""

    def __init__(self, context: SandboxContext) -> None:
        self.context = context

    async def handle_RCPT(
        self,
        server: SandboxSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        unregistered = server.fault is not None and server.fault.unregistered
        if markers.is_rejected_email(address) or unregistered:
            return f"550 5.1.1 <{address}>: Recipient address rejected: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SandboxSMTP, session: Session, envelope: Envelope) -> str:
        fault = server.fault
        if fault is not None:
            if fault.latency_ms:
                await asyncio.sleep(fault.latency_ms / 1000)
            if fault.status is not None:
                return "451 4.3.0 Temporary server error, please try again later"
            if fault.retry_after is not None:
                return f"451 4.7.1 Rate limit exceeded, try again in {fault.retry_after} seconds"
        content = envelope.original_content or b""
        parsed = parse_email(content)
        message_id = (
            parsed.headers.get("Message-ID") or f"<{self.context.store.next_number()}@{HOSTNAME}>"
        )
        self.context.store.add(
            SandboxMessage(
                id=message_id,
                provider=PROVIDER,
                to=envelope.rcpt_tos[0],
                recipients=tuple(envelope.rcpt_tos),
                sender=envelope.mail_from,
                subject=parsed.subject,
                body=parsed.text,
                html=parsed.html,
                headers=parsed.headers,
            )
        )
        if fault is not None and fault.hang:
            await self.context.stopping.wait()
        return "250 Message accepted for delivery"


async def start_smtp(context: SandboxContext, *, host: str, port: int) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    handler = RecordingHandler(context)
    # aiosmtpd logs every SMTP command at INFO, which would drown ``make run``'s output.
    logging.getLogger("mail.log").setLevel(logging.WARNING)

    def connection() -> asyncio.Protocol:
        if context.faults.is_down(PROVIDER):
            return _Refuse()
        fault = context.faults.take(PROVIDER)
        return SandboxSMTP(handler, fault, hostname=HOSTNAME, loop=loop)

    return await loop.create_server(connection, host, port)
