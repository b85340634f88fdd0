"""Fault scenarios about messages, on the whole stack (tests/faults/stack.py): poison messages
among ordinary traffic, and notifications that expire at each stage of the pipeline.

- *Poison*: while clients send, messages that can never succeed are published straight to the
  work queues: an undecodable body, an unknown task, a content type the workers refuse, a task
  whose arguments are wrong, and one whose task hangs every time (it waits on a row lock) until
  the hard time limit kills its pool process: a crash loop. Pass: each ends in ``notify.dead``
  with its reason (``manage.py deadletters list``, the operator's view), and every ordinary
  notification is delivered once.
- *Expiry*: notifications with an ``expires_at`` a few seconds ahead are held at one stage
  until it passes: before planning (the planner stopped), queued (the sender stopped), and
  waiting to retry (every email provider failing). Pass: none reaches a provider, each ends
  ``expired`` at the stage that held it, and notifications without an expiry sent meanwhile
  are delivered.

The negative controls switch a protection off and see the check fail: with Celery's own
consumer an undecodable message is acknowledged away, never dead-lettered; without the claim's
expiry check, notifications held in their queue reach the provider after they expired.
"""

from __future__ import annotations

import itertools
import json
import pickle
import re
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import pytest
from kombu import Connection

import celeryconfig
from tests.faults.scenarios import assert_each_delivered_once, start_sending
from tests.faults.stack import DATABASE, LoadClient, Outcome, Stack
from tests.pipeline.conftest import wait_for

TIME_LIMIT = 4
USERS = itertools.count(0, 10_000)
RUNS = itertools.count()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack for the module: a 4 s hard time limit on tasks, two planning processes (one
    may be stuck on a poison message), retries honouring a provider's Retry-After."""
    with Stack(
        tmp_path_factory.mktemp("stack"),
        env_overrides={"CELERY_TASK_TIME_LIMIT": str(TIME_LIMIT)},
        planner_concurrency=2,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def unprotected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The negative controls' stack: an undecodable message is acknowledged (Celery's own
    consumer), and the claim does not check ``expires_at``; each control's fault meets one."""
    with Stack(
        tmp_path_factory.mktemp("unprotected"),
        env_overrides={"NOTIFIER_UNSAFE_WITHOUT": "undecodable,expiry"},
    ) as running:
        yield running


# -- poison messages among ordinary traffic ------------------------------------------------------


def publish_raw(
    stack: Stack, queue: str, task: str, body: bytes, content_type: str = "application/json"
) -> str:
    """Publish a Celery-shaped message (protocol 2 headers) with any body; returns its id."""
    task_id = str(uuid.uuid4())
    with Connection(stack.rabbitmq.url) as connection:
        producer = connection.Producer()
        producer.publish(
            body,
            exchange=celeryconfig.NOTIFY_EXCHANGE.name,
            routing_key=queue,
            content_type=content_type,
            content_encoding="utf-8" if content_type == "application/json" else "binary",
            headers={"task": task, "id": task_id, "lang": "py", "argsrepr": "", "kwargsrepr": ""},
            delivery_mode=2,
            mandatory=True,
        )
    return task_id


def celery_body(**kwargs: Any) -> bytes:
    return json.dumps([[], kwargs, {"callbacks": None, "errbacks": None}]).encode()


def dead_letter_reasons(stack: Stack) -> dict[str, tuple[str, str]]:
    """``manage.py deadletters list`` as a mapping: task id → (queue, reason)."""
    listed = stack.manage("deadletters", "list", "--limit", "100")
    letters = listed.split("Recently failed deliveries")[0]
    found = {}
    for line in letters.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) >= 4 and re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", cells[0]):
            found[cells[0]] = (cells[2], cells[3])
    return found


