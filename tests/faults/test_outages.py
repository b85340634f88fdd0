"""Fault scenarios on a whole private stack (tests/faults/stack.py): servers killed, stopped
and restarted under load, with the three ledgers reconciled after the drain.

Each scenario has a short variant (``make test``) and a long one (``make test-faults``), a pass
criterion in numbers (lost = 0, pending = 0, no unattributable duplicate, and what the clients
must have been told), and where it is cheap a negative control that turns the protection off
and must fail the same check.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import requests

from tests.faults.scenarios import (
    assert_each_delivered_once,
    ledger,
    start_sending,
    wait_for_sends,
)
from tests.faults.stack import SENDING_QUEUES, LoadClient, Stack

# -- the broker killed under load, down for a while, restarted -----------------------------------


@pytest.mark.parametrize(
    ("sends", "outage"),
    [
        pytest.param(200, 5.0, id="short"),
        pytest.param(1000, 60.0, id="long", marks=pytest.mark.faults),
    ],
)
def test_a_broker_outage_under_load_loses_nothing_and_the_api_keeps_answering_202(
    stack: Stack, sends: int, outage: float
) -> None:
    # given clients sending, and the pipeline delivering
    running = start_sending(stack, sends, "broker")

    # when the broker is killed (SIGKILL), stays down, then comes back with its data
    stack.rabbitmq.kill()
    time.sleep(outage)
    stack.rabbitmq.start()
    outcomes = running.result(timeout=600)

    # then every client was answered 202 the first time, broker or not
    assert [o.statuses for o in outcomes if o.statuses != [202]] == []
    # and every accepted notification was delivered once
    assert_each_delivered_once(stack, "broker SIGKILL + outage", outcomes, sends)


@pytest.mark.faults
def test_negative_control_without_relay_and_beat_a_broker_outage_loses_notifications(
    tmp_path: Path,
) -> None:
    # given a stack whose only publisher is the API's on-commit publish (no relay, no beat)
    with Stack(tmp_path / "stack", without=frozenset({"relay", "beat"})) as unprotected:
        running = start_sending(unprotected, 200, "broker")

        # when the broker is killed and comes back, as in the scenario above
        unprotected.rabbitmq.kill()
        time.sleep(5.0)
        unprotected.rabbitmq.start()
        outcomes = running.result(timeout=600)

        # then what the outbox held during the outage is never delivered: the ledger sees it
        report = ledger(unprotected, "broker outage, relay off", outcomes, drain_for=30)
    assert report.lost > 0, report.table()


# -- PostgreSQL stopped under load ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("sends", "outage"),
    [
        pytest.param(200, 5.0, id="short"),
        pytest.param(1000, 30.0, id="long", marks=pytest.mark.faults),
    ],
)
def test_postgres_stopped_under_load_answers_503_fast_and_recovers_without_loss(
    stack: Stack, sends: int, outage: float
) -> None:
    # given clients sending, and the pipeline delivering
    running = start_sending(stack, sends, "postgres")

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
    # and the clients, retrying with their keys, were each accepted once and never told 500
    # (0: no answer within the client's 10 s, e.g. a request caught by the restart, retried)
    assert {status for o in outcomes for status in o.statuses} <= {0, 202, 503}
    assert len({o.notification_id for o in outcomes}) == sends
    assert_each_delivered_once(stack, "PostgreSQL stopped", outcomes, sends)


@pytest.mark.faults
def test_negative_control_without_outage_retries_a_postgres_outage_strands_deliveries(
    tmp_path: Path,
) -> None:
    # given a stack whose tasks dead-letter when the database is away (a test-only setting)
    unsafe = {"NOTIFIER_UNSAFE_NO_OUTAGE_RETRY": "true"}
    with Stack(tmp_path / "stack", env_overrides=unsafe) as unprotected:
        running = start_sending(unprotected, 200, "postgres")

        # when PostgreSQL is stopped and started again, as in the scenario above
        unprotected.postgres.halt()
        time.sleep(5.0)
        unprotected.postgres.start()
        outcomes = running.result(timeout=600)

        # then tasks were dead-lettered and their notifications are never delivered
        report = ledger(unprotected, "PostgreSQL stopped, no outage retry", outcomes, drain_for=30)
    assert report.dead_lettered > 0, report.table()
    assert report.lost + report.pending > 0, report.table()


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
        pytest.param(1000, 30.0, id="long", marks=pytest.mark.faults),
    ],
)
def test_redis_killed_under_load_sends_each_once_and_suppresses_nothing(
    stack: Stack, sends: int, outage: float
) -> None:
    # given clients sending, and the pipeline delivering (breakers, rate limits, quotas in Redis)
    running = start_sending(stack, sends, "redis")

    # when Redis is killed (its data gone), stays away, then comes back empty
    stack.redis.kill()
    time.sleep(outage)
    stack.redis.start()
    outcomes = running.result(timeout=600)

    # then the API kept accepting, and every notification was delivered once: none suppressed
    assert {status for o in outcomes for status in o.statuses} == {202}
    assert_each_delivered_once(stack, "Redis SIGKILL + outage", outcomes, sends)


# -- API worker processes killed during ingest ----------------------------------------------------


@pytest.mark.parametrize(
    ("sends", "kills"),
    [
        pytest.param(300, 4, id="short"),
        pytest.param(1500, 15, id="long", marks=pytest.mark.faults),
    ],
)
def test_api_workers_killed_during_ingest_accept_each_key_once(
    stack: Stack, sends: int, kills: int
) -> None:
    # given clients sending, retrying with the same Idempotency-Key when a request dies
    running = start_sending(stack, sends, "api", wait_for=0)
    web = stack.processes["web"]

    # when gunicorn's worker processes are SIGKILLed mid-request, again and again (the master
    # starts new ones)
    killed = 0
    while killed < kills and not running.done():
        time.sleep(0.5)
        workers = web.children()
        if workers:
            os.kill(workers[killed % len(workers)], signal.SIGKILL)
            killed += 1
    outcomes = running.result(timeout=600)

    # then every client ends with a 202, and each key made exactly one notification
    assert killed == kills, "the load ended before every kill"
    assert all(o.notification_id for o in outcomes), [o.statuses for o in outcomes]
    assert len({o.notification_id for o in outcomes}) == sends
    ((notifications,),) = stack.query("SELECT count(*) FROM notifications_notification")
    assert notifications == sends
    assert_each_delivered_once(stack, "API worker SIGKILL", outcomes, sends)


@pytest.mark.faults
def test_negative_control_without_idempotency_keys_killed_requests_make_duplicates(
    stack: Stack,
) -> None:
    # given clients that retry without an Idempotency-Key
    client = LoadClient(stack, idempotent=False)
    running = client.start(client.create_users(300), run="api")
    web = stack.processes["web"]

    # when gunicorn's workers are SIGKILLed mid-request, as in the scenario above
    killed = 0
    while killed < 20 and not running.done():
        time.sleep(0.5)
        workers = web.children()
        if workers:
            os.kill(workers[killed % len(workers)], signal.SIGKILL)
            killed += 1
    running.result()

    # then some request committed before its worker died, and its retry made a second one
    ((notifications,),) = stack.query("SELECT count(*) FROM notifications_notification")
    assert notifications > 300, f"{notifications} notifications for 300 sends ({killed} kills)"


# -- sending workers stopped (SIGTERM) and killed (SIGKILL) again and again ---------------------


@pytest.mark.parametrize(
    ("sends", "stops"),
    [
        pytest.param(150, 2, id="short"),
        pytest.param(2000, 10, id="long", marks=pytest.mark.faults),
    ],
)
def test_sending_workers_stopped_and_killed_again_and_again_lose_nothing(
    stack: Stack, sends: int, stops: int
) -> None:
    # given sends in flight at 100 ms a call
    running = start_sending(stack, sends, "term", latency_ms=100, wait_for=0)
    sender = stack.processes["sender-0"]

    # when the sending worker is stopped, in turn, as a deployment does (SIGTERM to the master:
    # a warm shutdown) and as a crash does (SIGKILL to master and pool), and started again
    for n in range(stops):
        wait_for_sends(stack, (n + 1) * sends // (stops + 2))
        assert sender.popen is not None
        if n % 2 == 0:
            os.kill(sender.popen.pid, signal.SIGTERM)
        else:
            sender.signal(signal.SIGKILL)
        sender.popen.wait(timeout=60)
        sender.start()
    outcomes = running.result(timeout=600)

    # then every notification was delivered once, or is in doubt (a SIGKILL between marking a
    # send dispatched and the request leaving) and never resent
    assert_each_delivered_once(stack, "worker SIGTERM / SIGKILL", outcomes, sends, in_doubt_ok=True)


# -- a sending worker paused past its lease, then resumed -----------------------------------------


@pytest.mark.parametrize(
    ("sends", "pauses"),
    [
        pytest.param(200, 1, id="short"),
        pytest.param(1000, 4, id="long", marks=pytest.mark.faults),
    ],
)
def test_a_worker_paused_past_its_lease_sends_nothing_stale(
    stack: Stack, sends: int, pauses: int
) -> None:
    # given sends in flight at 300 ms a call (leases are 5 s in the stack)
    running = start_sending(stack, sends, "pause", latency_ms=300, wait_for=0)
    sender = stack.processes["sender-0"]

    # when the sending worker is frozen (SIGSTOP) for twice its lease while another takes
    # over, then resumed: its stale claims must not send or overwrite anything
    for n in range(pauses):
        wait_for_sends(stack, (n + 1) * sends // (pauses + 2))
        sender.signal(signal.SIGSTOP)
        helper = stack.spawn(f"helper-{n}", stack.celery_worker(f"helper{n}", SENDING_QUEUES, 2))
        time.sleep(10)
        sender.signal(signal.SIGCONT)
        helper.stop()
    outcomes = running.result(timeout=600)

    # then every notification was delivered once, or is in doubt and never resent
    assert_each_delivered_once(
        stack, "worker SIGSTOP past lease", outcomes, sends, in_doubt_ok=True
    )
