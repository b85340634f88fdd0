"""Push through Firebase Cloud Messaging's HTTP v1 API (pyfcm + google-auth).

Options: ``PROJECT_ID``, ``SERVICE_ACCOUNT_FILE`` (path of the service account's JSON key)
or ``SERVICE_ACCOUNT_INFO`` (the same JSON as a dict), and optionally ``ENDPOINT_BASE``
(default ``https://fcm.googleapis.com/v1/projects``; a stand-in's URL), ``TIMEOUT``
(seconds, default 10) and ``MAX_CONNECTIONS`` (default 50). The OAuth token comes from the
key's ``token_uri``, which a stand-in's key file points at itself.

Why a subclass of pyfcm's ``FCMNotification`` rather than pyfcm as is: pyfcm builds the v1
message and loads the credentials well, but its transport must not run in a worker
(ECOSYSTEM §2.4). ``send_request`` sleeps ``Retry-After`` seconds and recurses without
bound, its sessions mount a hidden urllib3 ``Retry`` that re-sends POSTs on 502/503, and
google-auth retries a failing token endpoint with backoff sleeps. The subclass keeps pyfcm's
payload building (``parse_payload``) and replaces the transport: one shared session that
never retries, one POST per send, the OAuth token cached for all threads and refreshed under
a lock by a request that fails at once instead of retrying. A client of our own on
``AuthorizedSession`` would need the same three things and rebuild the payload too.

What goes on the message: ``data`` carries our ``notifier_delivery_id``; ``android`` sets
``ttl`` from the remaining TTL (at most FCM's 28 days) and ``priority`` (``high`` for
critical and high); ``apns`` sets ``apns-priority``, ``apns-expiration`` and, like android's
``collapse_key``, ``apns-collapse-id`` from ``data["collapse_id"]``; ``webpush`` sets ``TTL``
and ``Urgency``. Only the platform's block goes when the message names a platform.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, ClassVar, Final

import google.auth.exceptions
import google.auth.transport.requests
import requests
from google.oauth2 import service_account
from pyfcm import FCMNotification

from channels.base import OutboundMessage, Provider, SendResult
from channels.errors import (
    ChannelError,
    InvalidRecipient,
    MessageRejected,
    ProviderConfigurationError,
    ProviderUnavailable,
    RateLimited,
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
from channels.push import FCM_MAX_PAYLOAD_BYTES, fit_payload

OPTIONS: Final = (
    "PROJECT_ID",
    "SERVICE_ACCOUNT_FILE",
    "SERVICE_ACCOUNT_INFO",
    "ENDPOINT_BASE",
    "TIMEOUT",
    "MAX_CONNECTIONS",
)
DEFAULT_ENDPOINT_BASE: Final = "https://fcm.googleapis.com/v1/projects"
SCOPE: Final = "https://www.googleapis.com/auth/firebase.messaging"
CORRELATION_KEY: Final = "notifier_delivery_id"
COLLAPSE_KEY: Final = "collapse_id"
MAX_TTL: Final = timedelta(weeks=4)  # FCM's maximum and default time to live
_HIGH_PRIORITIES: Final = ("critical", "high")


class _TokenEndpointRefused(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"token endpoint answered {status}")
        self.status = status
        self.text = text


class _TokenRequest(google.auth.transport.requests.Request):
    """google-auth's transport for the token endpoint, with our timeout, failing at once on
    any answer but 200: google-auth's ``jwt_grant`` would retry a 5xx with backoff sleeps."""

    def __init__(self, session: requests.Session, timeout: float) -> None:
        super().__init__(session=session)
        self._timeout = timeout

    def __call__(  # type: ignore[override]
        self, url: str, method: str = "GET", body: Any = None, headers: Any = None, **kwargs: Any
    ) -> Any:
        kwargs["timeout"] = self._timeout
        response = super().__call__(  # type: ignore[no-untyped-call]
            url, method=method, body=body, headers=headers, **kwargs
        )
        if response.status != 200:
            data = response.data
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
            raise _TokenEndpointRefused(int(response.status), text)
        return response


