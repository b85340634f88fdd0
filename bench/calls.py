"""The CPU one provider call costs: each configured provider's real SDK, called as a sending
process calls it, side by side with the same request made with a bare HTTP client.

``python -m bench.calls CALLS`` runs in a process of its own with the product's environment
(the stack's providers, pointed at the sandbox), so that only the calls are counted, and
writes JSON on stdout: for each provider (``channel/name``) and for ``bare``, the calls made,
their rate, and the CPU time (user and system, every thread of the process) per call.

Each provider's ``send`` is called ``CALLS`` times from ``NOTIFIER_SEND_CONCURRENCY``
threads, as ``sending._call_providers`` calls it for a batch, after a first round that builds
connections. ``bare`` is the Twilio provider's request (the same form fields and Basic
authentication, to the same stand-in answering after the same latency) made with urllib3
alone: what an HTTP call costs this process without an SDK. The difference between the two is
the SDK's own work (building and signing the request, its hooks, parsing the answer), which
no setting of ours removes: the providers are called through their real SDKs (SPEC).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from base64 import b64encode
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

if TYPE_CHECKING:  # Django is set up in provider_calls, before the channels are imported
    from channels.base import OutboundMessage, Provider, SendResult

SAMPLES: dict[str, dict[str, Any]] = {
    "email": {"destination": "bench-calls@example.com", "subject": "Your receipt"},
    "sms": {"destination": "+14155550123"},
    "push": {"destination": "f" * 64, "subject": "Your order", "data": {"order": "42"}},
}
"""Each channel's message: a destination its stand-ins accept and a body of a common size."""
BODY = "Your order 42 has shipped and will arrive on Thursday between 9 and 12. " * 2
PLATFORM = {"apns": "ios", "fcm": "android"}


def measure(call: Callable[[int], object], calls: int, threads: int) -> dict[str, float]:
    """``call(i)`` ``calls`` times from ``threads`` threads, after one warm-up round."""
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(call, range(threads)))
        started, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        list(pool.map(call, range(calls)))
        elapsed, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"calls": calls, "per_s": calls / elapsed, "cpu_ms_per_call": cpu / calls * 1000}


def provider_calls(calls: int) -> dict[str, dict[str, float]]:
    """Every configured provider's ``send``, then the bare request."""
    import django

    django.setup()
    from django.conf import settings

    from channels.base import CHANNELS, OutboundMessage
    from channels.registry import registry

    threads = settings.NOTIFIER_SEND_CONCURRENCY
    results = {}
    for channel in CHANNELS:
        for name in registry.names(channel):
            provider = registry.get(channel, name)
            message = OutboundMessage(
                channel=channel, body=BODY, html="", correlation_id="1",
                subject=SAMPLES[channel].get("subject", ""),
                destination=SAMPLES[channel]["destination"],
                data=SAMPLES[channel].get("data", {}),
                platform=PLATFORM.get(name, ""),
            )  # fmt: skip
            results[f"{channel}/{name}"] = measure(partial(send, provider, message), calls, threads)
    results["bare"] = measure(bare_twilio_call(settings.NOTIFIER_PROVIDERS), calls, threads)
    return results


def send(provider: Provider, message: OutboundMessage, _: int) -> SendResult:
    return provider.send(message)


def bare_twilio_call(providers: dict[str, Any]) -> Callable[[int], object]:
    """A call making the Twilio provider's request with urllib3 alone."""
    import urllib3

    options = providers["sms"]["BACKENDS"]["twilio"]["OPTIONS"]
    sid = options["ACCOUNT_SID"]
    url = f"{options['BASE_URL'].rstrip('/')}/2010-04-01/Accounts/{sid}/Messages.json"
    credentials = b64encode(f"{sid}:{options['AUTH_TOKEN']}".encode()).decode()
    headers = {
        "Authorization": f"Basic {credentials}",
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "application/json",
    }
    body = urlencode(
        {"To": SAMPLES["sms"]["destination"], "Body": BODY, "From": options["FROM_NUMBER"]}
    )
    pool = urllib3.PoolManager(maxsize=options.get("MAX_CONNECTIONS", 50))

    def call(_: int) -> str:
        response = pool.request("POST", url, body=body, headers=headers, retries=False)
        if response.status != 201:
            raise RuntimeError(f"the Twilio stand-in answered {response.status}: {response.data!r}")
        return str(json.loads(response.data)["sid"])

    return call


def main(argv: list[str]) -> int:
    json.dump(provider_calls(int(argv[0])), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
