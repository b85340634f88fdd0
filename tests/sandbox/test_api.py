"""The sandbox's own API, inbox page, connection file and management command."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from notifier.sandbox.server import CONNECTION_FILE, SandboxServer
from notifier.sandbox.store import SandboxMessage
from tests.brokers import free_port

CONNECTION_KEYS = {
    "http_url", "fcm_url", "twilio_url", "ses_url", "sns_url", "apns_url", "smtp_host",
    "smtp_port", "ca_file", "twilio_account_sid",
    "twilio_auth_token", "twilio_from_number", "aws_access_key_id", "aws_secret_access_key",
    "aws_region", "ses_from_address", "fcm_project_id", "fcm_service_account_file",
    "apns_key_file", "apns_key_id", "apns_team_id", "apns_topic", "sns_cert_url",
    "sns_topic_arn", "sns_endpoints", "twilio_inbound_url",
}  # fmt: skip


def send_sms(sandbox: SandboxServer, to: str, body: str) -> requests.Response:
    sid = sandbox.connection["twilio_account_sid"]
    return requests.post(
        f"{sandbox.http_url}/2010-04-01/Accounts/{sid}/Messages.json",
        data={"To": to, "From": sandbox.connection["twilio_from_number"], "Body": body},
        auth=(sid, sandbox.connection["twilio_auth_token"]),
        timeout=5,
    )


def test_messages_api_lists_filters_and_clears(sandbox):
    # given
    send_sms(sandbox, "+14155550100", "first")
    send_sms(sandbox, "+14155550101", "second")

    # when
    everything = requests.get(f"{sandbox.http_url}/_sandbox/messages", timeout=5).json()
    filtered = requests.get(
        f"{sandbox.http_url}/_sandbox/messages",
        params={"provider": "twilio", "to": "+14155550101", "channel": "sms"},
        timeout=5,
    ).json()
    other_channel = requests.get(
        f"{sandbox.http_url}/_sandbox/messages", params={"channel": "push"}, timeout=5
    ).json()

    # then: newest last, same shape as SandboxServer.messages()
    assert [m["body"] for m in everything] == ["first", "second"]
    assert everything == sandbox.messages()
    assert [m["body"] for m in filtered] == ["second"]
    assert other_channel == []
    assert set(everything[0]) >= {
        "id", "provider", "channel", "to", "subject", "title", "body", "html", "data", "headers",
        "received_at",
    }  # fmt: skip
    assert requests.delete(f"{sandbox.http_url}/_sandbox/messages", timeout=5).status_code == 204
    assert sandbox.messages() == []


def test_faults_api_sets_lists_and_clears(sandbox):
    # given
    url = f"{sandbox.http_url}/_sandbox/faults"

    # when
    created = requests.post(
        url, json={"provider": "twilio", "status": 503, "times": 1, "latency_ms": 10}, timeout=5
    )

    # then
    assert created.status_code == 201
    assert requests.get(url, timeout=5).json() == {
        "twilio": {
            "latency_ms": 10,
            "status": 503,
            "unregistered": False,
            "hang": False,
            "down": False,
            "drop": False,
            "callbacks": "normal",
            "times": 1,
        }
    }
    assert send_sms(sandbox, "+14155550100", "x").status_code == 503
    assert requests.get(url, timeout=5).json() == {}  # times=1 used up
    requests.post(url, json={"provider": "ses", "rate_limit": {"retry_after": 2}}, timeout=5)
    assert requests.get(url, timeout=5).json()["ses"]["rate_limit"] == {"retry_after": 2}
    assert requests.delete(url, timeout=5).status_code == 204
    assert requests.get(url, timeout=5).json() == {}


@pytest.mark.parametrize(
    "spec",
    [
        {"provider": "pigeon"},
        {"provider": "twilio", "colour": "red"},
        {"provider": "fcm", "times": 0},
        {"provider": "twilio", "down": True, "times": 1},
        {"provider": "smtp", "drop": True},
    ],
)
def test_faults_api_rejects_invalid_specs(sandbox, spec):
    response = requests.post(f"{sandbox.http_url}/_sandbox/faults", json=spec, timeout=5)

    assert response.status_code == 400
    assert response.json()["error"]


def test_faults_api_down_closes_the_providers_port_until_cleared(sandbox):
    # given twilio's own port, which answers
    url = f"{sandbox.http_url}/_sandbox/faults"
    port = int(sandbox.connection["twilio_url"].rsplit(":", 1)[1])
    assert connectable(port)

    # when twilio is down, its port refuses connections; the shared port still answers
    assert requests.post(url, json={"provider": "twilio", "down": True}, timeout=5).ok
    assert not connectable(port)
    assert requests.get(url, timeout=5).json()["twilio"]["down"] is True

    # and clearing the fault opens the same port again
    assert requests.delete(url, params={"provider": "twilio"}, timeout=5).status_code == 204
    assert connectable(port)


def connectable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return False
    return True


def test_inbox_page_escapes_everything_user_controlled(sandbox):
    # given
    send_sms(sandbox, "+14155550100", "<script>alert('sms')</script>")
    sandbox.context.store.add(
        SandboxMessage(
            id="m-1",
            provider="smtp",
            to="ada@example.com",
            subject="<script>alert('subject')</script>",
            html='<p onclick="x()">Hi & "bye"</p><script>alert(1)</script>',
        )
    )

    # when
    page = requests.get(sandbox.http_url + "/", timeout=5)

    # then
    assert page.headers["Content-Type"].startswith("text/html")
    assert "<script>" not in page.text
    assert "&lt;script&gt;alert(&#x27;subject&#x27;)&lt;/script&gt;" in page.text
    assert "&lt;script&gt;alert(&#x27;sms&#x27;)&lt;/script&gt;" in page.text
    assert (
        'srcdoc="&lt;p onclick=&quot;x()&quot;&gt;Hi &amp; &quot;bye&quot;&lt;/p&gt;' in page.text
    )
    assert "<iframe sandbox " in page.text
    one_inbox = requests.get(sandbox.http_url + "/", params={"to": "ada@example.com"}, timeout=5)
    assert "+14155550100" not in one_inbox.text


def test_connection_file_has_every_key_and_is_private(sandbox):
    path = Path(sandbox.connection["ca_file"]).parent / CONNECTION_FILE

    stored = json.loads(path.read_text())

    assert stored == sandbox.connection
    assert set(stored) == CONNECTION_KEYS
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stored["http_url"] == sandbox.http_url
    assert Path(stored["fcm_service_account_file"]).exists()
    assert Path(stored["apns_key_file"]).read_text().startswith("-----BEGIN PRIVATE KEY-----")


def test_restart_keeps_credentials_and_ca(state_dir):
    with SandboxServer(state_dir=state_dir) as first:
        before = dict(first.connection)
        ca = Path(first.ca_file).read_bytes()

    with SandboxServer(state_dir=state_dir) as second:
        after = second.connection

    for key in ("twilio_auth_token", "aws_secret_access_key", "apns_key_id"):
        assert after[key] == before[key]
    assert Path(after["ca_file"]).read_bytes() == ca


def test_management_command_serves_and_stops_on_sigterm(tmp_path):
    # given
    names = ("http", "apns", "smtp", "fcm", "twilio", "ses", "sns")
    ports = {name: free_port() for name in names}
    process = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "provider_sandbox",
            "--state-dir",
            str(tmp_path),
            *(arg for name in names for arg in (f"--{name}-port", str(ports[name]))),
        ],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        # when
        assert process.stdout is not None
        first_line = process.stdout.readline()
        response = requests.get(f"http://127.0.0.1:{ports['http']}/_sandbox/messages", timeout=5)

        # then
        assert first_line.strip() == f"Provider sandbox inbox: http://127.0.0.1:{ports['http']}/"
        assert response.json() == []
        connection = json.loads((tmp_path / CONNECTION_FILE).read_text())
        assert connection["smtp_port"] == ports["smtp"]
        assert connection["twilio_url"] == f"http://127.0.0.1:{ports['twilio']}"
    finally:
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        output, _ = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "Stopping the provider sandbox." in output
    assert time.monotonic() - started < 5


def test_the_sns_certificate_is_served_and_kept_across_restarts(state_dir):
    with SandboxServer(state_dir=state_dir) as first:
        served = requests.get(first.connection["sns_cert_url"], timeout=5)
    with SandboxServer(state_dir=state_dir) as second:
        again = requests.get(second.connection["sns_cert_url"], timeout=5)

    assert served.status_code == 200
    assert served.content.startswith(b"-----BEGIN CERTIFICATE-----")
    assert again.content == served.content


def test_an_unknown_callbacks_mode_is_refused(sandbox):
    response = requests.post(
        f"{sandbox.http_url}/_sandbox/faults",
        json={"provider": "twilio", "callbacks": "sometimes"},
        timeout=5,
    )

    assert response.status_code == 400
    assert "callbacks must be one of" in response.json()["error"]


def test_inbound_sms_needs_an_inbound_url(sandbox):
    response = requests.post(
        f"{sandbox.http_url}/_sandbox/twilio/inbound", json={"from": "+14155550123"}, timeout=5
    )

    assert response.status_code == 409


def test_status_callbacks_never_leave_for_a_host_outside_the_callback_hosts(sandbox):
    sid = sandbox.connection["twilio_account_sid"]
    response = requests.post(
        f"{sandbox.http_url}/2010-04-01/Accounts/{sid}/Messages.json",
        data={
            "To": "+14155550123",
            "From": sandbox.connection["twilio_from_number"],
            "Body": "hi",
            "StatusCallback": "https://notifier.example/webhooks/twilio/status",
        },
        auth=(sid, sandbox.connection["twilio_auth_token"]),
        timeout=5,
    )
    time.sleep(0.3)

    assert response.status_code == 201
    assert sandbox.callbacks_sent() == []
