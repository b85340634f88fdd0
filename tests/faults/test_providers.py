"""Fault scenarios at the providers, on the whole stack (tests/faults/stack.py): a provider that
takes messages and never answers, and a provider that fails for a while.

- *Accept, then hang*: the sandbox's SES records the next messages as accepted and never
  answers; the SDK times out (3 s), so the outcome is unknown. SPEC guarantee 3's policy, per
  priority: a transactional delivery ends ``unknown`` and is never resent; a critical one is
  resent once its lease lapses, and the duplicate is attributable in its events.
- *Provider outage*: SES answers 503 for a while. Pass: every notification delivered once
  (SMTP took over), SES called a bounded number of times while failing (its circuit breaker
  opened), and SES carries the traffic again after it recovers.

The negative controls switch each protection off and see the check fail: the breaker off, SES is
called for every send of the outage; unknown outcomes retried, the hung messages go out twice.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.faults.ledger import Report
from tests.faults.scenarios import assert_each_delivered_once, ledger, wait_for_sends
from tests.faults.stack import LoadClient, Outcome, Stack

BREAKER = {
    "NOTIFIER_BREAKER_CONSECUTIVE_FAILURES": "5",
    "NOTIFIER_BREAKER_OPEN_FOR": "2",
    "NOTIFIER_DELIVERY_BATCH": "5",
}
UNPROTECTED = {
    **BREAKER,
    # the breaker never opens (the error rate never counts) ...
    "NOTIFIER_BREAKER_CONSECUTIVE_FAILURES": "1000000",
    "NOTIFIER_BREAKER_MIN_CALLS": "1000000",
    # ... and an unknown outcome is retried. Each control's fault touches one of the two: a 503
    # is a certain failure, never an unknown outcome; four hangs never open a breaker.
    "NOTIFIER_UNSAFE_WITHOUT": "unknown_outcome",
}


USERS = itertools.count(0, 10_000)
"""Each scenario's users (and so their addresses) are its own: the stack is shared."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack for the module's scenarios, each starting from a clean sandbox."""
    with Stack(tmp_path_factory.mktemp("stack"), env_overrides=BREAKER) as running:
        yield running


@pytest.fixture(scope="module")
def unprotected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The negative controls' stack: the protections of both scenarios switched off."""
    with Stack(tmp_path_factory.mktemp("unprotected"), env_overrides=UNPROTECTED) as running:
        yield running


# -- a provider that accepts, then hangs ---------------------------------------------------------


@pytest.mark.parametrize(
    ("sends", "hangs"),
    [
        pytest.param(60, 4, id="short"),
        pytest.param(300, 12, id="long", marks=pytest.mark.faults),
    ],
)
@pytest.mark.parametrize("priority", ["transactional", "critical"])
def test_a_provider_that_accepts_then_hangs_follows_the_unknown_outcome_policy(
    stack: Stack, sends: int, hangs: int, priority: str
) -> None:
    # given clients sending, when SES takes some messages and never answers
    report = accept_then_hang(stack, sends, hangs, priority)
    # (the hangs the load met: a breaker opened by them sends the rest to SMTP for a while)
    left = stack.sandbox.context.faults.current().get("ses")
    hung = hangs - (left.times or 0) if left is not None and left.hang else hangs

    # then nothing is lost, and every hung message is handled by the policy of its priority
    assert hung > 0, report.table()
    assert report.accepted == sends, report.table()
    assert (report.lost, report.pending, report.in_doubt) == (0, 0, 0), report.table()
    assert report.unattributable == 0, report.table()
    assert report.delivered == sends, report.table()
    taken = Counter(stack.provider_acceptances().values())
    if priority == "critical":
        # resent once after the lease: each hung one twice at the provider, never three
        # times; a resend that meets one of the hangs too stays unknown (hung twice)
        assert report.attributable + report.unknown == hung, report.table()
        assert taken == {1: sends - report.attributable, 2: report.attributable}
    else:
        # never resent: the hung ones stay unknown, each once at the provider
        assert (report.unknown, report.duplicates) == (hung, 0), report.table()
        assert taken == {1: sends}