class _FCMClient(FCMNotification):
    """pyfcm without its retries, sleeps and per-thread token fetches (module docstring)."""

    def __init__(
        self,
        *,
        credentials: Any,
        project_id: str,
        endpoint_base: str,
        timeout: float,
        max_connections: int,
    ) -> None:
        super().__init__(credentials=credentials, project_id=project_id)
        # pyfcm prefers the key's own project_id; the PROJECT_ID option decides here.
        self._fcm_end_point = f"{endpoint_base}/{project_id}/messages:send"
        self._session = session_without_retries(max_connections=max_connections)
        self._token_request = _TokenRequest(session_without_retries(max_connections=1), timeout)
        self._token_lock = threading.Lock()

    @property
    def requests_session(self) -> requests.Session:
        return self._session

    def access_token(self, *, refused: str | None = None) -> str:
        """The cached OAuth token, fetched when missing, expiring, or equal to ``refused``
        (one FCM just answered 401 to; another thread may have replaced it already)."""
        with self._token_lock:
            credentials = self.credentials
            if not credentials.valid or (refused is not None and credentials.token == refused):
                credentials.refresh(self._token_request)
            return str(credentials.token)

    def send_request(
        self, payload: bytes | None = None, timeout: float | None = None, *, token: str = ""
    ) -> requests.Response:
        """One POST, no sleep, no recursion."""
        return self._session.post(
            self.fcm_end_point,
            data=payload,
            headers={
                "Authorization": f"Bearer {token or self.access_token()}",
                "Content-Type": "application/json; charset=UTF-8",
            },
            timeout=timeout,
        )


