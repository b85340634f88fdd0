"""Fault scenarios on a whole private stack (tests/faults/stack.py): servers killed, stopped
and restarted under load, with the three ledgers reconciled after the drain.

Each scenario has a short variant (``make test``) and a long one (``make test-faults``), a pass
criterion in numbers (lost = 0, pending = 0, no unattributable duplicate, and what the clients
must have been told), and where it is cheap a negative control that turns the protection off
and must fail the same check.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.faults.ledger import Report, reconcile_rows, stack_rows, stack_unsettled
from tests.faults.stack import LoadClient, Outcome, Stack


@pytest.fixture
def stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    options = getattr(request, "param", {})
    with Stack(tmp_path / "stack", **options) as running:
        yield running


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
    return report


def wait_for_sends(stack: Stack, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(stack.sandbox.messages(provider="ses")) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"fewer than {count} sends within {timeout} s")
        time.sleep(0.1)


def assert_nothing_lost_or_doubled(report: Report, sends: int) -> None:
    assert report.accepted == sends, report.table()
    assert report.lost == 0, report.table()
    assert report.pending == 0, report.table()
    assert report.unattributable == 0, report.table()


# -- the broker killed under load, down for a while, restarted -----------------------------------


@pytest.mark.parametrize(
    ("sends", "outage"),
    [
        pytest.param(200, 5.0, id="short"),
        pytest.param(2000, 60.0, id="long", marks=pytest.mark.faults),
    ],
)
def test_a_broker_outage_under_load_loses_nothing_and_the_api_keeps_answering_202(
    stack: Stack, sends: int, outage: float
) -> None:
    # given clients sending, and the pipeline delivering
    stack.sandbox.set_fault("ses", latency_ms=50)
    client = LoadClient(stack)
    users = client.create_users(sends)
    running = client.start(users, run="broker")
    wait_for_sends(stack, sends // 10)

    # when the broker is killed (SIGKILL), stays down, then comes back with its data
    stack.rabbitmq.kill()
    time.sleep(outage)
    stack.rabbitmq.start()
    outcomes = running.result(timeout=600)

    # then every client was answered 202 the first time, broker or not
    assert [o.statuses for o in outcomes if o.statuses != [202]] == []
    # and every accepted notification was delivered once
    report = ledger(stack, "broker SIGKILL + outage", outcomes, drain_for=120 + 0.1 * sends)
    assert_nothing_lost_or_doubled(report, sends)
    assert report.delivered == sends, report.table()


# -- PostgreSQL stopped under load ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("sends", "outage"),
    [
        pytest.param(200, 5.0, id="short"),
        pytest.param(2000, 30.0, id="long", marks=pytest.mark.faults),
    ],
)
def test_postgres_stopped_under_load_answers_503_fast_and_recovers_without_loss(
    stack: Stack, sends: int, outage: float
) -> None:
    # given clients sending, and the pipeline delivering
    stack.sandbox.set_fault("ses", latency_ms=50)
    client = LoadClient(stack)
    users = client.create_users(sends)
    running = client.start(users, run="postgres")
    wait_for_sends(stack, sends // 10)

    # when PostgreSQL is stopped for a while (fast shutdown), then started again
    stack.postgres.halt()
    during = probe_while(stack, outage)
    stack.postgres.start()
    outcomes = running.result(timeout=600)

    # then while it was down the API answered 503 with Retry-After, fast: never 202 or 500
    assert during, "no request reached the API during the outage"
    assert {status for status, _, _ in during} == {503}, during
    assert all(retry_after and int(retry_after) > 0 for _, retry_after, _ in during)
    assert max(elapsed for _, _, elapsed in during) < 5.0
    # and the clients, retrying with their keys, were each accepted once, and told nothing else
    assert {status for o in outcomes for status in o.statuses} <= {202, 503}
    assert len({o.notification_id for o in outcomes}) == sends
    report = ledger(stack, "PostgreSQL stopped", outcomes, drain_for=120 + 0.1 * sends)
    assert_nothing_lost_or_doubled(report, sends)
    assert report.delivered == sends, report.table()


def probe_while(stack: Stack, seconds: float) -> list[tuple[int, str | None, float]]:
    """Send fresh requests for ``seconds``: (status, Retry-After, seconds taken) of each."""
    answers: list[tuple[int, str | None, float]] = []
    body = {"user_ids": ["u0"], "notification_type": "order_shipped", "channels": ["email"]}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        response = requests.post(
            f"{stack.url}/api/v1/notifications",
            json=body,
            headers={"Authorization": f"Bearer {stack.api_key}"},
            timeout=30,
        )
        answers.append(
            (response.status_code, response.headers.get("Retry-After"), time.monotonic() - started)
        )
        time.sleep(0.2)
    return answers


# -- Redis killed and away under load ------------------------------------------------------------


@pytest.mark.parametrize(
    ("sends", "outage"),
    [
        pytest.param(200, 5.0, id="short"),
        pytest.param(2000, 30.0, id="long", marks=pytest.mark.faults),
    ],
)
def test_redis_killed_under_load_sends_each_once_and_suppresses_nothing(
    stack: Stack, sends: int, outage: float
) -> None:
    # given clients sending, and the pipeline delivering (breakers, rate limits, quotas in Redis)
    stack.sandbox.set_fault("ses", latency_ms=50)
    client = LoadClient(stack)
    users = client.create_users(sends)
    running = client.start(users, run="redis")
    wait_for_sends(stack, sends // 10)

    # when Redis is killed (its data gone), stays away, then comes back empty
    stack.redis.kill()
    time.sleep(outage)
    stack.redis.start()
    outcomes = running.result(timeout=600)

    # then the API kept accepting, and every notification was delivered once: none suppressed
    assert {status for o in outcomes for status in o.statuses} == {202}
    report = ledger(stack, "Redis SIGKILL + outage", outcomes, drain_for=120 + 0.1 * sends)
    assert_nothing_lost_or_doubled(report, sends)
    assert report.delivered == sends, report.table()
