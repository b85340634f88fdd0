"""Lanes: a critical notification is not held up by a campaign draining on the bulk lane."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest
from django.utils import timezone

import celeryconfig
from notifier.core.enums import Category, Channel, Priority
from notifier.notifications import services
from notifier.notifications.models import Delivery
from notifier.recipients.models import Recipient
from notifier.tenancy.models import Tenant
from tests.factories import NotificationTypeFactory, client_for, published_template
from tests.pipeline.conftest import Worker, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

BACKLOG = 20_000  # bulk deliveries queued ahead of the critical one
SLOW_MS = 300  # each bulk send takes this long at the sandbox


def lane_queues(lane: str) -> str:
    names = [queue.name for queue in celeryconfig.task_queues]
    return ",".join(name for name in names if name.startswith(f"notify.{lane}."))


def test_critical_reaches_the_provider_within_a_second_while_bulk_drains(
    start_worker: Callable[..., Worker], tenant: Tenant
) -> None:
    # given one pool per lane, as make run and compose deploy them
    start_worker(queues=celeryconfig.PLANNING_QUEUE, concurrency=1)
    bulk = start_worker(queues=lane_queues("bulk"), concurrency=1)
    start_worker(queues=lane_queues("critical"), concurrency=1)
    for key, category in (("promo", Category.MARKETING), ("otp", Category.SECURITY)):
        notification_type = NotificationTypeFactory.create(
            tenant=tenant, key=key, category=category, default_channels=[Channel.EMAIL]
        )
        published_template(notification_type, subject="{{ n }}", body="{{ n }}", variables=("n",))
    Recipient.objects.bulk_create(
        Recipient(tenant=tenant, user_id=f"u{i}", email=f"u{i}.slow-{SLOW_MS}@example.com")
        for i in range(BACKLOG)
    )
    Recipient.objects.create(tenant=tenant, user_id="vip", email="vip@example.com")

    # and a campaign of BACKLOG slow sends, all planned, draining on the bulk lane
    for start in range(0, BACKLOG, 1000):
        services.accept_notification(
            tenant=tenant,
            request=services.SendRequest(
                user_ids=[f"u{i}" for i in range(start, start + 1000)],
                notification_type="promo",
                template_vars={"n": "sale"},
            ),
        )
    promo = Delivery.objects.filter(notification__notification_type__key="promo")
    wait_for(lambda: promo.count() >= BACKLOG, timeout=240, interval=1)
    wait_for(lambda: len(bulk.sent()) >= 20, timeout=60)

    # when a critical notification is sent
    posted_at = timezone.now()
    response = client_for(tenant).post(
        "/api/v1/notifications",
        {"user_ids": ["vip"], "notification_type": "otp", "priority": Priority.CRITICAL,
         "template_vars": {"n": "123456"}},
        format="json",
    )  # fmt: skip
    assert response.status_code == 202

    # then the provider has it within a second, while the bulk backlog is still draining
    def vip_message() -> dict[str, str] | None:
        return next((m for m in bulk.sent() if m["destination"] == "vip@example.com"), None)

    message = wait_for(vip_message, timeout=10, interval=0.02)
    latency = (datetime.fromisoformat(message["at"]) - posted_at).total_seconds()
    assert latency < 1.0, f"critical took {latency:.2f} s"
    # and most of the campaign had not been sent yet: it was still draining
    campaign_sent = [m for m in bulk.sent() if m["destination"] != "vip@example.com"]
    assert len(campaign_sent) < BACKLOG // 2
