"""A critical notification is sent by the process that planned it when that process consumes
its channel's critical queue: one broker hop fewer. Its batch's outbox row is held, not
published, and discarded once sent; if the planner dies first, the relay publishes it later.

Real Celery workers (subprocesses) on the private broker and the real database.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from uuid import UUID

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

import celeryconfig
from notifier.core.enums import Priority
from notifier.notifications import delivering, planning, relay, services
from notifier.notifications.models import Delivery, OutboxMessage
from notifier.tenancy.models import Tenant
from tests.factories import client_for
from tests.pipeline.conftest import Worker, send, wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("alerts", "ada"),
]

CRITICAL_PLANNING = celeryconfig.CRITICAL_PLANNING_QUEUE
CRITICAL_EMAIL = celeryconfig.delivery_queue_name("critical", "email")
CRITICAL_SMS = celeryconfig.delivery_queue_name("critical", "sms")
QUEUED = relay.DELIVERIES_QUEUED


def accept_critical_email(tenant: Tenant) -> UUID:
    """Accept a critical ``alert`` to ada by email, in this process; its id."""
    outcome = services.accept_notification(
        tenant=tenant,
        request=services.SendRequest(
            user_ids=["ada"], notification_type="alert", channels=["email"],
            priority=Priority.CRITICAL, template_vars={"code": "7"},
        ),
    )  # fmt: skip
    notification_id: UUID = outcome.body["notification_id"]
    return notification_id


def sent_to_ada(worker: Worker) -> list[dict[str, str]]:
    return [m for m in worker.sent() if m["destination"] == "ada@example.com"]


def test_the_critical_pool_sends_what_it_planned_without_another_message(
    start_worker: Callable[..., Worker], tenant: Tenant
) -> None:
    # given the critical pool: critical planning and critical email, in one process
    worker = start_worker(queues=f"{CRITICAL_PLANNING},{CRITICAL_EMAIL}", concurrency=1)

    # when a critical notification is sent by email
    client: APIClient = client_for(tenant)
    notification_id = send(client, priority=Priority.CRITICAL, channels=["email"])

    # then it is sent once
    wait_for(lambda: sent_to_ada(worker), timeout=30)
    delivery = Delivery.objects.get(notification_id=notification_id)
    assert delivery.lane == "critical"
    wait_for(lambda: Delivery.objects.get(pk=delivery.pk).state == "sent", timeout=10)
    # and its batch never became a message: its outbox row was discarded, unpublished
    assert not OutboxMessage.objects.filter(topic=QUEUED).exists()
    assert len(sent_to_ada(worker)) == 1


def test_the_critical_pool_sends_a_notifications_batches_together(
    start_worker: Callable[..., Worker], tenant: Tenant
) -> None:
    # given the critical pool on email and SMS
    worker = start_worker(
        queues=f"{CRITICAL_PLANNING},{CRITICAL_EMAIL},{CRITICAL_SMS}", concurrency=1
    )

    # when a critical notification goes to ada by email and SMS (a batch each)
    notification_id = send(
        client_for(tenant), priority=Priority.CRITICAL, channels=["email", "sms"]
    )

    # then both are sent once, and neither batch became a message
    deliveries = Delivery.objects.filter(notification_id=notification_id)
    wait_for(lambda: sorted(deliveries.values_list("state", flat=True)) == ["sent", "sent"])
    assert not OutboxMessage.objects.filter(topic=QUEUED).exists()
    destinations = sorted(m["destination"] for m in worker.sent())
    assert destinations == ["+14155550123", "ada@example.com"]


def test_a_planner_that_does_not_send_the_channel_publishes_the_batch(
    start_worker: Callable[..., Worker], tenant: Tenant
) -> None:
    # given critical planning in one worker and critical email in another
    start_worker(queues=CRITICAL_PLANNING, concurrency=1)
    sender = start_worker(queues=CRITICAL_EMAIL, concurrency=1)

    # when a critical notification is sent by email
    send(client_for(tenant), priority=Priority.CRITICAL, channels=["email"])

    # then it reaches the sender as a message, published at once
    wait_for(lambda: sent_to_ada(sender), timeout=30)
    (row,) = OutboxMessage.objects.filter(topic=QUEUED)
    assert row.published_at is not None
    assert row.available_at <= row.published_at
    assert len(sent_to_ada(sender)) == 1


def test_a_held_batch_its_planner_did_not_send_is_published_by_the_relay_later(
    start_worker: Callable[..., Worker], tenant: Tenant
) -> None:
    # given a critical notification planned with its batch held for a sender that then died
    # (planned here, in the test process, which sends nothing)
    notification_id = accept_critical_email(tenant)
    (batch,) = planning.plan_notification(
        notification_id=notification_id,
        now=timezone.now(),
        batch_size=50,
        hold=lambda batch: True,
    )
    held_until = timezone.now() + planning.HOLD_FOR
    assert batch.held_by is not None

    # when the relay runs before the hold is over, nothing is published; after it, the batch
    assert relay.relay_outbox(now=held_until - timedelta(seconds=1), topic=QUEUED) == 0
    assert relay.relay_outbox(now=held_until, topic=QUEUED) == 1

    # then a sender sends it, once
    sender = start_worker(queues=CRITICAL_EMAIL, concurrency=1)
    wait_for(lambda: sent_to_ada(sender), timeout=30)
    assert OutboxMessage.objects.get(pk=batch.held_by).published_at is not None
    assert len(sent_to_ada(sender)) == 1


def test_a_held_batch_its_planner_failed_to_send_is_released_to_the_relay_at_once(
    start_worker: Callable[..., Worker],
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a critical notification whose planner fails to send its batch (a fault of its
    # own: here, the call raising)
    notification_id = accept_critical_email(tenant)

    def broken(**kwargs: object) -> dict[str, int]:
        raise RuntimeError("the planner's sending broke")

    monkeypatch.setattr(delivering, "send_batch", broken)

    # when it plans and tries to send it
    (batch,) = delivering.plan_and_send(
        notification_id=notification_id, batch_size=50, sends_critical=["email"]
    )

    # then planning stands, and the batch is due now: the relay's next pass publishes it
    assert batch.held_by is not None
    assert relay.relay_outbox(now=timezone.now(), topic=QUEUED) == 1
    sender = start_worker(queues=CRITICAL_EMAIL, concurrency=1)
    wait_for(lambda: sent_to_ada(sender), timeout=30)
    assert len(sent_to_ada(sender)) == 1