@pytest.mark.parametrize(
    "sends",
    [pytest.param(100, id="short"), pytest.param(500, id="long", marks=pytest.mark.faults)],
)
def test_poison_messages_are_dead_lettered_with_their_reason_and_the_rest_flows(
    stack: Stack, sends: int
) -> None:
    # given clients sending, and one notification already planned (it has deliveries) whose
    # row we lock, so that planning it again waits on the lock for ever (one still to plan
    # would hang its own planning task too, and be dead-lettered beside the poison)
    running = start_sending(stack, sends, "poison", first=next(USERS))
    ((locked,),) = stack.query("SELECT notification_id::text FROM notifications_delivery LIMIT 1")
    holder = psycopg2.connect(stack.postgres.url(DATABASE))
    holder.cursor().execute(
        "SELECT 1 FROM notifications_notification WHERE id = %s FOR UPDATE", (locked,)
    )

    # when poison messages of every kind are published among the traffic
    email = celeryconfig.delivery_queue_name("transactional", "email")
    poison = {
        "undecodable": publish_raw(stack, email, "notify.deliver.email", b'{"not json'),
        "unknown task": publish_raw(
            stack, celeryconfig.PLANNING_QUEUE, "notify.no.such.task", celery_body()
        ),
        "refused content type": publish_raw(
            stack, email, "notify.deliver.email",
            pickle.dumps(([], {"delivery_ids": [1]}, {})), "application/x-python-serialize",
        ),
        "task raises": publish_raw(
            stack, celeryconfig.PLANNING_QUEUE, "notify.plan.notification",
            celery_body(notification_id="not-a-uuid"),
        ),
        "hangs (crash loop)": publish_raw(
            stack, celeryconfig.PLANNING_QUEUE, "notify.plan.notification",
            celery_body(notification_id=locked),
        ),
    }  # fmt: skip
    outcomes = running.result(timeout=600)

    # then each is dead-lettered once, with its reason: the hanging one after its pool process
    # was killed at the time limit as often as the queue's delivery limit allows
    expected = {
        "undecodable": (email, "rejected"),
        "unknown task": (celeryconfig.PLANNING_QUEUE, "rejected"),
        "refused content type": (email, "rejected"),
        "task raises": (celeryconfig.PLANNING_QUEUE, "rejected"),
        "hangs (crash loop)": (celeryconfig.PLANNING_QUEUE, "delivery_limit"),
    }
    wait_for(
        lambda: set(poison.values()) <= dead_letter_reasons(stack).keys(),
        timeout=(5 + 2) * (TIME_LIMIT + 10),
        interval=0.5,
    )
    holder.close()
    letters = dead_letter_reasons(stack)
    assert {kind: letters[task_id] for kind, task_id in poison.items()} == expected
    assert len(letters) == len(poison)
    # and every ordinary notification was delivered once
    assert_each_delivered_once(stack, "poison messages", outcomes, sends)


@pytest.mark.faults
def test_negative_control_with_celerys_own_consumer_an_undecodable_message_vanishes(
    unprotected: Stack,
) -> None:
    # given Celery's consumer, which acknowledges what it cannot decode
    email = celeryconfig.delivery_queue_name("transactional", "email")

    # when an undecodable message is published to a work queue
    task_id = publish_raw(unprotected, email, "notify.deliver.email", b'{"not json')

    # then the worker acknowledges it (logging its body) and it never reaches the dead
    # letters: gone
    log = unprotected.base / "sender-0.log"
    wait_for(lambda: "Can't decode message body" in log.read_text(), timeout=30)
    assert task_id not in dead_letter_reasons(unprotected)
    assert queue_depth(unprotected, email) == 0


def queue_depth(stack: Stack, queue: str) -> int:
    with Connection(stack.rabbitmq.url) as connection:
        channel: Any = connection.default_channel
        return int(channel.queue_declare(queue, passive=True).message_count)


# -- expiry crossing each stage ------------------------------------------------------------------


def expiring(stack: Stack, count: int, *, seconds: float) -> tuple[list[Outcome], datetime]:
    """Send ``count`` notifications expiring ``seconds`` from now; the outcomes and expiry."""
    expires_at = datetime.now(UTC) + timedelta(seconds=seconds)
    client = LoadClient(stack, extra=lambda: {"expires_at": expires_at.isoformat()})
    run = f"expiring{next(RUNS)}"
    outcomes = client.send_all(client.create_users(count, first=next(USERS)), run=run)
    assert all(outcome.notification_id for outcome in outcomes), outcomes
    return outcomes, expires_at


