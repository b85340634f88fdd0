"""A worker killed mid-send: never sent twice, and the unknown outcome follows SPEC guarantee 3.

Non-critical deliveries of unknown outcome are never resent blindly; a critical one is sent
once more after its lease lapses, and that resend is recorded as attributable.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from notifier.core.enums import Channel
from notifier.notifications import tasks
from notifier.notifications.models import Delivery, DeliveryState
from notifier.recipients.models import Recipient
from notifier.tenancy.models import Tenant
from tests.factories import (
    NotificationTypeFactory,
    RecipientFactory,
    client_for,
    published_template,
)
from tests.pipeline.conftest import Worker, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

# The sandbox sleeps this long before accepting a message sent to "slow-<ms>@…".
SLOW_SEND_MS = 3000
LEASE_SECONDS = "2"


@pytest.fixture
def slow_recipient(tenant: Tenant) -> Recipient:
    notification_type = NotificationTypeFactory.create(
        tenant=tenant, key="alert", default_channels=[Channel.EMAIL]
    )
    published_template(
        notification_type, subject="Alert", body="Code {{ code }}", variables=("code",)
    )
    return RecipientFactory.create(
        tenant=tenant, user_id="slow", email=f"slow-{SLOW_SEND_MS}@example.com"
    )


def send(tenant: Tenant, priority: str) -> str:
    response = client_for(tenant).post(
        "/api/v1/notifications",
        {
            "user_ids": ["slow"],
            "notification_type": "alert",
            "priority": priority,
            "template_vars": {"code": "7"},
        },
        format="json",
    )
    assert response.status_code == 202
    return str(response.json()["notification_id"])


def kill_mid_send(worker: Worker, notification_id: str) -> Delivery:
    """SIGKILL ``worker`` while it is inside the provider call for the notification."""
    delivery: Delivery = wait_for(
        lambda: Delivery.objects.filter(
            notification_id=notification_id, state=DeliveryState.SENDING
        ).first()
    )
    time.sleep(0.5)  # well inside the sandbox's 3 s sleep
    worker.kill()
    return delivery


@pytest.mark.parametrize(
    ("priority", "sends", "final_state"),
    [("normal", 0, DeliveryState.UNKNOWN), ("critical", 1, DeliveryState.SENT)],
)
def test_worker_killed_mid_send(
    start_worker: Callable[..., Worker],
    tenant: Tenant,
    slow_recipient: Recipient,
    priority: str,
    sends: int,
    final_state: str,
) -> None:
    # given a send in progress on a worker that is then killed with SIGKILL
    first = start_worker(NOTIFIER_DELIVERY_LEASE=LEASE_SECONDS)
    notification_id = send(tenant, priority)
    delivery = kill_mid_send(first, notification_id)

    # when another worker takes over (the message comes back: acks_late) and, after the
    # lease lapses, beat sweeps abandoned sends
    second = start_worker(NOTIFIER_DELIVERY_LEASE=LEASE_SECONDS)
    time.sleep(float(LEASE_SECONDS) + 0.5)
    tasks.recover_expired_leases()

    # then a normal delivery ends unknown and is never resent; a critical one is sent once more
    def settled() -> bool:
        delivery.refresh_from_db()
        return delivery.state == final_state

    wait_for(settled, timeout=30)
    time.sleep(1)  # any stray duplicate would have been recorded by now
    assert len(second.sent()) == sends
    codes = list(delivery.events.values_list("code", flat=True))
    assert "lease_expired" in codes
    assert codes.count("resend_after_unknown") == sends
    # a second sweep never resends again
    tasks.recover_expired_leases()
    time.sleep(1)
    assert len(second.sent()) == sends
