"""What the stack scenarios share: sending load, waiting for the drain, reconciling the ledgers
and the pass criterion most of them use."""

from __future__ import annotations

import time
from concurrent.futures import Future

from tests.faults.ledger import Report, reconcile_rows, stack_rows, stack_unsettled
from tests.faults.stack import LoadClient, Outcome, Stack

REPORTS: list[Report] = []
"""Every ledger of this run, for the table at the end (``tests/faults/conftest.py``)."""


def drain(stack: Stack, accepted: list[str], *, timeout: float) -> float:
    """Wait (beat and the relay run in the stack) until every accepted notification's delivery
    has settled or ``timeout`` passes; returns the seconds waited."""
    started = time.monotonic()
    while stack_unsettled(stack, accepted) and time.monotonic() - started < timeout:
        time.sleep(0.5)
    return time.monotonic() - started


def ledger(stack: Stack, scenario: str, outcomes: list[Outcome], *, drain_for: float) -> Report:
    accepted = [outcome.notification_id for outcome in outcomes if outcome.notification_id]
    started = time.monotonic()
    drain(stack, accepted, timeout=drain_for)
    deliveries, resent = stack_rows(stack, accepted)
    report = reconcile_rows(
        scenario=scenario,
        accepted=accepted,
        deliveries=deliveries,
        resent=resent,
        provider_acceptances=stack.provider_acceptances(),
        dead_lettered=stack.dead_lettered(),
        drain_seconds=time.monotonic() - started,
    )
    print("\n" + report.table())
    REPORTS.append(report)
    return report


def wait_for_sends(stack: Stack, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(stack.sandbox.messages(channel="email")) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"fewer than {count} sends within {timeout} s")
        time.sleep(0.1)


def start_sending(
    stack: Stack,
    sends: int,
    run: str,
    *,
    latency_ms: int = 50,
    wait_for: int | None = None,
    first: int = 0,
) -> Future[list[Outcome]]:
    """Clients sending to ``sends`` new users through the API, with the sandbox's SES taking
    ``latency_ms`` a call; returns once ``wait_for`` sends (default a tenth) reached it."""
    stack.sandbox.set_fault("ses", latency_ms=latency_ms)
    client = LoadClient(stack)
    running = client.start(client.create_users(sends, first=first), run=run)
    wait_for_sends(stack, sends // 10 if wait_for is None else wait_for)
    return running


def assert_each_delivered_once(
    stack: Stack, scenario: str, outcomes: list[Outcome], sends: int, *, in_doubt_ok: bool = False
) -> Report:
    """Reconcile after the drain (its limit grows with the load); pass: every send accepted,
    nothing lost or pending, no unattributable duplicate, and each delivered (or, where the
    unknown-outcome policy allows, in doubt)."""
    report = ledger(stack, scenario, outcomes, drain_for=120 + 0.3 * sends)
    assert report.accepted == sends, report.table()
    assert report.lost == 0, report.table()
    assert report.pending == 0, report.table()
    assert report.unattributable == 0, report.table()
    delivered = report.delivered + (report.in_doubt if in_doubt_ok else 0)
    assert delivered == sends, report.table()
    return report
