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
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import pytest
import requests

from tests.faults.scenarios import (
    assert_each_delivered_once,
    ledger,
    start_sending,
    wait_for_sends,
)
from tests.faults.stack import DATABASE, SENDING_QUEUES, LoadClient, Outcome, Stack
from tests.pipeline.conftest import wait_for

# -- the broker killed under load, down for a while, restarted -----------------------------------


@pytest.mark.parametrize(
    ("sends", "outage"),
    [
        pytest.param(200, 5.0, id="short"),
        pytest.param(600, 60.0, id="long", marks=pytest.mark.faults),
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
        report = ledger(unprotected, "broker outage, relay off", outcomes, drain_for=15)
    assert report.lost > 0, report.table()


# -- PostgreSQL stopped under load ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("sends", "outage"),
    [
        pytest.param(200, 5.0, id="short"),
        pytest.param(600, 30.0, id="long", marks=pytest.mark.faults),
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
    unsafe = {"NOTIFIER_UNSAFE_WITHOUT": "outage_retry"}
    with Stack(tmp_path / "stack", env_overrides=unsafe) as unprotected:
        running = start_sending(unprotected, 200, "postgres")

        # when PostgreSQL is stopped and started again, as in the scenario above
        unprotected.postgres.halt()
        time.sleep(5.0)
        unprotected.postgres.start()
        outcomes = running.result(timeout=600)

        # then tasks were dead-lettered and their notifications are never delivered
        report = ledger(unprotected, "PostgreSQL stopped, no outage retry", outcomes, drain_for=15)
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

# SES may take 5 calls a second, shared by the sender's 2 pool processes through Redis; a call
# over the limit goes to SMTP at once (no wait for a token), so the limit costs no time.
SES_RATE = 5
SES_LIMIT = {
    "NOTIFIER_PROVIDER_RATE_LIMITS": f'{{"ses": {{"RATE": {SES_RATE}, "BURST": {SES_RATE}}}}}',
    "NOTIFIER_THROTTLE_MAX_WAIT": "0",
}


@pytest.mark.parametrize(
    ("stack", "sends", "outage"),
    [
        pytest.param({"env_overrides": SES_LIMIT}, 200, 5.0, id="short"),
        pytest.param({"env_overrides": SES_LIMIT}, 600, 30.0, id="long", marks=pytest.mark.faults),
    ],
    indirect=["stack"],
)
def test_redis_killed_under_load_sends_each_once_suppresses_nothing_and_limits_hold(
    stack: Stack, sends: int, outage: float
) -> None:
    # given clients sending, and the pipeline delivering (breakers, rate limits, quotas in Redis)
    running = start_sending(stack, sends, "redis")

    # when Redis is killed (its data gone), stays away, then comes back empty
    ses_calls = during_redis_outage(stack, outage)
    outcomes = running.result(timeout=600)

    # then the API kept accepting, and every notification was delivered once: none suppressed
    assert {status for o in outcomes for status in o.statuses} == {202}
    assert_each_delivered_once(stack, "Redis SIGKILL + outage", outcomes, sends)
    # and SES's rate limit held without Redis: each process kept to its share
    bound = SES_RATE * outage + SES_RATE
    print(f"\nSES calls while Redis was away {outage:.0f} s: {ses_calls} (limit {bound:.0f})")
    assert ses_calls <= bound


@pytest.mark.faults
@pytest.mark.parametrize(
    "stack",
    [{"env_overrides": {**SES_LIMIT, "NOTIFIER_WORKER_PROCESSES_HINT": "1"}}],
    indirect=True,
)
def test_negative_control_when_each_process_takes_the_whole_limit_redis_loss_exceeds_it(
    stack: Stack,
) -> None:
    # given the same limit, but each of the 2 sending processes told it is the only one
    running = start_sending(stack, 500, "redis")

    # when Redis is killed and away, as in the scenario above
    ses_calls = during_redis_outage(stack, 10.0)
    running.result(timeout=600)

    # then SES takes about twice its limit while Redis is away
    bound = SES_RATE * 10.0 + SES_RATE
    print(f"\nSES calls while Redis was away 10 s, hint 1: {ses_calls} (limit {bound:.0f})")
    assert ses_calls > bound


def during_redis_outage(stack: Stack, seconds: float) -> int:
    """Kill Redis, keep it away ``seconds``, start it again (empty); returns the calls SES
    accepted meanwhile."""
    stack.redis.kill()
    killed = datetime.now(UTC)
    time.sleep(seconds)
    restarted = datetime.now(UTC)
    stack.redis.start()
    return sum(
        killed <= datetime.fromisoformat(message["received_at"]) < restarted
        for message in stack.sandbox.messages(provider="ses")
    )


# -- API worker processes killed during ingest ----------------------------------------------------


@pytest.mark.parametrize(
    ("sends", "kills"),
    [
        pytest.param(300, 4, id="short"),
        pytest.param(1000, 10, id="long", marks=pytest.mark.faults),
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

    # when the sending worker is stopped, in turn, as a deployment does (SIGTERM to the master:
    # a warm shutdown) and as a crash does (SIGKILL to master and pool), and started again
    stop_and_start_the_sender(stack, sends, stops)
    outcomes = running.result(timeout=600)

    # then every notification was delivered once, or is in doubt (a SIGKILL between marking a
    # send dispatched and the request leaving) and never resent
    assert_each_delivered_once(stack, "worker SIGTERM / SIGKILL", outcomes, sends, in_doubt_ok=True)


def stop_and_start_the_sender(stack: Stack, sends: int, stops: int) -> None:
    """Stop the sending worker ``stops`` times, spread over ``sends`` sends, by SIGTERM and
    SIGKILL in turn, each time while provider calls are in flight (if any come within 10 s),
    starting it again each time."""
    sender = stack.processes["sender-0"]
    for n in range(stops):
        wait_for_sends(stack, (n + 1) * sends // (stops + 2))
        deadline = time.monotonic() + 10
        while not in_state(stack, "sending") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sender.popen is not None
        if n % 2 == 0:
            os.kill(sender.popen.pid, signal.SIGTERM)
        else:
            sender.signal(signal.SIGKILL)
        sender.popen.wait(timeout=60)
        sender.start()


# -- a sending worker paused past its lease, then resumed -----------------------------------------


@pytest.mark.parametrize(
    ("sends", "pauses"),
    [
        pytest.param(200, 0, id="short"),
        pytest.param(600, 2, id="long", marks=pytest.mark.faults),
    ],
)
def test_a_worker_paused_past_its_lease_sends_nothing_stale(
    stack: Stack, sends: int, pauses: int
) -> None:
    # given a backlog for the sending worker, at 300 ms a call (leases are 5 s in the stack)
    running = start_backlog(stack, sends, "pause")

    # when the worker claims a batch and is frozen (SIGSTOP) before sending it, another worker
    # takes the batch over once its lease has lapsed and sends it, and the first is resumed ...
    stale = pause_between_claim_and_send(stack)
    # ... and then again at random moments, each time for twice the lease
    sender = stack.processes["sender-0"]
    for n in range(pauses):
        wait_for_sends(stack, (n + 1) * sends // (pauses + 2))
        sender.signal(signal.SIGSTOP)
        helper = stack.spawn(f"helper-{n}", stack.celery_worker(f"helper{n}", SENDING_QUEUES, 2))
        time.sleep(10)
        sender.signal(signal.SIGCONT)
        helper.stop()
    outcomes = running.result(timeout=600)

    # then every notification was delivered once, or is in doubt and never resent: the
    # resumed worker's stale claims were fenced off before it sent them
    assert_each_delivered_once(
        stack, "worker SIGSTOP past lease", outcomes, sends, in_doubt_ok=True
    )
    assert "claim lapsed before dispatch" in (stack.base / "sender-0.log").read_text(), stale


@pytest.mark.faults
@pytest.mark.parametrize(
    "stack", [{"env_overrides": {"NOTIFIER_UNSAFE_WITHOUT": "fence"}}], indirect=True
)
def test_negative_control_without_the_fence_a_resumed_worker_sends_its_stale_claims(
    stack: Stack,
) -> None:
    # given the dispatch's fence check switched off, and the same pause as above
    running = start_backlog(stack, 200, "pause")
    pause_between_claim_and_send(stack)
    outcomes = running.result(timeout=600)

    # then what the resumed worker had claimed reaches the provider a second time
    report = ledger(stack, "SIGSTOP past lease, fence off", outcomes, drain_for=120)
    assert report.unattributable > 0, report.table()


def start_backlog(stack: Stack, sends: int, run: str) -> Future[list[Outcome]]:
    """Clients sending while the sending worker is frozen, until some of their notifications
    wait queued for it; the worker stays frozen."""
    stack.sandbox.set_fault("ses", latency_ms=300)
    stack.processes["sender-0"].signal(signal.SIGSTOP)
    client = LoadClient(stack)
    running = client.start(client.create_users(sends), run=run)
    wait_for(lambda: in_state(stack, "queued") >= 20, timeout=60)
    return running


def pause_between_claim_and_send(stack: Stack) -> list[int]:
    """Resume the frozen sending worker and freeze it again once it claimed deliveries and
    before it sends them; keep it frozen, with a helper worker sending meanwhile, until the
    lease sweep has taken its claims back, then resume it. Returns the deliveries it held.

    A lock on ``recipients_device``, which the sender reads right after its claim and the
    claim itself does not, holds it between the two for as long as it takes to catch it."""
    sender = stack.processes["sender-0"]
    holder = psycopg2.connect(stack.postgres.url(DATABASE))
    holder.cursor().execute("LOCK TABLE recipients_device IN ACCESS EXCLUSIVE MODE")
    sender.signal(signal.SIGCONT)
    wait_for(lambda: in_state(stack, "sending", undispatched=True), timeout=30)
    time.sleep(0.5)  # both pool processes
    sender.signal(signal.SIGSTOP)
    claims = stack.query(
        "SELECT id, fence FROM notifications_delivery"
        " WHERE state = 'sending' AND dispatched_at IS NULL"
    )
    holder.close()
    helper = stack.spawn("helper", stack.celery_worker("helper", SENDING_QUEUES, 2))
    wait_for(
        lambda: (
            not stack.query(
                "SELECT 1 FROM notifications_delivery d"
                " JOIN unnest(%s::bigint[], %s::integer[]) AS c(id, fence) ON d.id = c.id"
                " WHERE d.state = 'sending' AND d.fence = c.fence",
                ([pk for pk, _ in claims], [fence for _, fence in claims]),
            )
        ),
        timeout=60,
    )
    sender.signal(signal.SIGCONT)
    helper.stop()
    return [int(pk) for pk, _ in claims]


def in_state(stack: Stack, state: str, *, undispatched: bool = False) -> int:
    """Deliveries in ``state`` (only those not dispatched to a provider, if ``undispatched``)."""
    ((count,),) = stack.query(
        "SELECT count(*) FROM notifications_delivery"
        " WHERE state = %s AND (NOT %s OR dispatched_at IS NULL)",
        (state, undispatched),
    )
    return int(count)
