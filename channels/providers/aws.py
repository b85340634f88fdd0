"""What the AWS providers (SES, SNS) share: a boto3 client that never retries, and the
translation of botocore's exceptions into ``channels.errors``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from channels.errors import (
    ChannelError,
    ProviderConfigurationError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from channels.providers.http import error_for_status, redact, retry_after_seconds
from channels.providers.options import OptionReader

AWS_OPTIONS = (
    "REGION",
    "ACCESS_KEY_ID",
    "SECRET_ACCESS_KEY",
    "ENDPOINT_URL",
    "TIMEOUT",
    "MAX_CONNECTIONS",
)

# Codes AWS services use for credentials they refuse, whatever the HTTP status.
AUTH_ERROR_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AuthFailure",
        "AuthorizationError",
        "ExpiredToken",
        "ExpiredTokenException",
        "IncompleteSignature",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "InvalidSecurity",
        "InvalidSignatureException",
        "MissingAuthenticationToken",
        "NotAuthorized",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
    }
)
# Codes of throttling, which some services answer with 400 rather than 429.
THROTTLING_CODES = frozenset(
    {
        "LimitExceededException",
        "RequestLimitExceeded",
        "Throttled",
        "ThrottledException",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
    }
)


def build_client(service: str, reader: OptionReader) -> Any:
    """A boto3 client for ``service`` from the common AWS options.

    botocore's retries are off (``total_max_attempts=1``: ``max_attempts`` would count
    retries, ECOSYSTEM §2.2), because the pipeline owns retries and a retry hidden here
    would sleep in a worker slot. A boto3 client is thread-safe (its session is not, so each
    provider has a session of its own) and building it does no network I/O.
    """
    timeout = reader.timeout()
    session = boto3.session.Session(
        aws_access_key_id=reader.string("ACCESS_KEY_ID"),
        aws_secret_access_key=reader.string("SECRET_ACCESS_KEY"),
        region_name=reader.string("REGION"),
    )
    config = Config(
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=timeout,
        read_timeout=timeout,
        max_pool_connections=reader.max_connections(),
    )
    endpoint_url = reader.url("ENDPOINT_URL", required=False) or None
    try:
        return session.client(service, endpoint_url=endpoint_url, config=config)
    except (botocore.exceptions.BotoCoreError, ValueError) as exc:
        raise reader.error(f"cannot build the {service} client: {exc}") from exc


def error_for_botocore_exception(
    exc: Exception,
    *,
    provider: str,
    codes: Mapping[str, type[ChannelError]],
    configuration_codes: frozenset[str] = frozenset(),
    hide: tuple[str, ...] = (),
) -> ChannelError | ProviderConfigurationError:
    """Translate a botocore exception. ``codes`` maps the service's own error codes to the
    error they mean and ``configuration_codes`` are those that mean the operator must act;
    both are checked before the generic throttling, credentials and status rules. ``hide``
    are strings (the destination) to remove from the excerpt."""
    if isinstance(exc, botocore.exceptions.ClientError):
        return _error_for_client_error(
            exc, provider=provider, codes=codes, configuration_codes=configuration_codes, hide=hide
        )
    if isinstance(
        exc, botocore.exceptions.ConnectTimeoutError | botocore.exceptions.EndpointConnectionError
    ):
        return ProviderUnavailable(f"cannot connect: {exc}", provider=provider)
    if isinstance(
        exc, botocore.exceptions.ReadTimeoutError | botocore.exceptions.ConnectionClosedError
    ):
        return ProviderTimeout(f"no answer in time: {exc}", provider=provider)
    if isinstance(
        exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError
    ):
        return ProviderConfigurationError(f"credentials: {exc}", provider=provider)
    if isinstance(exc, botocore.exceptions.HTTPClientError):
        # The request may have been written before the connection failed.
        return ProviderTimeout(f"connection failed: {exc}", provider=provider)
    return ProviderUnavailable(f"{type(exc).__name__}: {exc}", provider=provider)


def _error_for_client_error(
    exc: botocore.exceptions.ClientError,
    *,
    provider: str,
    codes: Mapping[str, type[ChannelError]],
    configuration_codes: frozenset[str],
    hide: tuple[str, ...],
) -> ChannelError | ProviderConfigurationError:
    error = exc.response.get("Error", {})
    metadata = exc.response.get("ResponseMetadata", {})
    code = str(error.get("Code", ""))
    status = int(metadata.get("HTTPStatusCode") or 0)
    text = redact(str(error.get("Message", "")), *hide)
    message = f"{code or 'error'}: {text}" if text else code or "error"
    if code in configuration_codes or code in AUTH_ERROR_CODES:
        return ProviderConfigurationError(f"{message} (status {status})", provider=provider)
    if code in codes:
        return codes[code](
            message, provider=provider, status_code=status, provider_code=code, excerpt=text
        )
    headers = metadata.get("HTTPHeaders", {})
    if code in THROTTLING_CODES or status == 429:
        return RateLimited(
            message,
            retry_after=retry_after_seconds(headers.get("retry-after")),
            provider=provider,
            status_code=status,
            provider_code=code,
            excerpt=text,
        )
    return error_for_status(
        status or 500, message, provider=provider, provider_code=code, excerpt=text
    )
