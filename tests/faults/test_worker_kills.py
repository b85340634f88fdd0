"""Fault scenario: sending workers killed with SIGKILL while provider calls are in flight,
then every delivery's message delivered once more (as after a kill or a broker failover).

Own RabbitMQ (the session's private node), own Redis, the provider sandbox with real SDKs (SES
at 300 ms a call), workers as real processes on the test database. The load goes through the
API; the relay's and beat's duties run in this process during the drain. Pass: lost = 0 and no
unattributable duplicate; "in doubt" (unknown outcome, and the provider never got it) is
printed apart, as the cost of SPEC guarantee 3's policy. The negative control turns the claim's
state check off (a test-only setting) and must see duplicates, which proves the ledger catches
them. The test database is PostgreSQL on the shared server (not killed here); the scenarios
that stop PostgreSQL will start their own.

The short variant runs in ``make test``; ``make test-faults`` runs the long one.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kombu import Connection

import celeryconfig
from notifier.content.models import NotificationType
from notifier.notifications import tasks
from notifier.notifications.models import Delivery, DeliveryState
from notifier.recipients.models import Recipient
from notifier.sandbox.providers import providers_from_connection
from notifier.sandbox.server import SandboxServer
from notifier.tenancy.models import Tenant
from tests.brokers import PrivateRabbitMQ, PrivateRedis
from tests.factories import client_for
from tests.faults.ledger import Report, reconcile, unsettled
from tests.faults.scenarios import REPORTS
from tests.pipeline.conftest import Worker, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

LANES = ",".join(q.name for q in celeryconfig.task_queues if "planning" not in q.name)
DRAIN_SECONDS_PER_SEND = 0.15
"""The drain's time limit grows with the load: 300 ms a call, 2 processes × 5 calls at once,
and each kill costs a lease (3 s) and a worker start (~3 s)."""


@pytest.fixture(scope="module")
def redis_server() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxServer]:
    with SandboxServer(state_dir=tmp_path_factory.mktemp("sandbox")) as server:
        yield server


def dead_letters(broker: PrivateRabbitMQ) -> int:
    with Connection(broker.url) as connection:
        channel = connection.default_channel
        queue = celeryconfig.dead_letter_queues[0]
        return int(channel.queue_declare(queue.name, passive=True).message_count)  # type: ignore[attr-defined]


def queued_messages(broker: PrivateRabbitMQ) -> int:
    """Messages still waiting in the sending queues (the redelivered ones too)."""
    with Connection(broker.url) as connection:
        channel: Any = connection.default_channel
        return sum(
            int(channel.queue_declare(name, passive=True).message_count)
            for name in LANES.split(",")
        )


def run(
    *,
    scenario: str,
    sends: int,
    kills: int,
    unsafe: bool,
    start_worker: Callable[..., Worker],
    tenant: Tenant,
    sandbox: SandboxServer,
    redis_server: PrivateRedis,
    rabbitmq: PrivateRabbitMQ,
) -> Report:
    env = {
        "NOTIFIER_PROVIDERS_JSON": json.dumps(
            providers_from_connection(sandbox.connection, timeout=5.0)
        ),
        "REDIS_URL": redis_server.url,
        "NOTIFIER_DELIVERY_LEASE": "3",
        "NOTIFIER_DELIVERY_BATCH": "5",
        "NOTIFIER_UNSAFE_WITHOUT": "claim_state" if unsafe else "",
    }
    sandbox.clear_messages()
    sandbox.clear_faults()
    sandbox.set_fault("ses", latency_ms=300)
    start_worker(queues=celeryconfig.PLANNING_QUEUE, concurrency=1, **env)
    Recipient.objects.bulk_create(
        Recipient(tenant=tenant, user_id=f"u{i}", email=f"u{i}@example.com") for i in range(sends)
    )

    # the client ledger: every 202
    client = client_for(tenant)
    started = time.monotonic()
    accepted: list[str] = []
    for i in range(sends):
        response = client.post(
            "/api/v1/notifications",
            {"user_ids": [f"u{i}"], "notification_type": "alert", "channels": ["email"],
             "template_vars": {"code": str(i)}},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"{uuid.uuid4().hex}-{i}",
        )  # fmt: skip
        assert response.status_code == 202, response.json()
        accepted.append(str(response.json()["notification_id"]))

    # a backlog for the senders, then the nemesis: SIGKILL the sending worker while provider
    # calls are in flight, and start another
    planned = Delivery.objects.filter(notification_id__in=accepted)
    wait_for(lambda: planned.count() == sends, timeout=60 + 0.1 * sends)
    sender = start_worker(queues=LANES, concurrency=2, **env)
    in_flight = Delivery.objects.filter(state=DeliveryState.SENDING, dispatched_at__isnull=False)
    for _ in range(kills):
        deadline = time.monotonic() + 10
        while not in_flight.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        sender.kill()
        sender = start_worker(queues=LANES, concurrency=2, **env)
    # and every delivery's message arrives once more, as after a kill or a broker failover
    for start in range(0, sends, 5):
        tasks.deliver_email.apply_async(
            kwargs={"delivery_ids": list(planned.values_list("pk", flat=True)[start : start + 5]),
                    "lane": "transactional"}
        )  # fmt: skip

    # drain: beat's and the relay's work, until nothing is on its way
    deadline = time.monotonic() + 120 + DRAIN_SECONDS_PER_SEND * sends
    while time.monotonic() < deadline:
        tasks.relay_outbox()
        tasks.release_due_deliveries()
        tasks.recover_expired_leases()
        if not unsettled(accepted) and queued_messages(rabbitmq) == 0:
            break
        time.sleep(0.5)
    drained = time.monotonic() - started

    report = reconcile(
        scenario=scenario,
        accepted=accepted,
        provider_acceptances=Counter(m["to"] for m in sandbox.messages(provider="ses")),
        dead_lettered=dead_letters(rabbitmq),
        drain_seconds=drained,
    )
    print("\n" + report.table())
    REPORTS.append(report)
    return report


@pytest.mark.parametrize(
    ("sends", "kills"),
    [
        pytest.param(150, 3, id="short"),
        pytest.param(600, 5, id="long", marks=pytest.mark.faults),
    ],
)
@pytest.mark.usefixtures("alerts")
def test_workers_killed_mid_send_lose_nothing_and_send_nothing_twice(
    start_worker: Callable[..., Worker],
    tenant: Tenant,
    sandbox: SandboxServer,
    redis_server: PrivateRedis,
    rabbitmq: PrivateRabbitMQ,
    sends: int,
    kills: int,
) -> None:
    report = run(
        scenario="worker SIGKILL + redelivery", sends=sends, kills=kills, unsafe=False,
        start_worker=start_worker, tenant=tenant, sandbox=sandbox,
        redis_server=redis_server, rabbitmq=rabbitmq,
    )  # fmt: skip

    assert report.lost == 0, report.table()
    assert report.pending == 0, report.table()
    assert report.unattributable == 0, report.table()
    assert report.delivered + report.unknown >= report.accepted - report.lost


@pytest.mark.usefixtures("alerts")
def test_negative_control_without_the_claim_check_the_ledger_sees_duplicates(
    start_worker: Callable[..., Worker],
    tenant: Tenant,
    sandbox: SandboxServer,
    redis_server: PrivateRedis,
    rabbitmq: PrivateRabbitMQ,
    alerts: NotificationType,
) -> None:
    report = run(
        scenario="claim check off", sends=150, kills=1, unsafe=True,
        start_worker=start_worker, tenant=tenant, sandbox=sandbox,
        redis_server=redis_server, rabbitmq=rabbitmq,
    )  # fmt: skip

    assert report.unattributable > 0, report.table()
