"""APNs over HTTP/2 + TLS with httpx2 and an ES256 provider token signed with the sandbox's .p8."""

from __future__ import annotations

import json
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import jwt
import pytest

from notifier.sandbox.server import SandboxServer

TOKEN = "a" * 64


def provider_token(
    sandbox: SandboxServer, *, kid: str | None = None, iat: int | None = None
) -> str:
    connection = sandbox.connection
    return jwt.encode(
        {"iss": connection["apns_team_id"], "iat": iat or int(time.time())},
        Path(connection["apns_key_file"]).read_text(),
        algorithm="ES256",
        headers={"kid": kid or connection["apns_key_id"]},
    )


@pytest.fixture(scope="module")
def apns(sandbox):
    context = ssl.create_default_context(cafile=sandbox.ca_file)
    with httpx2.Client(http2=True, verify=context, base_url=sandbox.apns_url, timeout=5) as client:
        yield client


def push(apns, sandbox, device_token=TOKEN, *, payload=None, token=None, **headers):
    body = (
        payload
        if isinstance(payload, bytes)
        else json.dumps(
            payload or {"aps": {"alert": {"title": "Order shipped", "body": "On its way"}}}
        ).encode()
    )
    return apns.post(
        f"/3/device/{device_token}",
        content=body,
        headers={
            "authorization": f"bearer {token or provider_token(sandbox)}",
            "apns-topic": sandbox.connection["apns_topic"],
            "apns-push-type": "alert",
            **headers,
        },
    )


def test_push_is_recorded_with_apns_headers(apns, sandbox):
    # when
    response = push(
        apns,
        sandbox,
        payload={
            "aps": {"alert": {"title": "Order shipped", "body": "On its way"}},
            "order": "1042",
        },
        **{"apns-priority": "5", "apns-expiration": "1700000000", "apns-collapse-id": "order-1042"},
    )

    # then
    assert response.http_version == "HTTP/2"
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["apns-unique-id"]
    [message] = sandbox.messages(provider="apns")
    assert message["id"] == response.headers["apns-id"]
    assert (message["to"], message["title"], message["body"]) == (
        TOKEN,
        "Order shipped",
        "On its way",
    )
    assert message["data"]["order"] == "1042"
    assert message["headers"] == {
        "apns-topic": sandbox.connection["apns_topic"],
        "apns-push-type": "alert",
        "apns-priority": "5",
        "apns-expiration": "1700000000",
        "apns-collapse-id": "order-1042",
    }


def test_client_apns_id_is_echoed(apns, sandbox):
    apns_id = "123E4567-E89B-12D3-A456-4266554400A0"

    response = push(apns, sandbox, **{"apns-id": apns_id})

    assert response.headers["apns-id"] == apns_id


@pytest.mark.parametrize(
    ("device_token", "headers", "payload", "status", "reason"),
    [
        ("not-hex", {}, None, 400, "BadDeviceToken"),
        (TOKEN, {"apns-topic": "org.other.app"}, None, 400, "TopicDisallowed"),
        (TOKEN, {"apns-collapse-id": "c" * 65}, None, 400, "BadCollapseId"),
        (TOKEN, {"apns-priority": "7"}, None, 400, "BadPriority"),
        (TOKEN, {}, b"{" + b" " * 4096 + b"}", 413, "PayloadTooLarge"),
    ],
)
def test_apns_errors(apns, sandbox, device_token, headers, payload, status, reason):
    response = push(apns, sandbox, device_token, payload=payload, **headers)

    assert response.status_code == status
    assert response.json() == {"reason": reason}
    assert sandbox.messages() == []


def test_missing_topic(apns, sandbox):
    response = apns.post(
        f"/3/device/{TOKEN}",
        content=b'{"aps":{}}',
        headers={"authorization": f"bearer {provider_token(sandbox)}"},
    )

    assert (response.status_code, response.json()) == (400, {"reason": "MissingTopic"})


def test_provider_token_checks(apns, sandbox):
    assert push(apns, sandbox, token=provider_token(sandbox, kid="WRONGKEYID")).json() == {
        "reason": "InvalidProviderToken"
    }
    expired = push(apns, sandbox, token=provider_token(sandbox, iat=int(time.time()) - 7200))
    assert (expired.status_code, expired.json()) == (403, {"reason": "ExpiredProviderToken"})
    missing = apns.post(f"/3/device/{TOKEN}", content=b"{}", headers={"apns-topic": "x"})
    assert (missing.status_code, missing.json()) == (403, {"reason": "MissingProviderToken"})


@pytest.mark.parametrize("device_token", ["deaddead" + "0" * 56, "x-dead-token"])
def test_dead_token_is_unregistered_with_timestamp(apns, sandbox, device_token):
    response = push(apns, sandbox, device_token)

    assert response.status_code == 410
    body = response.json()
    assert body["reason"] == "Unregistered"
    assert abs(body["timestamp"] - time.time() * 1000) < 60_000


def test_many_concurrent_streams_on_one_connection(apns, sandbox):
    # given: a little latency, so that the streams overlap
    sandbox.set_fault("apns", latency_ms=100, times=50)

    # when
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(lambda _: push(apns, sandbox).status_code, range(50)))

    # then: answered in parallel, not one after the other
    assert statuses == [200] * 50
    assert time.monotonic() - started < 2.5
    assert len(sandbox.messages(provider="apns")) == 50


def test_faults_status_rate_limit_unregistered(apns, sandbox):
    sandbox.set_fault("apns", status=503, times=1)
    assert push(apns, sandbox).json() == {"reason": "ServiceUnavailable"}

    sandbox.set_fault("apns", rate_limit={"retry_after": 4}, times=1)
    limited = push(apns, sandbox)
    assert (limited.status_code, limited.json()) == (429, {"reason": "TooManyRequests"})
    assert limited.headers["retry-after"] == "4"

    sandbox.set_fault("apns", unregistered=True, times=1)
    assert push(apns, sandbox).status_code == 410
    assert push(apns, sandbox).status_code == 200


def test_hang_fault_times_out_with_the_message_recorded(apns, sandbox):
    sandbox.set_fault("apns", hang=True, times=1)

    with pytest.raises(httpx2.ReadTimeout):
        apns.post(
            f"/3/device/{TOKEN}",
            content=b'{"aps":{"alert":"hi"}}',
            headers={
                "authorization": f"bearer {provider_token(sandbox)}",
                "apns-topic": sandbox.connection["apns_topic"],
            },
            timeout=0.5,
        )

    assert [m["body"] for m in sandbox.messages(provider="apns")] == ["hi"]
    # the connection still serves other streams
    assert push(apns, sandbox).status_code == 200


def test_down_fault_refuses_new_connections(sandbox):
    sandbox.set_fault("apns", down=True, times=1)
    context = ssl.create_default_context(cafile=sandbox.ca_file)

    with httpx2.Client(http2=True, verify=context, base_url=sandbox.apns_url, timeout=2) as client:
        with pytest.raises(httpx2.ConnectError):
            push(client, sandbox)
        # the next connection works again
        assert push(client, sandbox).status_code == 200
