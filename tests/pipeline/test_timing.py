"""Time and races through real workers: a scheduled send leaves at its time, nothing is sent
after ``expires_at`` whichever stage it expires in, and a suppression added while a delivery
is queued stops it."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

import celeryconfig
from notifier.content.models import NotificationType
from notifier.notifications import tasks
from notifier.notifications.models import Delivery, DeliveryState
from notifier.recipients.models import Recipient
from notifier.tenancy.models import Tenant
from tests.factories import client_for
from tests.pipeline.conftest import Worker, send, statuses, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

LANES = ",".join(q.name for q in celeryconfig.task_queues if q.name != celeryconfig.PLANNING_QUEUE)


def sleep_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - timezone.now()).total_seconds()) + 0.1)


def test_a_scheduled_send_leaves_at_its_time_not_before(
    worker: Worker, tenant: Tenant, alerts: NotificationType, ada: Recipient
) -> None:
    # given a notification scheduled 3 s ahead
    client = client_for(tenant)
    scheduled_at = timezone.now() + timedelta(seconds=3)
    notification_id = send(client, scheduled_at=scheduled_at.isoformat())
    body = client.get(f"/api/v1/notifications/{notification_id}").json()
    assert body["status"] == "scheduled"

    # when beat's relay runs every 0.2 s
    def relayed_and_sent() -> bool:
        tasks.relay_outbox()
        return bool(worker.sent())

    wait_for(relayed_and_sent, timeout=15, interval=0.2)

    # then the provider got it after its time, and promptly
    sent_at = datetime.fromisoformat(worker.sent()[0]["at"])
    assert scheduled_at <= sent_at < scheduled_at + timedelta(seconds=2)
    assert statuses(client, notification_id) == {"email": ["sent"]}


def test_a_notification_expiring_before_planning_is_never_planned_nor_sent(
    worker: Worker, tenant: Tenant, alerts: NotificationType, ada: Recipient, settings: Any
) -> None:
    # given the broker is not told at once (the API's fast path off: only the relay publishes)
    settings.NOTIFIER_PUBLISH_ON_COMMIT = False
    client = client_for(tenant)
    expires_at = timezone.now() + timedelta(seconds=1)
    notification_id = send(client, expires_at=expires_at.isoformat())

    # when the relay publishes it only after it expired
    sleep_until(expires_at)
    assert tasks.relay_outbox() == 1

    # then planning marks it expired, with no delivery and nothing sent
    wait_for(
        lambda: client.get(f"/api/v1/notifications/{notification_id}").json()["status"] == "expired"
    )
    assert not Delivery.objects.filter(notification_id=notification_id).exists()
    time.sleep(0.5)
    assert worker.sent() == []


@pytest.fixture
def planner_then_sender(start_worker: Callable[..., Worker]) -> Callable[[], Worker]:
    """Only a planner runs at first, so deliveries stay queued; the returned function starts
    the lane workers, which then find whatever changed meanwhile."""
    start_worker(queues=celeryconfig.PLANNING_QUEUE, concurrency=1)
    return lambda: start_worker(queues=LANES, concurrency=1)


def test_a_delivery_expiring_while_queued_ends_expired_unsent(
    planner_then_sender: Callable[[], Worker],
    tenant: Tenant,
    alerts: NotificationType,
    ada: Recipient,
) -> None:
    client = client_for(tenant)
    expires_at = timezone.now() + timedelta(seconds=2)
    notification_id = send(client, expires_at=expires_at.isoformat())
    wait_for(lambda: statuses(client, notification_id) == {"email": ["queued"]})

    sleep_until(expires_at)
    sender = planner_then_sender()

    wait_for(lambda: statuses(client, notification_id) == {"email": ["expired"]})
    delivery = Delivery.objects.get(notification_id=notification_id)
    assert delivery.attempts == 0
    assert delivery.reason == "expired before sending"
    assert sender.sent() == []


def test_a_suppression_added_while_a_send_is_queued_stops_it(
    planner_then_sender: Callable[[], Worker],
    tenant: Tenant,
    alerts: NotificationType,
    ada: Recipient,
) -> None:
    # given a delivery to ada queued behind a backlog
    client = client_for(tenant)
    notification_id = send(client, channels=["email", "sms"])
    wait_for(lambda: statuses(client, notification_id) == {"email": ["queued"], "sms": ["queued"]})

    # when support suppresses her address (spelt differently) before the worker gets to it
    response = client.post(
        "/api/v1/suppressions",
        {"channel": "email", "address": "ADA@Example.COM", "reason": "complaint"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    sender = planner_then_sender()

    # then the email is not sent and says why; the SMS still goes
    wait_for(
        lambda: statuses(client, notification_id) == {"email": ["suppressed"], "sms": ["sent"]}
    )
    email = Delivery.objects.get(notification_id=notification_id, channel="email")
    assert email.state == DeliveryState.SUPPRESSED
    assert email.reason == "address suppressed before sending"
    assert [m["channel"] for m in sender.sent()] == ["sms"]
