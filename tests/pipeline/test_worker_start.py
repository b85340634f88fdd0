"""A sending worker builds its providers when it starts, not when its first delivery waits.

Real Celery workers (subprocesses) on the private broker; their logs are what an operator
reads at start.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from tests.pipeline.conftest import Worker, wait_for

SES = "channels.providers.ses.SESProvider"
SANDBOX = {"CLASS": "channels.providers.sandbox.SandboxProvider", "OPTIONS": {}}


def _providers(ses_options: dict[str, Any]) -> str:
    email = {
        "DEFAULT": "sandbox",
        "BACKENDS": {"sandbox": SANDBOX, "ses": {"CLASS": SES, "OPTIONS": ses_options}},
    }
    sandbox = {"DEFAULT": "sandbox", "BACKENDS": {"sandbox": SANDBOX}}
    return json.dumps({"email": email, "sms": sandbox, "push": sandbox})


SES_OPTIONS = {
    "REGION": "eu-west-1",
    "ACCESS_KEY_ID": "AKIDEXAMPLE",
    "SECRET_ACCESS_KEY": "secret",
    "FROM_ADDRESS": "alerts@example.com",
    # Never called: building a client does no network I/O.
    "ENDPOINT_URL": "http://127.0.0.1:9",
}


def _ready_lines(worker: Worker, processes: int) -> list[str]:
    def lines() -> list[str]:
        found = re.findall(r"providers ready for .*", worker.log.read_text())
        return found if len(found) >= processes else []

    found: list[str] = wait_for(lines, timeout=30)
    return found


def test_each_pool_process_builds_the_providers_of_the_channels_it_consumes(
    start_worker: Callable[..., Worker],
) -> None:
    # given providers for every channel, email with a fallback
    providers = _providers(SES_OPTIONS)

    # when a worker of two processes starts on critical planning, email and bulk SMS
    worker = start_worker(
        queues="notify.critical.planning,notify.critical.email,notify.bulk.sms",
        concurrency=2,
        NOTIFIER_PROVIDERS_JSON=providers,
    )

    # then each process says what it built
    lines = _ready_lines(worker, processes=2)
    assert len(lines) == 2
    for line in lines:
        # Email's and SMS's providers, every one configured (the fallbacks too); not push's.
        assert re.fullmatch(
            r"providers ready for email, sms in \d+ ms: email/sandbox, email/ses, sms/sandbox",
            line,
        ), line


def test_a_provider_that_refuses_its_options_is_reported_at_start(
    start_worker: Callable[..., Worker],
) -> None:
    # given SES configured with a sender address that is not one
    providers = _providers({**SES_OPTIONS, "FROM_ADDRESS": "not an address"})

    # when an email worker starts
    worker = start_worker(
        queues="notify.transactional.email", concurrency=1, NOTIFIER_PROVIDERS_JSON=providers
    )

    # then, before any delivery, its log names the provider and the option at fault, and the
    # other provider is ready
    (line,) = _ready_lines(worker, processes=1)
    log = worker.log.read_text()
    assert re.search(r"ERROR.*provider email/ses cannot be used: .*FROM_ADDRESS", log), log[-2000:]
    assert line.endswith(": email/sandbox")


def test_a_planning_worker_builds_no_provider(start_worker: Callable[..., Worker]) -> None:
    # when a planning worker starts, then a sending worker
    planner = start_worker(queues="notify.planning", concurrency=1)
    sender = start_worker(queues="notify.transactional.push", concurrency=1)

    # then by the time the sender has built its providers, the planner has built none
    (line,) = _ready_lines(sender, processes=1)
    assert line.endswith(": push/sandbox")
    assert "providers ready" not in planner.log.read_text()