def settled(stack: Stack, outcomes: list[Outcome]) -> list[tuple[str, str, int]]:
    """Each notification's outcome: its email delivery's (state, reason, attempts), or, when
    it was never planned, ("notification", its status, 0)."""
    rows = stack.query(
        "SELECT COALESCE(d.state, 'notification'), COALESCE(d.reason, n.status),"
        " COALESCE(d.attempts, 0)"
        " FROM notifications_notification n"
        " LEFT JOIN notifications_delivery d ON d.notification_id = n.id AND d.channel = 'email'"
        " WHERE n.id::text = ANY(%s)",
        ([o.notification_id for o in outcomes],),
    )
    return [(str(state), str(reason), int(attempts)) for state, reason, attempts in rows]


def held(stack: Stack, process: str) -> Callable[[], None]:
    """Freeze ``process`` (SIGSTOP); returns the function that lets it go on."""
    stack.processes[process].signal(signal.SIGSTOP)
    return lambda: stack.processes[process].signal(signal.SIGCONT)


def test_nothing_is_sent_after_it_expires_whatever_stage_holds_it(stack: Stack) -> None:
    stages: dict[str, list[Outcome]] = {}
    # given notifications expiring in 3 s held before planning (the planner frozen) ...
    release = held(stack, "planner")
    stages["planning"], expires_at = expiring(stack, 10, seconds=3)
    time.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()) + 1)
    release()
    # ... held in their queue (the sender frozen) ...
    release = held(stack, "sender-0")
    stages["queued"], expires_at = expiring(stack, 10, seconds=3)
    time.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()) + 1)
    release()
    # ... and held waiting to retry (SES rate-limited for 10 s a time, SMTP down)
    stack.sandbox.set_fault("ses", rate_limit={"retry_after": 10})
    stack.sandbox.set_fault("smtp", down=True)
    stages["retry"], expires_at = expiring(stack, 10, seconds=3)

    # then each ends expired at the stage that held it ...
    def ended(stage: str) -> set[tuple[str, str, int]]:
        return set(settled(stack, stages[stage]))

    wait_for(lambda: ended("planning") == {("notification", "expired", 0)}, timeout=60)
    wait_for(lambda: ended("queued") == {("expired", "expired before sending", 0)}, timeout=60)
    wait_for(
        lambda: (
            {(state, attempts > 0) for state, _, attempts in ended("retry")} == {("expired", True)}
        ),
        timeout=60,
    )
    stack.sandbox.clear_faults()
    # ... and none of them reached a provider
    addresses = {message["to"] for message in stack.sandbox.messages(channel="email")}
    users = {o.key.split("-", 1)[1] for outcomes in stages.values() for o in outcomes}
    assert {f"{user}@example.com" for user in users} & addresses == set()
    # and notifications without an expiry, sent next, are delivered
    after = start_sending(stack, 50, "after", first=next(USERS), wait_for=0)
    assert_each_delivered_once(stack, "expiry at each stage", after.result(timeout=600), 50)


@pytest.mark.faults
def test_negative_control_without_the_claims_expiry_check_queued_ones_are_sent_late(
    unprotected: Stack,
) -> None:
    # given the claim's expiry check switched off, notifications held in their queue past
    # their expiry, as in the scenario above
    release = held(unprotected, "sender-0")
    outcomes, expires_at = expiring(unprotected, 10, seconds=3)
    time.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()) + 1)
    release()

    # then they reach the provider after they expired
    wait_for(lambda: len(unprotected.sandbox.messages(channel="email")) == 10, timeout=60)
    sent_at = [
        datetime.fromisoformat(message["received_at"])
        for message in unprotected.sandbox.messages(channel="email")
    ]
    assert min(sent_at) > expires_at, (sent_at, expires_at)
    assert {state for state, _, _ in settled(unprotected, outcomes)} <= {"sent", "delivered"}
