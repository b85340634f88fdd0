"""Email through an SMTP relay (Django's SMTP backend): your MTA, or a vendor's relay such as
SendGrid's (``smtp.sendgrid.net``, user ``apikey``).

Options: ``HOST``, ``PORT``, ``FROM_ADDRESS`` (``a@b`` or ``Name <a@b>``), and optionally
``USERNAME`` and ``PASSWORD`` (both or neither), ``USE_TLS`` (STARTTLS) or ``USE_SSL``
(implicit TLS), ``TIMEOUT`` (seconds, default 10), and ``SENDGRID_EVENTS`` (default false):
the relay is SendGrid's and its Event Webhook reports on our messages, so each message carries
our delivery id as the SendGrid custom argument ``notifier_delivery_id`` in an ``X-SMTPAPI``
header; SendGrid strips that header and copies the argument into every event about the message
(https://www.twilio.com/docs/sendgrid/for-developers/sending-email/building-an-x-smtpapi-header).

Django's backend opens the connection (TLS, login) and its ``EmailMultiAlternatives``
builds the message (text, html alternative, our ``X-Notifier-Delivery-Id`` header). The SMTP
transaction itself is walked step by step here rather than through ``smtplib.sendmail``,
because only the step at which it fails says whether the relay may have the message:
anything that goes wrong before the final ``.`` of DATA has been sent leaves nothing at the
relay (``ProviderUnavailable``, safe to retry); silence after it is ``ProviderTimeout``, the
outcome unknown.

Thread safety: every ``send`` opens a connection of its own and closes it, so threads share
nothing. (A relay's connection limit then bounds a worker's concurrency.)
"""

from __future__ import annotations

import json
import re
import smtplib
import ssl
from collections.abc import Callable, Mapping
from contextlib import suppress
from email.utils import make_msgid
from typing import Any, ClassVar, Final

from django.core.mail import EmailMultiAlternatives
from django.core.mail.backends.smtp import EmailBackend
from django.core.mail.message import sanitize_address

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
)
from channels.providers.http import redact
from channels.providers.options import OptionReader

OPTIONS: Final = (
    "HOST",
    "PORT",
    "USERNAME",
    "PASSWORD",
    "USE_TLS",
    "USE_SSL",
    "FROM_ADDRESS",
    "TIMEOUT",
    "SENDGRID_EVENTS",
)
CORRELATION_HEADER: Final = "X-Notifier-Delivery-Id"
SENDGRID_HEADER: Final = "X-SMTPAPI"
SENDGRID_CORRELATION_ARG: Final = "notifier_delivery_id"
# Enhanced status 4.7.x (RFC 3463: security or policy) is how relays say "slow down":
# Gmail 421 4.7.28, SendGrid 421 4.7.0, Postfix "450 4.7.1 ... rate limited".
_THROTTLED: Final = re.compile(r"^4\.7\.\d+|rate|too many|throttl", re.IGNORECASE)
_RELAY_DENIED: Final = re.compile(r"relay|authenticat", re.IGNORECASE)
# Some relays say how long to wait: "try again in 30 seconds".
_WAIT: Final = re.compile(r"in (\d+) ?s(?:ec(?:ond)?s?)?\b", re.IGNORECASE)


