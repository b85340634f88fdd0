"""The provider contract: every provider, through its real SDK, against its local stand-in.

One suite, parametrized by provider: success (the payload as the stand-in received it),
invalid recipient, dead token (push), opted out (SMS), 429 with Retry-After, 5xx, a hang after
the stand-in accepted (timeout, outcome unknown), the provider down, bad credentials, and
concurrency (one instance, many threads).
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from channels.base import OutboundMessage, Provider
from channels.errors import (
    ChannelError,
    InvalidRecipient,
    MessageRejected,
    ProviderConfigurationError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    RecipientOptedOut,
    RecipientUnreachable,
)
from notifier.sandbox.server import SandboxServer
from tests.channels.contract.conftest import CONTRACT_TIMEOUT, provider_settings
from tests.channels.providers_fakes import service_account_info

APNS_TOKEN = "a1" * 32
APNS_DEAD_TOKEN = "deaddead" + "0" * 56


@dataclass(frozen=True)
class Contract:
    """What one provider is sent in the suite, and how its stand-in is told to fail."""

    name: str  # its settings name, also the stand-in's provider name
    channel: str
    destination: str
    invalid: str
    invalid_error: type[ChannelError]
    dead: str = ""  # push: a token the stand-in calls unregistered
    opted_out: str = ""  # sms: a number that sent STOP
    transport: str = "http"  # "http" (the shared HTTP port), "apns" or "smtp"


CONTRACTS = [
    Contract("ses", "email", "jane@example.com", "reject@example.com", MessageRejected),
    Contract(
        "smtp",
        "email",
        "jane@example.com",
        "reject@example.com",
        InvalidRecipient,
        transport="smtp",
    ),
    Contract(
        "twilio", "sms", "+14155550123", "+15005550001", InvalidRecipient, opted_out="+15005550004"
    ),
    Contract(
        "sns", "sms", "+14155550123", "+15005550001", InvalidRecipient, opted_out="+15005550004"
    ),
    Contract("fcm", "push", "fcm-token-1", "bad-token-1", InvalidRecipient, dead="x-dead-token-1"),
    # APNs answers a malformed token with 400 BadDeviceToken, which we treat as dead.
    Contract(
        "apns",
        "push",
        APNS_TOKEN,
        "not-a-hex-token",
        RecipientUnreachable,
        dead=APNS_DEAD_TOKEN,
        transport="apns",
    ),
]
BY_NAME = {contract.name: contract for contract in CONTRACTS}
contracts = pytest.mark.parametrize("contract", CONTRACTS, ids=lambda contract: contract.name)


def settings_of(sandbox: SandboxServer, contract: Contract, timeout: float) -> dict[str, Any]:
    channel = provider_settings(sandbox, timeout=timeout)[contract.channel]
    backend: dict[str, Any] = channel["BACKENDS"][contract.name]
    return backend


def build(
    sandbox: SandboxServer,
    contract: Contract,
    *,
    timeout: float = CONTRACT_TIMEOUT,
    **overrides: Any,
) -> Provider:
    backend = settings_of(sandbox, contract, timeout)
    module_path, _, class_name = backend["CLASS"].rpartition(".")
    provider_class = getattr(importlib.import_module(module_path), class_name)
    options = {**backend["OPTIONS"], **overrides}
    provider: Provider = provider_class(
        name=contract.name, channel=contract.channel, options=options
    )
    return provider


def outbound(contract: Contract, destination: str = "", **fields: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "channel": contract.channel,
        "destination": destination or contract.destination,
        "subject": "" if contract.channel == "sms" else "Your order",
        "body": "Your order has shipped.",
        "html": "<p>Your order has shipped.</p>" if contract.channel == "email" else "",
        "correlation_id": "7d0b5a5e-2a49-4a7c-9a53-0c8b2f1e6d10",
    }
    values.update(fields)
    return OutboundMessage(**values)


# ------------------------------------------------------------------------------------ success


@contracts
def test_success_delivers_the_message_as_sent(sandbox: SandboxServer, contract: Contract) -> None:
    # given
    overrides: dict[str, Any] = {}
    if contract.name == "twilio":
        overrides["STATUS_CALLBACK_URL"] = "https://notifier.example/webhooks/twilio"
    provider = build(sandbox, contract, **overrides)
    expires_at = datetime.now(UTC) + timedelta(minutes=10)
    message = outbound(
        contract, priority="high", expires_at=expires_at, data={"collapse_id": "order-7"}
    )

    # when
    result = provider.send(message)

    # then
    assert result.provider == contract.name
    assert result.provider_message_id
    [received] = sandbox.messages(provider=contract.name)
    assert received["to"] == contract.destination
    assert received["body"] == message.body
    RECEIVED_CHECKS[contract.name](received, message)


def test_smtp_through_sendgrid_carries_the_delivery_id_as_a_unique_arg(
    sandbox: SandboxServer,
) -> None:
    # given the SMTP provider told that its relay is SendGrid's
    contract = BY_NAME["smtp"]
    provider = build(sandbox, contract, SENDGRID_EVENTS=True)
    message = outbound(contract, correlation_id="4711")

    # when
    provider.send(message)

    # then the relay received the X-SMTPAPI header SendGrid reads its custom args from
    [received] = sandbox.messages(provider=contract.name)
    headers = {key.lower(): value for key, value in received["headers"].items()}
    assert json.loads(headers["x-smtpapi"]) == {"unique_args": {"notifier_delivery_id": "4711"}}
    assert headers["x-notifier-delivery-id"] == "4711"


def test_smtp_without_sendgrid_events_sends_no_smtpapi_header(sandbox: SandboxServer) -> None:
    # given
    contract = BY_NAME["smtp"]

    # when
    build(sandbox, contract).send(outbound(contract))

    # then
    [received] = sandbox.messages(provider=contract.name)
    assert "x-smtpapi" not in {key.lower() for key in received["headers"]}


def check_ses(received: dict[str, Any], message: OutboundMessage) -> None:
    headers = received["headers"]
    assert received["subject"] == "Your order"
    assert received["html"] == message.html
    assert {"Name": "notifier_delivery_id", "Value": message.correlation_id} in headers["EmailTags"]
    assert headers["Headers"]["X-Notifier-Delivery-Id"] == message.correlation_id


def check_smtp(received: dict[str, Any], message: OutboundMessage) -> None:
    headers = {key.lower(): value for key, value in received["headers"].items()}
    assert received["subject"] == "Your order"
    assert received["html"].strip() == message.html
    assert headers["x-notifier-delivery-id"] == message.correlation_id


def check_twilio(received: dict[str, Any], message: OutboundMessage) -> None:
    headers = received["headers"]
    assert 590 <= int(headers["ValidityPeriod"]) <= 600
    assert headers["StatusCallback"] == (
        f"https://notifier.example/webhooks/twilio?delivery_id={message.correlation_id}"
    )


def check_sns(received: dict[str, Any], message: OutboundMessage) -> None:
    attributes = received["headers"]["MessageAttributes"]
    assert "Transactional" in str(attributes["AWS.SNS.SMS.SMSType"])


def check_fcm(received: dict[str, Any], message: OutboundMessage) -> None:
    headers = received["headers"]
    assert received["title"] == "Your order"
    assert received["data"]["notifier_delivery_id"] == message.correlation_id
    assert 590 <= int(headers["android.ttl"].removesuffix("s")) <= 600
    assert headers["android.priority"] == "high"
    assert headers["android.collapse_key"] == "order-7"
    assert headers["apns.apns-collapse-id"] == "order-7"
    assert message.expires_at is not None
    assert headers["apns.apns-expiration"] == str(int(message.expires_at.timestamp()))


def check_apns(received: dict[str, Any], message: OutboundMessage) -> None:
    headers = received["headers"]
    assert received["title"] == "Your order"
    assert received["data"]["notifier_delivery_id"] == message.correlation_id
    assert message.expires_at is not None
    assert headers["apns-expiration"] == str(int(message.expires_at.timestamp()))
    assert headers["apns-collapse-id"] == "order-7"
    assert headers["apns-priority"] == "10"
    assert headers["apns-push-type"] == "alert"
    assert headers["apns-id"].lower() == message.correlation_id


RECEIVED_CHECKS: dict[str, Callable[[dict[str, Any], OutboundMessage], None]] = {
    "ses": check_ses,
    "smtp": check_smtp,
    "twilio": check_twilio,
    "sns": check_sns,
    "fcm": check_fcm,
    "apns": check_apns,
}


# -------------------------------------------------------------------------- recipient refusals


@contracts
def test_an_invalid_recipient_is_refused_for_good(
    sandbox: SandboxServer, contract: Contract
) -> None:
    with pytest.raises(contract.invalid_error):
        build(sandbox, contract).send(outbound(contract, contract.invalid))
    assert sandbox.messages(provider=contract.name) == []


@pytest.mark.parametrize("contract", [BY_NAME["fcm"], BY_NAME["apns"]], ids=["fcm", "apns"])
def test_a_dead_token_is_unreachable(sandbox: SandboxServer, contract: Contract) -> None:
    with pytest.raises(RecipientUnreachable):
        build(sandbox, contract).send(outbound(contract, contract.dead))


@pytest.mark.parametrize("contract", [BY_NAME["twilio"], BY_NAME["sns"]], ids=["twilio", "sns"])
def test_an_opted_out_number_is_opted_out(sandbox: SandboxServer, contract: Contract) -> None:
    with pytest.raises(RecipientOptedOut):
        build(sandbox, contract).send(outbound(contract, contract.opted_out))


# ------------------------------------------------------------------------ provider having a bad day


@contracts
def test_429_is_rate_limited_with_retry_after(sandbox: SandboxServer, contract: Contract) -> None:
    # given
    sandbox.set_fault(contract.name, rate_limit={"retry_after": 2})

    # when
    with pytest.raises(RateLimited) as raised:
        build(sandbox, contract).send(outbound(contract))

    # then
    assert raised.value.retry_after == 2.0
    assert raised.value.outcome_unknown is False


@contracts
def test_5xx_is_unavailable(sandbox: SandboxServer, contract: Contract) -> None:
    # given
    sandbox.set_fault(contract.name, status=503)

    # when
    with pytest.raises(ProviderUnavailable) as raised:
        build(sandbox, contract).send(outbound(contract))

    # then
    assert raised.value.outcome_unknown is False
    assert sandbox.messages(provider=contract.name) == []


@contracts
def test_a_hang_after_accepting_is_a_timeout_with_unknown_outcome(
    sandbox: SandboxServer, contract: Contract
) -> None:
    # given
    provider = build(sandbox, contract, timeout=0.5)
    if contract.name == "fcm":
        provider.send(outbound(contract))  # the OAuth token, fetched before the fault
        sandbox.clear_messages()
    sandbox.set_fault(contract.name, hang=True)

    # when
    started = time.monotonic()
    with pytest.raises(ProviderTimeout) as raised:
        provider.send(outbound(contract))

    # then: the stand-in has the message; we could not know
    assert raised.value.outcome_unknown is True
    assert time.monotonic() - started < 5
    assert len(sandbox.messages(provider=contract.name)) == 1


@contracts
def test_a_provider_that_is_down_is_unavailable(sandbox: SandboxServer, contract: Contract) -> None:
    # given: the provider's stand-in refuses connections (the HTTP ones close their port)
    provider = build(sandbox, contract)
    if contract.name == "fcm":
        provider.client.access_token()  # type: ignore[attr-defined]  # the token endpoint is up
    sandbox.set_fault(contract.name, down=True)

    # when / then: nothing reached the provider, and the error says so
    with pytest.raises(ProviderUnavailable) as raised:
        provider.send(outbound(contract))
    assert raised.value.outcome_unknown is False
    assert sandbox.messages(provider=contract.name) == []

    # and once the provider is back the same client sends again
    sandbox.clear_faults(contract.name)
    provider.send(outbound(contract))
    assert len(sandbox.messages(provider=contract.name)) == 1


@pytest.mark.parametrize(
    "contract", [c for c in CONTRACTS if c.transport == "http"], ids=lambda c: c.name
)
def test_a_connection_dropped_after_the_request_leaves_the_outcome_unknown(
    sandbox: SandboxServer, contract: Contract
) -> None:
    # given: the stand-in reads the request, then closes without an answer
    provider = build(sandbox, contract)
    if contract.name == "fcm":
        provider.send(outbound(contract))
    sandbox.set_fault(contract.name, drop=True)

    # then: the vendor may have acted on it, as far as any client can tell
    with pytest.raises(ProviderTimeout):
        provider.send(outbound(contract))


@contracts
def test_bad_credentials_are_a_configuration_error(
    sandbox: SandboxServer, contract: Contract, tmp_path: Any
) -> None:
    # given
    provider = build(sandbox, contract, **bad_credentials(sandbox, contract, tmp_path))

    # then
    with pytest.raises(ProviderConfigurationError):
        provider.send(outbound(contract))
    assert sandbox.messages(provider=contract.name) == []


def bad_credentials(sandbox: SandboxServer, contract: Contract, tmp_path: Any) -> dict[str, Any]:
    if contract.name in ("ses", "sns"):
        return {"SECRET_ACCESS_KEY": "not-the-secret"}
    if contract.name == "twilio":
        return {"AUTH_TOKEN": "not-the-token"}
    if contract.name == "smtp":
        # The stand-in offers no AUTH; a relay that cannot log us in is misconfigured.
        return {"USERNAME": "apikey", "PASSWORD": "secret"}
    if contract.name == "fcm":
        info = service_account_info(token_uri=sandbox.http_url + "/token")
        info["client_email"] = "fcm@other.iam.gserviceaccount.com"
        return {"SERVICE_ACCOUNT_FILE": None, "SERVICE_ACCOUNT_INFO": info}
    other_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return {"PRIVATE_KEY_FILE": None, "PRIVATE_KEY": other_key.decode()}


# --------------------------------------------------------------------------------- concurrency


@contracts
def test_one_instance_sends_concurrently_from_many_threads(
    sandbox: SandboxServer, contract: Contract
) -> None:
    # given: 100 ms per request at the stand-in, one provider instance shared by the threads
    provider = build(sandbox, contract, timeout=10.0)
    provider.send(outbound(contract))  # warm up: connections, OAuth token, SDK models
    sandbox.set_fault(contract.name, latency_ms=100)
    serial_sends, concurrent_sends = 10, 50

    # when: side by side, serial then from a pool of 50 threads
    started = time.monotonic()
    for _ in range(serial_sends):
        provider.send(outbound(contract))
    serial_per_send = (time.monotonic() - started) / serial_sends
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrent_sends) as pool:
        results = list(
            pool.map(lambda _: provider.send(outbound(contract)), range(concurrent_sends))
        )
    concurrent_elapsed = time.monotonic() - started

    # then: 50 sends take far less than 50 serial ones would
    assert len(results) == concurrent_sends
    assert len(sandbox.messages(provider=contract.name)) == 1 + serial_sends + concurrent_sends
    assert serial_per_send >= 0.1
    assert concurrent_elapsed < 0.3 * serial_per_send * concurrent_sends, (
        f"{concurrent_sends} concurrent sends took {concurrent_elapsed:.2f}s; "
        f"serially {serial_per_send:.3f}s each"
    )


def test_apns_multiplexes_every_thread_on_one_connection(sandbox: SandboxServer) -> None:
    # given
    provider = build(sandbox, BY_NAME["apns"], timeout=10.0)
    # (a burst that arrives before the first connection has negotiated HTTP/2 may open a
    # second one; a worker's provider is warm after its first send)
    provider.send(outbound(BY_NAME["apns"]))
    sandbox.set_fault("apns", latency_ms=100)

    # when
    with ThreadPoolExecutor(max_workers=30) as pool:
        list(pool.map(lambda _: provider.send(outbound(BY_NAME["apns"])), range(30)))

    # then: one HTTP/2 connection carried all 30 streams
    connections = provider.client._transport._pool.connections  # type: ignore[attr-defined]
    assert len(connections) == 1
    assert len(sandbox.messages(provider="apns")) == 31