class FCMProvider(Provider):
    """Sends each push with one ``messages:send`` call."""

    supported_channels: ClassVar[frozenset[str]] = frozenset({"push"})

    def __init__(self, *, name: str, channel: str, options: Mapping[str, Any]) -> None:
        super().__init__(name=name, channel=channel, options=options)
        reader = OptionReader(options, provider=name, known=OPTIONS)
        self.project_id = reader.string("PROJECT_ID")
        self.timeout = reader.timeout()
        self.client = _FCMClient(
            credentials=_credentials(reader),
            project_id=self.project_id,
            endpoint_base=reader.url(
                "ENDPOINT_BASE", required=False, default=DEFAULT_ENDPOINT_BASE
            ),
            timeout=self.timeout,
            max_connections=reader.max_connections(),
        )

    def send(self, message: OutboundMessage) -> SendResult:
        payload = self.build_payload(message)
        token = self._access_token()
        response = self._post(payload, token)
        if response.status_code == 401:
            # An access token revoked or expired early: fetch another once (FCM took nothing).
            response = self._post(payload, self._access_token(refused=token))
        if response.status_code != 200:
            raise self._error(response, message)
        try:
            return SendResult(provider=self.name, provider_message_id=str(response.json()["name"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderUnavailable(
                "FCM answered 200 without a message name", provider=self.name, status_code=200
            ) from exc

    def build_payload(self, message: OutboundMessage) -> bytes:
        """The request body (pyfcm's ``parse_payload``) for ``message``."""
        data = {**message.data, CORRELATION_KEY: message.correlation_id}
        notification, _ = fit_payload(
            lambda body: {"notification": {"title": message.subject, "body": body}, "data": data},
            message.body,
            max_bytes=FCM_MAX_PAYLOAD_BYTES,
        )
        platform = message.platform
        payload: bytes = self.client.parse_payload(
            fcm_token=message.destination,
            notification_title=message.subject or None,
            notification_body=notification["notification"]["body"] or None,
            data_payload=data,
            android_config=android_config(message) if platform in ("android", "") else None,
            apns_config=apns_config(message) if platform in ("ios", "") else None,
            webpush_config=webpush_config(message) if platform in ("web", "") else None,
        )
        return payload

    def _access_token(self, *, refused: str | None = None) -> str:
        try:
            return self.client.access_token(refused=refused)
        except _TokenEndpointRefused as exc:
            text = redact(exc.text)
            if exc.status == 429 or exc.status >= 500:
                error = error_for_status(
                    exc.status, "OAuth token endpoint refused", provider=self.name, excerpt=text
                )
                raise error from exc
            raise ProviderConfigurationError(
                f"OAuth token endpoint refused the service account ({exc.status}): {text}",
                provider=self.name,
            ) from exc
        except google.auth.exceptions.TransportError as exc:
            # No send was attempted, whatever failed on the way to the token endpoint.
            raise ProviderUnavailable(
                f"cannot reach the OAuth token endpoint: {exc}", provider=self.name
            ) from exc
        except google.auth.exceptions.GoogleAuthError as exc:
            raise ProviderConfigurationError(
                f"cannot get an OAuth token: {exc}", provider=self.name
            ) from exc

    def _post(self, payload: bytes, token: str) -> requests.Response:
        try:
            response: requests.Response = self.client.send_request(
                payload, self.timeout, token=token
            )
        except requests.RequestException as exc:
            raise error_for_requests_exception(exc, provider=self.name) from exc
        return response

    def _error(
        self, response: requests.Response, message: OutboundMessage
    ) -> ChannelError | ProviderConfigurationError:
        status = response.status_code
        error_code, text, token_at_fault = _fcm_error(response)
        excerpt = redact(text, message.destination)
        details: dict[str, Any] = {
            "provider": self.name,
            "status_code": status,
            "provider_code": error_code,
            "excerpt": excerpt,
        }
        described = f"FCM answered {status} {error_code}".rstrip()
        if error_code == "UNREGISTERED" or status == 404:
            return RecipientUnreachable(described, **details)
        if status == 429 or error_code == "QUOTA_EXCEEDED":
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            return RateLimited(described, retry_after=retry_after, **details)
        if status in (401, 403) or error_code in ("THIRD_PARTY_AUTH_ERROR", "SENDER_ID_MISMATCH"):
            return ProviderConfigurationError(f"{described}: {excerpt}", provider=self.name)
        if status == 400 and token_at_fault:
            return InvalidRecipient(described, **details)
        if status == 400:
            return MessageRejected(described, **details)
        return error_for_status(
            status, described, provider=self.name, provider_code=error_code, excerpt=excerpt
        )


def android_config(message: OutboundMessage) -> dict[str, Any]:
    config: dict[str, Any] = {
        "priority": "high" if message.priority in _HIGH_PRIORITIES else "normal"
    }
    ttl = ttl_seconds(message.remaining_ttl())
    if ttl is not None:
        config["ttl"] = f"{ttl}s"
    if message.data.get(COLLAPSE_KEY):
        config["collapse_key"] = message.data[COLLAPSE_KEY]
    return config


def apns_config(message: OutboundMessage) -> dict[str, Any]:
    headers = {
        "apns-priority": "10" if message.priority in _HIGH_PRIORITIES else "5",
        "apns-push-type": "alert",
    }
    if message.expires_at is not None:
        headers["apns-expiration"] = str(math.floor(message.expires_at.timestamp()))
    if message.data.get(COLLAPSE_KEY):
        headers["apns-collapse-id"] = message.data[COLLAPSE_KEY]
    return {"headers": headers}


def webpush_config(message: OutboundMessage) -> dict[str, Any]:
    headers = {"Urgency": "high" if message.priority in _HIGH_PRIORITIES else "normal"}
    ttl = ttl_seconds(message.remaining_ttl())
    if ttl is not None:
        headers["TTL"] = str(ttl)
    return {"headers": headers}


def ttl_seconds(remaining: timedelta | None) -> int | None:
    """Whole seconds left (rounded down: never promise a message longer than it lives), at
    most FCM's 28 days; ``None`` when the message never expires (FCM's default applies)."""
    if remaining is None:
        return None
    return math.floor(min(remaining, MAX_TTL).total_seconds())


def _fcm_error(response: requests.Response) -> tuple[str, str, bool]:
    """The FCM error code (``UNREGISTERED``...), the message, and whether the token is the
    field at fault, from a v1 error body:
    ``{"error": {"status", "message", "details": [{"errorCode"}, {"fieldViolations"}]}}``."""
    try:
        error = response.json().get("error", {})
    except ValueError:
        return "", response.text, False
    if not isinstance(error, dict):
        return "", json.dumps(error), False
    code, token_at_fault = str(error.get("status", "")), False
    for detail in error.get("details") or []:
        if not isinstance(detail, dict):
            continue
        code = str(detail.get("errorCode") or code)
        for violation in detail.get("fieldViolations") or []:
            if "token" in str(violation.get("field", "")).lower():
                token_at_fault = True
    text = str(error.get("message", ""))
    token_at_fault = token_at_fault or "registration token" in text.lower()
    return code, text, token_at_fault


def _credentials(reader: OptionReader) -> Any:
    """google-auth service account credentials (untyped in google-auth)."""
    path = reader.string("SERVICE_ACCOUNT_FILE", required=False)
    info = reader.options.get("SERVICE_ACCOUNT_INFO")
    if bool(path) == bool(info):
        raise reader.error("set one of SERVICE_ACCOUNT_FILE and SERVICE_ACCOUNT_INFO")
    try:
        if path:
            return service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                path, scopes=[SCOPE]
            )
        if not isinstance(info, Mapping):
            raise reader.error("SERVICE_ACCOUNT_INFO must be a dict (the key's JSON)")
        return service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            dict(info), scopes=[SCOPE]
        )
    except (OSError, ValueError, KeyError) as exc:
        raise reader.error(f"cannot read the service account key: {exc}") from exc
