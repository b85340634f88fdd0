"""POST → relay → RabbitMQ → planning → delivery → sandbox provider, with a real worker."""

from __future__ import annotations

import time
from datetime import time as clock
from datetime import timedelta

import pytest
from django.utils import timezone
from kombu import Connection

import celeryconfig
from notifier.content.models import NotificationType
from notifier.notifications import tasks
from notifier.notifications.models import Delivery, DeliveryState, OutboxMessage
from notifier.notifications.relay import relay_outbox
from notifier.recipients.models import QuietHours, Recipient, Suppression
from notifier.recipients.services import register_device
from notifier.tenancy.models import Tenant
from tests.brokers import PrivateRabbitMQ
from tests.factories import (
    client_for,
)
from tests.pipeline.conftest import Worker, send, statuses, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

DEAD_LETTERS = celeryconfig.dead_letter_queues[0]


def test_each_channel_is_delivered_once_and_reported_sent(
    worker: Worker, tenant: Tenant, alerts: NotificationType, ada: Recipient
) -> None:
    client = client_for(tenant)

    # when
    notification_id = send(client, channels=["push", "email", "sms"])

    # then the API reports each channel sent, and the provider got each message once
    expected = {"push": ["sent"], "email": ["sent"], "sms": ["sent"]}
    wait_for(lambda: statuses(client, notification_id) == expected)
    sent = worker.sent()
    assert sorted(m["channel"] for m in sent) == ["email", "push", "sms"]
    deliveries = {str(d.pk): d for d in Delivery.objects.filter(notification_id=notification_id)}
    assert {m["correlation_id"] for m in sent} == set(deliveries)
    by_channel = {m["channel"]: m for m in sent}
    assert by_channel["email"]["destination"] == "ada@example.com"
    assert by_channel["email"]["subject"] == "Alert 42"
    assert by_channel["sms"]["destination"] == "+14155550123"
    assert by_channel["push"]["destination"] == "device-token-ada"
    assert all(d.attempts == 1 and d.provider == "sandbox" for d in deliveries.values())
    # every message went through the outbox: the notification's, and its deliveries' batches
    outbox = OutboxMessage.objects.values_list("topic", "published_at")
    assert sorted(topic for topic, _ in outbox) == [
        "deliveries.queued",
        "deliveries.queued",
        "deliveries.queued",
        "notification.accepted",
    ]
    assert all(published_at is not None for _, published_at in outbox)


def test_redelivered_messages_and_a_replayed_outbox_row_send_nothing_twice(
    worker: Worker, tenant: Tenant, alerts: NotificationType, ada: Recipient
) -> None:
    # given a notification delivered once
    client = client_for(tenant)
    notification_id = send(client)
    wait_for(lambda: statuses(client, notification_id) == {"email": ["sent"]})
    delivery = Delivery.objects.get(notification_id=notification_id)

    # when the delivery message arrives twice more and the outbox row is published again
    tasks.deliver_email.apply_async(kwargs={"delivery_ids": [delivery.pk], "lane": "transactional"})
    tasks.deliver_email.apply_async(kwargs={"delivery_ids": [delivery.pk], "lane": "transactional"})
    OutboxMessage.objects.update(published_at=None)
    assert relay_outbox() == 2  # the notification's row and its delivery batch's

    # then (once the worker has drained those messages) it was still sent exactly once
    time.sleep(2)
    assert len(worker.sent()) == 1
    assert Delivery.objects.filter(notification_id=notification_id).count() == 1
    delivery.refresh_from_db()
    assert delivery.attempts == 1


def test_transient_failures_retry_from_postgres_then_send(
    worker: Worker, tenant: Tenant, alerts: NotificationType, ada: Recipient
) -> None:
    # given an address the sandbox refuses twice before accepting
    Recipient.objects.filter(pk=ada.pk).update(email="fail-transient-2@example.com")
    client = client_for(tenant)
    notification_id = send(client)

    # when beat releases the retries as they fall due
    def released_and_sent() -> bool:
        tasks.release_due_deliveries()
        return statuses(client, notification_id) == {"email": ["sent"]}

    wait_for(released_and_sent, timeout=30, interval=0.2)

    # then exactly three attempts were made, and one message accepted
    delivery = Delivery.objects.get(notification_id=notification_id)
    assert delivery.attempts == 3
    assert len(worker.sent()) == 1
    states = list(delivery.events.values_list("state", flat=True))
    assert states.count(DeliveryState.DEFERRED) == 2


def test_permanent_failure_fails_after_one_attempt(
    worker: Worker, tenant: Tenant, alerts: NotificationType, ada: Recipient
) -> None:
    Recipient.objects.filter(pk=ada.pk).update(email="fail-permanent@example.com")
    client = client_for(tenant)

    notification_id = send(client)

    wait_for(lambda: statuses(client, notification_id) == {"email": ["failed"]})
    delivery = Delivery.objects.get(notification_id=notification_id)
    assert delivery.attempts == 1
    assert "InvalidRecipient" in delivery.reason
    assert worker.sent() == []


