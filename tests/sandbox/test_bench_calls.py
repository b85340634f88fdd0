"""``python -m bench.calls``, the benchmark of what one provider call costs: every configured
provider is called through its real SDK, and the bare request reaches the same stand-in."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from notifier.sandbox.providers import providers_from_connection
from notifier.sandbox.server import SandboxServer
from tests.faults.stack import ROOT

CALLS = 12
THREADS = 3


def test_every_provider_and_the_bare_request_reach_the_stand_in(sandbox: SandboxServer) -> None:
    # Given the sandbox and the providers of make run pointed at it
    env = {
        **os.environ,
        "NOTIFIER_PROVIDERS_JSON": json.dumps(providers_from_connection(sandbox.connection)),
        "NOTIFIER_SEND_CONCURRENCY": str(THREADS),
    }
    # When the benchmark makes its calls
    done = subprocess.run(
        [sys.executable, "-m", "bench.calls", str(CALLS)], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    # Then each provider's stand-in took a warm-up round and the measured calls, Twilio's
    # twice as many (the bare request is Twilio's), and each has a cost per call
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    providers = ["push/fcm", "push/apns", "email/ses", "email/smtp", "sms/twilio", "sms/sns"]
    assert sorted(results) == sorted([*providers, "bare"])
    for provider in providers:
        name = provider.partition("/")[2]
        expected = (THREADS + CALLS) * (2 if name == "twilio" else 1)
        assert len(sandbox.messages(provider=name)) == expected, provider
    for measured in results.values():
        assert measured["calls"] == CALLS
        assert measured["cpu_ms_per_call"] > 0
        assert measured["per_s"] > 0