class SMTPProvider(Provider):
    """Sends each message over a new SMTP connection."""

    supported_channels: ClassVar[frozenset[str]] = frozenset({"email"})

    def __init__(self, *, name: str, channel: str, options: Mapping[str, Any]) -> None:
        super().__init__(name=name, channel=channel, options=options)
        reader = OptionReader(options, provider=name, known=OPTIONS)
        self.host = reader.string("HOST")
        self.port = reader.integer("PORT", default=25, maximum=65535)
        self.username = reader.string("USERNAME", required=False)
        self.password = reader.string("PASSWORD", required=False)
        if bool(self.username) != bool(self.password):
            raise reader.error("set both USERNAME and PASSWORD, or neither")
        self.use_tls = reader.boolean("USE_TLS", default=False)
        self.use_ssl = reader.boolean("USE_SSL", default=False)
        if self.use_tls and self.use_ssl:
            raise reader.error("USE_TLS (STARTTLS) and USE_SSL (implicit TLS) exclude each other")
        self.timeout = reader.timeout()
        self.from_address, self.from_domain = reader.from_address()
        self.sendgrid_events = reader.boolean("SENDGRID_EVENTS", default=False)

    def send(self, message: OutboundMessage) -> SendResult:
        email = self.build_message(message)
        backend = self._backend()
        try:
            backend.open()
        except (OSError, ValueError) as exc:
            raise self._connect_error(exc) from exc
        if backend.connection is None:  # open() raised or connected; never neither
            raise ProviderUnavailable("SMTP connection did not open", provider=self.name)
        try:
            self._transact(backend.connection, email, message)
        finally:
            # The relay's answer to the final "." decided the outcome; QUIT failing changes
            # nothing of it.
            with suppress(OSError):
                backend.close()
        return SendResult(
            provider=self.name,
            provider_message_id=str(email.extra_headers["Message-ID"]).strip("<>"),
        )

    def build_message(self, message: OutboundMessage) -> EmailMultiAlternatives:
        """The Django message for ``message``; the Message-ID is ours, so it is known (and
        becomes the ``provider_message_id``) whatever the relay answers."""
        correlation_id = check_header_value(
            message.correlation_id, field=CORRELATION_HEADER, provider=self.name
        )
        headers = {
            CORRELATION_HEADER: correlation_id,
            "Message-ID": make_msgid(domain=self.from_domain),
        }
        if self.sendgrid_events:
            headers[SENDGRID_HEADER] = check_header_value(
                sendgrid_smtpapi_header(correlation_id), field=SENDGRID_HEADER, provider=self.name
            )
        email = EmailMultiAlternatives(
            subject=check_header_value(message.subject, field="subject", provider=self.name),
            body=message.body,
            from_email=self.from_address,
            to=[message.destination],
            headers=headers,
        )
        if message.html:
            email.attach_alternative(message.html, "text/html")
        return email

    def _backend(self) -> EmailBackend:
        return EmailBackend(
            host=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            use_tls=self.use_tls,
            use_ssl=self.use_ssl,
            timeout=self.timeout,
            fail_silently=False,
        )

    def _transact(
        self, connection: smtplib.SMTP, email: EmailMultiAlternatives, message: OutboundMessage
    ) -> None:
        """MAIL, RCPT, DATA; raises what each refusal or failure means."""
        encoding = email.encoding or "utf-8"
        sender = sanitize_address(email.from_email, encoding)
        recipient = sanitize_address(message.destination, encoding)
        content = _dot_stuffed(email.message().as_bytes())
        hide = (message.destination, recipient)
        try:
            connection.ehlo_or_helo_if_needed()
            code, reply = connection.mail(sender)
            if code != 250:
                raise self._reply_error("MAIL FROM", code, reply, hide, refused=_sender_refused)
            code, reply = connection.rcpt(recipient)
            if code not in (250, 251):
                raise self._reply_error("RCPT TO", code, reply, hide, refused=_recipient_refused)
            connection.putcmd("data")
            code, reply = connection.getreply()
            if code != 354:
                raise self._reply_error("DATA", code, reply, hide, refused=_message_refused)
            connection.send(content)
        except OSError as exc:  # smtplib's errors are OSErrors too
            raise ProviderUnavailable(
                f"SMTP connection failed before the message was complete: {exc}",
                provider=self.name,
            ) from exc
        try:
            code, reply = connection.getreply()
        except OSError as exc:
            raise ProviderTimeout(
                f"no answer after the message was sent: {exc}", provider=self.name
            ) from exc
        if code != 250:
            raise self._reply_error("end of DATA", code, reply, hide, refused=_message_refused)

    def _reply_error(
        self,
        step: str,
        code: int,
        reply: bytes,
        hide: tuple[str, ...],
        *,
        refused: _Refusal,
    ) -> ChannelError | ProviderConfigurationError:
        text = redact(reply.decode("utf-8", "replace"), *hide)
        described = f"SMTP {step} answered {code}"
        details: dict[str, Any] = {
            "provider": self.name,
            "status_code": code,
            "provider_code": str(code),
            "excerpt": text,
        }
        if code in (530, 535, 538):  # authentication required or refused
            return ProviderConfigurationError(f"{described}: {text}", provider=self.name)
        if 400 <= code < 500:
            if _THROTTLED.search(text):
                wait = _WAIT.search(text)
                retry_after = float(wait[1]) if wait else None
                return RateLimited(described, retry_after=retry_after, **details)
            return ProviderUnavailable(described, **details)
        return refused(described, text, details)

    def _connect_error(self, exc: Exception) -> ChannelError | ProviderConfigurationError:
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return ProviderConfigurationError(
                f"SMTP login refused ({exc.smtp_code})", provider=self.name
            )
        if isinstance(
            exc, smtplib.SMTPNotSupportedError | ssl.SSLCertVerificationError | ValueError
        ):
            return ProviderConfigurationError(f"SMTP setup: {exc}", provider=self.name)
        if isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code in (530, 535, 538):
            return ProviderConfigurationError(
                f"SMTP answered {exc.smtp_code} at connection", provider=self.name
            )
        return ProviderUnavailable(
            f"cannot connect to the SMTP relay: {type(exc).__name__}: {exc}", provider=self.name
        )


def sendgrid_smtpapi_header(correlation_id: str) -> str:
    """The ``X-SMTPAPI`` value carrying our delivery id as a SendGrid unique argument: JSON
    built by ``json.dumps`` (never by formatting), ASCII only, on one line."""
    return json.dumps(
        {"unique_args": {SENDGRID_CORRELATION_ARG: correlation_id}},
        ensure_ascii=True,
        separators=(", ", ": "),
    )


# What a permanent (5xx) refusal means at each step: (described, reply text, error details).
_Refusal = Callable[[str, str, dict[str, Any]], ChannelError | ProviderConfigurationError]


def _message_refused(
    described: str, text: str, details: dict[str, Any]
) -> ChannelError | ProviderConfigurationError:
    return MessageRejected(described, **details)


def _sender_refused(
    described: str, text: str, details: dict[str, Any]
) -> ChannelError | ProviderConfigurationError:
    # 552 on MAIL FROM is the SIZE extension refusing the message; any other permanent
    # refusal of our FROM_ADDRESS will refuse every message: an operator must act.
    if details["status_code"] == 552:
        return MessageRejected(described, **details)
    return ProviderConfigurationError(
        f"{described} (FROM_ADDRESS refused): {text}", provider=details["provider"]
    )


def _recipient_refused(
    described: str, text: str, details: dict[str, Any]
) -> ChannelError | ProviderConfigurationError:
    # "550 5.7.1 Relaying denied" refuses every recipient: our credentials, not the address.
    if _RELAY_DENIED.search(text):
        return ProviderConfigurationError(f"{described}: {text}", provider=details["provider"])
    return InvalidRecipient(described, **details)


def _dot_stuffed(content: bytes) -> bytes:
    """``content`` as DATA sends it (RFC 5321 §4.5.2): CRLF line ends, a leading "." doubled,
    ended by CRLF "." CRLF."""
    content = re.sub(rb"\r\n|\n|\r", b"\r\n", content)
    content = re.sub(rb"(?m)^\.", b"..", content)
    if not content.endswith(b"\r\n"):
        content += b"\r\n"
    return content + b".\r\n"