@pytest.mark.faults
def test_negative_control_retrying_unknown_outcomes_sends_them_twice(unprotected: Stack) -> None:
    # given unknown outcomes retried like any transient error, when SES hangs as above
    report = accept_then_hang(
        unprotected, 60, 4, "transactional", scenario="SES hangs, unknown outcomes retried"
    )

    # then the hung ones went to the provider a second time (SMTP, by failover), unattributably
    assert report.unattributable > 0, report.table()


def accept_then_hang(
    stack: Stack, sends: int, hangs: int, priority: str, *, scenario: str = ""
) -> Report:
    """Clients sending (SES at 50 ms a call) while SES takes the next ``hangs`` messages and
    never answers (each call times out after 3 s); the ledger after the drain."""
    stack.sandbox.set_fault("ses", latency_ms=50)
    client = LoadClient(
        stack, notification_type="security_alert" if priority == "critical" else "order_shipped"
    )
    running = client.start(client.create_users(sends, first=next(USERS)), run=f"hang-{priority}")
    wait_for_sends(stack, sends // 10)
    stack.sandbox.set_fault("ses", hang=True, latency_ms=50, times=hangs)
    outcomes = running.result(timeout=600)
    scenario = scenario or f"SES hangs after accepting ({priority})"
    return ledger(stack, scenario, outcomes, drain_for=120)


# -- a provider outage: breaker, failover, recovery ----------------------------------------------


def provider_outage(stack: Stack, sends: int, outage: float) -> tuple[list[Outcome], int]:
    """Clients sending while SES answers 503 for ``outage`` seconds; returns the outcomes and
    the calls SES received during the outage."""
    stack.sandbox.set_fault("ses", latency_ms=50)
    client = LoadClient(stack)
    running = client.start(client.create_users(sends, first=next(USERS)), run="outage")
    wait_for_sends(stack, sends // 10)
    before = stack.sandbox.requests_seen("ses")
    stack.sandbox.set_fault("ses", status=503)
    time.sleep(outage)
    calls = stack.sandbox.requests_seen("ses") - before
    stack.sandbox.set_fault("ses", latency_ms=50)
    return running.result(timeout=600), calls


@pytest.mark.parametrize(
    ("sends", "outage"),
    [
        pytest.param(200, 5.0, id="short"),
        pytest.param(600, 30.0, id="long", marks=pytest.mark.faults),
    ],
)
def test_a_provider_outage_opens_the_breaker_fails_over_and_recovers(
    stack: Stack, sends: int, outage: float
) -> None:
    # given clients sending, when SES fails (503) for a while, then recovers
    outcomes, calls = provider_outage(stack, sends, outage)
    time.sleep(float(BREAKER["NOTIFIER_BREAKER_OPEN_FOR"]) + 1)  # the next probe may close it
    recovery = LoadClient(stack, clients=1)
    users = recovery.create_users(20, first=next(USERS))
    after = recovery.send_all(users, run="recovered")

    # then every notification was delivered once, SMTP taking over during the outage
    report = assert_each_delivered_once(stack, "SES outage (503)", outcomes + after, sends + 20)
    by_provider = Counter(m["provider"] for m in stack.sandbox.messages(channel="email"))
    assert by_provider["smtp"] > 0, by_provider
    # and the failing SES was called at most: the failures that open its breaker, the calls
    # already under way (2 processes × a batch of 5), and one probe per open period
    open_for = float(BREAKER["NOTIFIER_BREAKER_OPEN_FOR"])
    bound = 5 + 2 * 5 + math.ceil(outage / open_for) + 1
    assert calls <= bound, f"{calls} calls to a failing SES (bound {bound})\n{report.table()}"
    # and once it recovered, SES carried the traffic again
    addresses = {f"{user}@example.com" for user in users}
    recovered = [m for m in stack.sandbox.messages(channel="email") if m["to"] in addresses]
    assert sum(m["provider"] == "ses" for m in recovered) >= len(addresses) - 2, recovered


@pytest.mark.faults
def test_negative_control_without_the_breaker_the_failing_provider_takes_every_call(
    unprotected: Stack,
) -> None:
    outcomes, calls = provider_outage(unprotected, 300, 6.0)
    report = ledger(unprotected, "SES outage, breaker off", outcomes, drain_for=120)

    bound = 5 + 2 * 5 + math.ceil(6.0 / float(BREAKER["NOTIFIER_BREAKER_OPEN_FOR"])) + 1
    assert calls > bound, f"{calls} calls to a failing SES\n{report.table()}"
