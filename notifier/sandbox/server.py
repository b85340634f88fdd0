"""``SandboxServer``: every stand-in on one asyncio loop, in a background thread.

Used the same way by the management command (``make run``) and by test fixtures::

    with SandboxServer(state_dir=tmp_path) as sandbox:
        boto3.client("sesv2", endpoint_url=sandbox.http_url, ...)
        assert sandbox.messages(provider="ses")

Ports default to 0 (free ports, read back once listening). The shared HTTP port serves the inbox,
``/_sandbox/`` and every HTTP provider; each HTTP provider also has its own port (``fcm_url``,
``twilio_url``, ``ses_url``, ``sns_url`` in the connection file), which fault ``down`` closes
so that clients get "connection refused", as from a provider that is really down. The server
never touches the database.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from aiohttp import web

from notifier.sandbox.apns import server_tls_context, start_apns
from notifier.sandbox.callbacks import LOCAL_HOSTS, SNS_CERT_PATH, CallbackSender
from notifier.sandbox.context import SandboxContext
from notifier.sandbox.credentials import SandboxCredentials, StateDirectory, write_private
from notifier.sandbox.faults import HTTP_PROVIDERS, Fault
from notifier.sandbox.smtp import start_smtp
from notifier.sandbox.web import build_app

CONNECTION_FILE = "sandbox.json"
START_TIMEOUT_SECONDS = 30
STOP_TIMEOUT_SECONDS = 10

logger = logging.getLogger(__name__)


class SandboxServer:
    def __init__(
        self,
        state_dir: str | Path,
        *,
        host: str = "127.0.0.1",
        http_port: int = 0,
        apns_port: int = 0,
        smtp_port: int = 0,
        provider_ports: Mapping[str, int] | None = None,
        sns_endpoint: str | None = None,
        twilio_inbound_url: str | None = None,
        callback_hosts: Iterable[str] = (),
    ) -> None:
        self.state = StateDirectory(Path(state_dir))
        self.host = host
        self._ports = {"http": http_port, "apns": apns_port, "smtp": smtp_port}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._context: SandboxContext | None = None
        self._servers: list[asyncio.Server] = []
        # Each HTTP provider's own listener (None while the provider is down), and its port,
        # kept while closed so that it reopens where clients expect it.
        self._provider_servers: dict[str, asyncio.Server | None] = {}
        self._provider_ports: dict[str, int] = {
            **dict.fromkeys(HTTP_PROVIDERS, 0),
            **(provider_ports or {}),
        }
        self._runner: web.AppRunner | None = None
        self.connection: dict[str, Any] = {}
        self._sns_endpoint = sns_endpoint
        self._twilio_inbound_url = twilio_inbound_url or ""
        # Where Twilio status callbacks may go: loopback, the hosts of the configured webhook
        # URLs, and any named here (e.g. "web" under docker compose).
        self._callback_hosts = LOCAL_HOSTS | {
            host
            for host in (
                *callback_hosts,
                urlsplit(sns_endpoint or "").hostname,
                urlsplit(self._twilio_inbound_url).hostname,
            )
            if host
        }

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Listen on every port; returns once all listeners accept connections."""
        if self._thread is not None:
            raise RuntimeError("the sandbox is already running")
        credentials = self.state.load_or_create_credentials()
        ready: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._run, args=(credentials, ready), name="provider-sandbox", daemon=True
        )
        self._thread.start()
        try:
            ready.result(timeout=START_TIMEOUT_SECONDS)
        except BaseException:
            self._thread.join(timeout=STOP_TIMEOUT_SECONDS)
            self._thread = None
            raise
        self._write_connection_file(credentials)

    def stop(self) -> None:
        """Release waiting (hanging) requests, close every listener and connection, join."""
        if self._thread is None or self._loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._close(), self._loop)
        try:
            future.result(timeout=STOP_TIMEOUT_SECONDS)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=STOP_TIMEOUT_SECONDS)
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self, credentials: SandboxCredentials, ready: Future[None]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._listen(credentials))
        except BaseException as exc:  # noqa: BLE001 - handed to start()'s caller
            loop.run_until_complete(self._close())
            loop.close()
            ready.set_exception(exc)
            return
        ready.set_result(None)
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _listen(self, credentials: SandboxCredentials) -> None:
        self._context = context = SandboxContext(credentials=credentials)
        self._runner = web.AppRunner(
            build_app(context),
            handle_signals=False,
            access_log=None,
            # A request that has arrived is processed even if its client goes away, as at a
            # real provider: a worker killed mid-call leaves a message the provider took.
            handler_cancellation=False,
            shutdown_timeout=1,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._ports["http"])
        await site.start()
        self._ports["http"] = self._runner.addresses[0][1]
        for provider in HTTP_PROVIDERS:
            await self._open_provider_port(provider)
        context.faults_changed = self._apply_faults
        ca = self.state.load_or_create_ca()
        sns_key, context.sns_cert_pem = self.state.load_or_create_sns_signer(ca)
        context.callbacks = CallbackSender(
            twilio_auth_token=credentials.twilio_auth_token,
            twilio_account_sid=credentials.twilio_account_sid,
            aws_region=credentials.aws_region,
            sns_key=sns_key,
            sns_cert_url=self.sns_cert_url,
            sns_endpoints=[self._sns_endpoint] if self._sns_endpoint else [],
            twilio_inbound_url=self._twilio_inbound_url,
            callback_hosts=frozenset(self._callback_hosts),
        )

        names = dict.fromkeys(["localhost", "127.0.0.1", self.host])
        tls = server_tls_context(ca.issue_cert(*names))
        apns = await start_apns(context, host=self.host, port=self._ports["apns"], tls=tls)
        self._servers.append(apns)
        self._ports["apns"] = apns.sockets[0].getsockname()[1]

        smtp = await start_smtp(context, host=self.host, port=self._ports["smtp"])
        self._servers.append(smtp)
        self._ports["smtp"] = smtp.sockets[0].getsockname()[1]

    async def _open_provider_port(self, provider: str) -> None:
        assert self._runner is not None
        assert self._runner.server is not None
        server = await asyncio.get_running_loop().create_server(
            self._runner.server, self.host, self._provider_ports[provider]
        )
        self._provider_servers[provider] = server
        self._provider_ports[provider] = server.sockets[0].getsockname()[1]

    async def _apply_faults(self) -> None:
        """Close the port of each HTTP provider that is down, reopen the others'."""
        down = self.context.faults.down()
        for provider, server in self._provider_servers.items():
            if provider in down and server is not None:
                self._provider_servers[provider] = None
                await _close_server(server)
            elif provider not in down and server is None:
                await self._open_provider_port(provider)

    async def _close(self) -> None:
        if self._context is not None:
            self._context.stopping.set()
            if self._context.callbacks is not None:
                await self._context.callbacks.close()
        servers = [*self._servers, *self._provider_servers.values()]
        for server in servers:
            if server is not None:
                await _close_server(server)
        self._servers.clear()
        self._provider_servers.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- where clients connect ------------------------------------------------------------------

    @property
    def _url_host(self) -> str:
        return "127.0.0.1" if self.host in {"0.0.0.0", ""} else self.host  # noqa: S104

    @property
    def http_url(self) -> str:
        return f"http://{self._url_host}:{self._ports['http']}"

    def provider_url(self, provider: str) -> str:
        """The HTTP provider's own base URL (closed while it is ``down``)."""
        return f"http://{self._url_host}:{self._provider_ports[provider]}"

    @property
    def apns_url(self) -> str:
        return f"https://{self._url_host}:{self._ports['apns']}"

    @property
    def smtp_host(self) -> str:
        return self._url_host

    @property
    def smtp_port(self) -> int:
        return self._ports["smtp"]

    @property
    def sns_cert_url(self) -> str:
        """The ``SigningCertURL`` of the SNS messages the sandbox sends."""
        return self.http_url + SNS_CERT_PATH

    @property
    def ca_file(self) -> str:
        return str(self.state.ca_file)

    @property
    def connection_file(self) -> Path:
        return self.state.path / CONNECTION_FILE

    def _write_connection_file(self, credentials: SandboxCredentials) -> None:
        """``sandbox.json``: what other processes (workers under ``make run``) configure their
        providers from. Flat keys, kept stable; it holds secrets, so it is owner-only."""
        self.state.write_client_files(credentials, token_uri=self.http_url + "/token")
        self.connection = {
            "http_url": self.http_url,
            **{f"{provider}_url": self.provider_url(provider) for provider in HTTP_PROVIDERS},
            "apns_url": self.apns_url,
            "smtp_host": self.smtp_host,
            "smtp_port": self.smtp_port,
            "ca_file": self.ca_file,
            "twilio_account_sid": credentials.twilio_account_sid,
            "twilio_auth_token": credentials.twilio_auth_token,
            "twilio_from_number": credentials.twilio_from_number,
            "aws_access_key_id": credentials.aws_access_key_id,
            "aws_secret_access_key": credentials.aws_secret_access_key,
            "aws_region": credentials.aws_region,
            "ses_from_address": credentials.ses_from_address,
            "fcm_project_id": credentials.fcm_project_id,
            "fcm_service_account_file": str(self.state.service_account_file),
            "apns_key_file": str(self.state.apns_key_file),
            "apns_key_id": credentials.apns_key_id,
            "apns_team_id": credentials.apns_team_id,
            "apns_topic": credentials.apns_topic,
            "sns_cert_url": self.sns_cert_url,
            "sns_topic_arn": self.context.callbacks.sns_topic_arn if self.context.callbacks else "",
            "sns_endpoints": list(self.context.callbacks.sns_endpoints)
            if self.context.callbacks
            else [],
            "twilio_inbound_url": self._twilio_inbound_url,
        }
        write_private(self.connection_file, json.dumps(self.connection, indent=2) + "\n")

    # -- what was accepted, and faults ----------------------------------------------------------

    @property
    def context(self) -> SandboxContext:
        if self._context is None:
            raise RuntimeError("the sandbox is not started")
        return self._context

    def messages(
        self, provider: str | None = None, to: str | None = None, channel: str | None = None
    ) -> list[dict[str, Any]]:
        """What was accepted, oldest first, in the shape of ``GET /_sandbox/messages``."""
        found = self.context.store.list(provider=provider, to=to, channel=channel)
        return [message.as_dict() for message in found]

    def clear_messages(self) -> None:
        self.context.store.clear()

    def set_fault(self, provider: str, **fault: Any) -> None:
        """E.g. ``set_fault("twilio", status=503, times=2)``; see :mod:`notifier.sandbox.faults`.
        Returns once the fault applies (a ``down`` provider's port is closed)."""
        self.context.faults.set(provider, Fault.from_spec(fault))
        self._apply_faults_now()

    def requests_seen(self, provider: str) -> int:
        """Requests that reached ``provider`` so far, answered with a fault or not (a ``down``
        HTTP provider's refused connections never reach it)."""
        return self.context.faults.requests_seen(provider)

    def clear_faults(self, provider: str | None = None) -> None:
        self.context.faults.clear(provider)
        self._apply_faults_now()

    def _apply_faults_now(self) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._apply_faults(), self._loop).result(
            timeout=STOP_TIMEOUT_SECONDS
        )

    def callbacks_sent(self) -> list[dict[str, Any]]:
        """The callbacks sent so far (provider, id, status, the webhook's answer), oldest first."""
        callbacks = self.context.callbacks
        return [] if callbacks is None else list(callbacks.sent)

    def subscribe_sns(self, endpoint: str) -> None:
        """Send SES events to ``endpoint`` too (``POST /_sandbox/sns/subscriptions``)."""
        callbacks = self.context.callbacks
        assert callbacks is not None
        # One list append (atomic); the loop copies the list before each send.
        callbacks.subscribe(endpoint)


async def _close_server(server: asyncio.Server) -> None:
    server.close()
    # Python 3.13+: also drop open connections, as a provider going down does, and so that
    # wait_closed() cannot block on a client that keeps its connection. On 3.12 the loop's end
    # closes them.
    if hasattr(server, "close_clients"):
        server.close_clients()
        await server.wait_closed()
