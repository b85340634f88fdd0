"""Twilio through the ``twilio`` SDK, its requests redirected to the sandbox (ECOSYSTEM §2.3)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from notifier.sandbox.server import SandboxServer


class LocalTwilioHttpClient(TwilioHttpClient):
    """Sends every Twilio domain's requests to one base URL."""

    def __init__(self, base_url: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self._base = urlsplit(base_url)

    def request(self, method, url, *args, **kwargs):
        parts = urlsplit(url)
        local = urlunsplit(
            (self._base.scheme, self._base.netloc, parts.path, parts.query, parts.fragment)
        )
        return super().request(method, local, *args, **kwargs)


def twilio_client(
    sandbox: SandboxServer, *, token: str | None = None, timeout: float = 5
) -> Client:
    connection = sandbox.connection
    return Client(
        connection["twilio_account_sid"],
        token or connection["twilio_auth_token"],
        http_client=LocalTwilioHttpClient(sandbox.http_url, timeout=timeout),
    )


def send(client: Client, sandbox: SandboxServer, to: str = "+14155550123", **extra):
    return client.messages.create(
        to=to, from_=sandbox.connection["twilio_from_number"], body="Your code is 123456", **extra
    )


def test_message_is_recorded_with_callback_and_validity(sandbox):
    # when
    message = send(
        twilio_client(sandbox),
        sandbox,
        status_callback="https://example.org/webhooks/twilio",
        validity_period=600,
    )

    # then
    assert message.sid.startswith("SM")
    assert len(message.sid) == 34
    assert (message.status, message.to, message.num_segments) == ("queued", "+14155550123", "1")
    assert message.uri.endswith(f"/Messages/{message.sid}.json")
    [recorded] = sandbox.messages(provider="twilio")
    assert recorded["id"] == message.sid
    assert recorded["from"] == sandbox.connection["twilio_from_number"]
    assert recorded["body"] == "Your code is 123456"
    assert recorded["headers"] == {
        "StatusCallback": "https://example.org/webhooks/twilio",
        "ValidityPeriod": "600",
    }


def test_long_unicode_message_counts_segments(sandbox):
    message = twilio_client(sandbox).messages.create(
        to="+14155550123", messaging_service_sid="MG" + "0" * 32, body="😀" * 71
    )

    assert (message.num_segments, message.status) == ("2", "accepted")


@pytest.mark.parametrize(
    ("to", "code"), [("+15005550001", 21211), ("12345", 21211), ("+15005550004", 21610)]
)
def test_marked_numbers_fail_like_twilio(sandbox, to, code):
    with pytest.raises(TwilioRestException) as raised:
        send(twilio_client(sandbox), sandbox, to=to)

    assert (raised.value.status, raised.value.code) == (400, code)
    assert sandbox.messages() == []


def test_wrong_token_is_20003(sandbox):
    with pytest.raises(TwilioRestException) as raised:
        send(twilio_client(sandbox, token="0" * 32), sandbox)

    assert (raised.value.status, raised.value.code) == (401, 20003)


def test_status_fault_applies_times_then_clears(sandbox):
    # given
    sandbox.set_fault("twilio", status=503, times=2)
    client = twilio_client(sandbox)
    seen = sandbox.requests_seen("twilio"), sandbox.requests_seen("ses")

    # when
    statuses = []
    for _ in range(3):
        try:
            send(client, sandbox)
            statuses.append(201)
        except TwilioRestException as exc:
            statuses.append(exc.status)

    # then
    assert statuses == [503, 503, 201]
    assert len(sandbox.messages(provider="twilio")) == 1
    # and every request that reached the stand-in is counted, faulted or not
    assert (sandbox.requests_seen("twilio"), sandbox.requests_seen("ses")) == (seen[0] + 3, seen[1])


def test_rate_limit_fault_is_429_with_retry_after(sandbox):
    sandbox.set_fault("twilio", rate_limit={"retry_after": 7})

    response = requests.post(
        f"{sandbox.http_url}/2010-04-01/Accounts/{sandbox.connection['twilio_account_sid']}/Messages.json",
        data={"To": "+14155550123", "From": "+15005550006", "Body": "hi"},
        auth=(sandbox.connection["twilio_account_sid"], sandbox.connection["twilio_auth_token"]),
        timeout=5,
    )

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.json()["code"] == 20429


def test_unregistered_fault_is_opted_out(sandbox):
    sandbox.set_fault("twilio", unregistered=True, times=1)

    with pytest.raises(TwilioRestException) as raised:
        send(twilio_client(sandbox), sandbox)

    assert raised.value.code == 21610


def test_hang_fault_times_out_with_the_message_recorded(sandbox):
    sandbox.set_fault("twilio", hang=True, times=1)

    with pytest.raises(requests.exceptions.ReadTimeout):
        send(twilio_client(sandbox, timeout=0.5), sandbox)

    assert len(sandbox.messages(provider="twilio")) == 1


def test_drop_fault_is_a_connection_error(sandbox):
    sandbox.set_fault("twilio", drop=True, times=1)

    with pytest.raises(requests.exceptions.ConnectionError):
        send(twilio_client(sandbox), sandbox)

    assert sandbox.messages() == []
