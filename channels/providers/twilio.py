"""SMS through Twilio's Programmable Messaging (``Messages.create``, the twilio SDK).

Options: ``ACCOUNT_SID``, ``AUTH_TOKEN``, ``FROM_NUMBER`` (E.164) or
``MESSAGING_SERVICE_SID`` (``MG…``; both may be given), and optionally
``STATUS_CALLBACK_URL`` (our delivery id is added to it as the query parameter
``delivery_id``, so that each status callback names its delivery), ``BASE_URL`` (a stand-in:
every request's scheme and host are rewritten to it, for all Twilio domains), ``MAX_SEGMENTS``
(default 10), ``TIMEOUT`` (seconds, default 10) and ``MAX_CONNECTIONS`` (default 50).

The remaining TTL goes as ``ValidityPeriod`` (Twilio accepts 1 to 36000 seconds and
defaults to 36000): a message still queued at Twilio when it expires is dropped, not sent.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, ClassVar, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from channels.base import OutboundMessage, Provider, SendResult
from channels.errors import (
    ChannelError,
    InvalidAddress,
    InvalidRecipient,
    MessageRejected,
    ProviderConfigurationError,
    ProviderUnavailable,
    RateLimited,
    RecipientOptedOut,
    RecipientUnreachable,
)
from channels.providers.http import (
    error_for_requests_exception,
    error_for_status,
    redact,
    retry_after_seconds,
    session_without_retries,
)
from channels.providers.options import OptionReader
from channels.sms import check_segments, normalize_phone

OPTIONS: Final = (
    "ACCOUNT_SID",
    "AUTH_TOKEN",
    "FROM_NUMBER",
    "MESSAGING_SERVICE_SID",
    "STATUS_CALLBACK_URL",
    "BASE_URL",
    "MAX_SEGMENTS",
    "TIMEOUT",
    "MAX_CONNECTIONS",
)
CALLBACK_PARAMETER: Final = "delivery_id"
# The SDK logs every request and response at INFO, phone numbers included; ours says only
# what goes wrong (SPEC: no personal data in logs).
_SDK_LOGGER: Final = logging.getLogger("channels.providers.twilio.sdk")
_SDK_LOGGER.setLevel(logging.WARNING)
VALIDITY_PERIOD_MIN, VALIDITY_PERIOD_MAX = 1, 36000
DEFAULT_MAX_SEGMENTS: Final = 10

# Twilio error codes: https://www.twilio.com/docs/api/errors
_ERRORS: Final[Mapping[int, type[ChannelError]]] = {
    21211: InvalidRecipient,  # invalid 'To' phone number
    21214: InvalidRecipient,  # 'To' phone number cannot be reached
    21217: InvalidRecipient,  # phone number does not appear to be valid
    21407: InvalidRecipient,  # this phone number type does not support SMS
    21408: InvalidRecipient,  # permission to send to this region is not enabled
    21612: RecipientUnreachable,  # the 'To' number is not currently reachable
    21614: InvalidRecipient,  # 'To' number is not a valid mobile number
    21610: RecipientOptedOut,  # attempt to send to an unsubscribed recipient (STOP)
    21617: MessageRejected,  # body exceeds the 1600 character limit
    30007: MessageRejected,  # carrier filtered the message
    20429: RateLimited,  # too many requests
    14107: RateLimited,  # SMS send rate limit exceeded
}
# Credentials or account settings refused: 20003 authenticate, 20404 resource not found
# (an unknown account SID), 21606/21212 the 'From' number is not ours or invalid,
# 21602/21603 no body/From, 20008 test credentials on a live resource.
_CONFIGURATION_ERRORS: Final = frozenset({20003, 20404, 20008, 21212, 21606, 21603, 21602})


class _ForwardingHttpClient(TwilioHttpClient):
    """Twilio's HTTP client with our session (no retries, a pool per thread pool) that keeps
    each thread's last response, for ``Retry-After``, which the SDK's exception drops, and
    optionally rewrites every request's scheme and host to ``base_url`` (ECOSYSTEM §2.3:
    ``edge``/``region`` cannot point at a stand-in)."""

    def __init__(self, *, base_url: str, timeout: float, max_connections: int) -> None:
        super().__init__(timeout=timeout, logger=_SDK_LOGGER)
        self.session = session_without_retries(max_connections=max_connections)
        self._base = urlsplit(base_url) if base_url else None
        self._last = threading.local()

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        if self._base is not None:
            parts = urlsplit(url)
            url = urlunsplit(
                (self._base.scheme, self._base.netloc, parts.path, parts.query, parts.fragment)
            )
        self._last.response = None
        response: Response = super().request(method, url, *args, **kwargs)
        self._last.response = response
        return response

    def last_response_header(self, name: str) -> str | None:
        response = getattr(self._last, "response", None)
        if response is None or not response.headers:
            return None
        value = {key.lower(): val for key, val in response.headers.items()}.get(name.lower())
        return None if value is None else str(value)


class TwilioProvider(Provider):
    """Sends each SMS with one ``Messages.create`` call; the SDK never retries."""

    supported_channels: ClassVar[frozenset[str]] = frozenset({"sms"})

    def __init__(self, *, name: str, channel: str, options: Mapping[str, Any]) -> None:
        super().__init__(name=name, channel=channel, options=options)
        reader = OptionReader(options, provider=name, known=OPTIONS)
        self.account_sid = reader.string("ACCOUNT_SID")
        if not self.account_sid.startswith("AC"):
            raise reader.error("ACCOUNT_SID must start with 'AC'")
        auth_token = reader.string("AUTH_TOKEN")
        self.from_number = reader.string("FROM_NUMBER", required=False)
        if self.from_number:
            try:
                self.from_number = normalize_phone(self.from_number)
            except InvalidAddress as exc:
                raise reader.error(f"FROM_NUMBER: {exc.message}") from exc
        self.messaging_service_sid = reader.string("MESSAGING_SERVICE_SID", required=False)
        if self.messaging_service_sid and not self.messaging_service_sid.startswith("MG"):
            raise reader.error("MESSAGING_SERVICE_SID must start with 'MG'")
        if not (self.from_number or self.messaging_service_sid):
            raise reader.error("set FROM_NUMBER or MESSAGING_SERVICE_SID")
        self.status_callback_url = reader.url("STATUS_CALLBACK_URL", required=False)
        self.max_segments = reader.integer("MAX_SEGMENTS", default=DEFAULT_MAX_SEGMENTS)
        self.http_client = _ForwardingHttpClient(
            base_url=reader.url("BASE_URL", required=False),
            timeout=reader.timeout(),
            max_connections=reader.max_connections(),
        )
        self.client = Client(self.account_sid, auth_token, http_client=self.http_client)
        self._secrets = (auth_token,)

    def send(self, message: OutboundMessage) -> SendResult:
        request = self.build_request(message)
        try:
            created = self.client.messages.create(**request)
        except (TwilioException, requests.RequestException) as exc:
            raise self._error(exc, message) from exc
        return SendResult(provider=self.name, provider_message_id=str(created.sid))

    def build_request(self, message: OutboundMessage) -> dict[str, Any]:
        """The keyword arguments of ``messages.create`` for ``message``."""
        check_segments(message.body, max_segments=self.max_segments)
        request: dict[str, Any] = {"to": message.destination, "body": message.body}
        if self.from_number:
            request["from_"] = self.from_number
        if self.messaging_service_sid:
            request["messaging_service_sid"] = self.messaging_service_sid
        if self.status_callback_url:
            request["status_callback"] = status_callback_url(
                self.status_callback_url, message.correlation_id
            )
        validity_period = validity_period_seconds(message.remaining_ttl())
        if validity_period is not None:
            request["validity_period"] = validity_period
        return request

    def _error(
        self, exc: TwilioException | requests.RequestException, message: OutboundMessage
    ) -> ChannelError | ProviderConfigurationError:
        if isinstance(exc, requests.RequestException):
            return error_for_requests_exception(exc, provider=self.name)
        if not isinstance(exc, TwilioRestException | TwilioServiceException):
            return ProviderUnavailable(f"{type(exc).__name__}: {exc}", provider=self.name)
        status, code = int(exc.status), int(exc.code or 0)
        text = exc.msg if isinstance(exc, TwilioRestException) else (exc.detail or exc.title)
        excerpt = redact(str(text), message.destination, *self._secrets)
        retry_after = retry_after_seconds(self.http_client.last_response_header("Retry-After"))
        details: dict[str, Any] = {
            "provider": self.name,
            "status_code": status,
            "provider_code": str(code) if code else "",
            "excerpt": excerpt,
        }
        described = f"Twilio error {code}" if code else f"Twilio answered {status}"
        if code in _CONFIGURATION_ERRORS or status in (401, 403):
            return ProviderConfigurationError(f"{described}: {excerpt}", provider=self.name)
        error_class = _ERRORS.get(code)
        if error_class is RateLimited or status == 429:
            return RateLimited(described, retry_after=retry_after, **details)
        if error_class is not None:
            return error_class(described, **details)
        return error_for_status(
            status,
            described,
            provider=self.name,
            provider_code=details["provider_code"],
            excerpt=excerpt,
            retry_after=retry_after,
        )


def status_callback_url(base: str, correlation_id: str) -> str:
    """``base`` with ``delivery_id=<correlation_id>`` added to its query (kept otherwise)."""
    parts = urlsplit(base)
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != CALLBACK_PARAMETER
    ]
    query.append((CALLBACK_PARAMETER, correlation_id))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def validity_period_seconds(remaining: timedelta | None) -> int | None:
    """The ``ValidityPeriod`` for a remaining TTL: whole seconds rounded up, within Twilio's
    1..36000; ``None`` (Twilio's default of 36000) when the message never expires."""
    if remaining is None:
        return None
    seconds = math.ceil(remaining.total_seconds())
    return min(max(seconds, VALIDITY_PERIOD_MIN), VALIDITY_PERIOD_MAX)