def test_suppressed_address_and_opted_out_channel_are_skipped_with_a_reason(
    worker: Worker, tenant: Tenant, alerts: NotificationType, ada: Recipient
) -> None:
    # given ada's email is suppressed and she opted out of SMS
    Suppression.objects.create(
        tenant=tenant, channel="email", address="ada@example.com", reason="manual"
    )
    ada.channel_preferences.create(channel="sms", enabled=False)
    client = client_for(tenant)

    # when
    notification_id = send(client, channels=["email", "sms", "push"])

    # then only push goes out
    wait_for(lambda: statuses(client, notification_id).get("push") == ["sent"])
    deliveries = {d.channel: d for d in Delivery.objects.filter(notification_id=notification_id)}
    assert deliveries["email"].state == DeliveryState.SUPPRESSED
    assert "suppression" in deliveries["email"].reason
    assert deliveries["sms"].state == DeliveryState.SUPPRESSED
    assert "opted out of sms" in deliveries["sms"].reason
    assert [m["channel"] for m in worker.sent()] == ["push"]


def test_quiet_hours_defer_until_released_and_critical_goes_through(
    worker: Worker, tenant: Tenant, alerts: NotificationType, ada: Recipient
) -> None:
    # given ada is in quiet hours right now
    now = timezone.now()
    QuietHours.objects.create(
        recipient=ada,
        start=(now - timedelta(hours=1)).time().replace(second=0, microsecond=0),
        end=(now + timedelta(hours=1)).time().replace(second=0, microsecond=0),
        timezone="UTC",
    )
    client = client_for(tenant)

    # when a normal and a critical notification are sent
    normal = send(client)
    critical = send(client, priority="critical")

    # then the critical one is sent, the normal one waits for the end of the window
    wait_for(lambda: statuses(client, critical) == {"email": ["sent"]})
    deferred = Delivery.objects.get(notification_id=normal)
    assert deferred.state == DeliveryState.DEFERRED
    assert deferred.reason == "quiet hours"
    assert deferred.next_attempt_at is not None
    assert deferred.next_attempt_at > now + timedelta(minutes=50)

    # and once the window has passed, beat releases it and it is sent
    Delivery.objects.filter(pk=deferred.pk).update(next_attempt_at=timezone.now())
    tasks.release_due_deliveries()
    wait_for(lambda: statuses(client, normal) == {"email": ["sent"]})
    assert len(worker.sent()) == 2


def test_a_delivery_that_expires_while_deferred_is_never_sent(
    worker: Worker, tenant: Tenant, alerts: NotificationType, ada: Recipient
) -> None:
    # given a notification whose delivery waits in quiet hours and expires meanwhile
    QuietHours.objects.create(recipient=ada, start=clock(0, 0), end=clock(23, 59), timezone="UTC")
    client = client_for(tenant)
    expires_at = timezone.now() + timedelta(seconds=5)
    notification_id = send(client, expires_at=expires_at.isoformat())
    wait_for(lambda: statuses(client, notification_id) == {"email": ["deferred"]})

    # when the deferral is released after expiry
    time.sleep(max(0.0, (expires_at - timezone.now()).total_seconds()) + 0.1)
    Delivery.objects.filter(notification_id=notification_id).update(next_attempt_at=timezone.now())
    tasks.release_due_deliveries()

    # then it ends expired, unsent
    wait_for(lambda: statuses(client, notification_id) == {"email": ["expired"]})
    assert worker.sent() == []


def test_a_poison_message_is_dead_lettered_and_others_still_flow(
    worker: Worker,
    rabbitmq: PrivateRabbitMQ,
    tenant: Tenant,
    alerts: NotificationType,
    ada: Recipient,
) -> None:
    # given a planning message that can never succeed
    tasks.plan_notification.apply_async(kwargs={"notification_id": "not-a-uuid"})

    # when an ordinary notification follows it
    client = client_for(tenant)
    notification_id = send(client)

    # then the ordinary one is delivered, and the poison waits in the dead-letter queue
    wait_for(lambda: statuses(client, notification_id) == {"email": ["sent"]})
    with Connection(rabbitmq.url) as connection:
        # kombu accepts a declared Queue (here: quorum) as well as a name; its stubs say str.
        queue = connection.SimpleQueue(DEAD_LETTERS)  # type: ignore[arg-type]
        dead = wait_for(lambda: queue.get(timeout=5))
        dead.ack()
    assert dead.headers["task"] == "notify.plan.notification"
    assert dead.headers["x-death"][0]["reason"] == "rejected"
    assert dead.headers["x-death"][0]["queue"] == "notify.planning"


def test_a_dead_push_token_fails_and_deactivates_its_device_only(
    worker: Worker, tenant: Tenant, alerts: NotificationType, ada: Recipient
) -> None:
    # given ada has a second device whose token the provider reports unregistered
    register_device(recipient=ada, token="dead-token-old-phone", platform="android")
    client = client_for(tenant)

    # when one push goes to both devices (one batch, sent concurrently)
    notification_id = send(client, channels=["push"])

    # then the live device got it, the dead one failed and is deactivated
    wait_for(
        lambda: sorted(statuses(client, notification_id).get("push", [])) == ["failed", "sent"]
    )
    devices = {d.token: d for d in ada.devices.all()}
    assert devices["device-token-ada"].active
    assert not devices["dead-token-old-phone"].active
    assert "RecipientUnreachable" in devices["dead-token-old-phone"].deactivation_reason
    assert [m["destination"] for m in worker.sent()] == ["device-token-ada"]
