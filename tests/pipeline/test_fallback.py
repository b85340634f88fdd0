"""Token lifecycle: a dead token deactivates its device at once; a user push cannot reach gets
the type's fallback channel instead, once; re-registering the device brings push back."""

from __future__ import annotations

from typing import Any

import pytest

from notifier.content.models import NotificationType
from notifier.notifications import sending
from notifier.notifications.models import Delivery, DeliveryState, OutboxMessage
from notifier.recipients.models import Device, Recipient
from notifier.recipients.services import register_device
from notifier.tenancy.models import Tenant
from tests.factories import RecipientFactory
from tests.pipeline.conftest import accept_and_plan

pytestmark = pytest.mark.django_db


@pytest.fixture
def alerts_with_fallback(alerts: NotificationType) -> NotificationType:
    alerts.fallback_channels = ["email", "sms"]
    alerts.save()
    return alerts


@pytest.fixture
def grace(tenant: Tenant) -> Recipient:
    recipient: Recipient = RecipientFactory.create(
        tenant=tenant, user_id="grace", email="grace@example.com", phone="+14155550199"
    )
    return recipient


def push(tenant: Tenant) -> dict[str, Delivery]:
    """Accept and plan a push-only alert to grace; her deliveries by channel."""
    return deliveries_of(accept_and_plan(tenant, user_ids=["grace"], channels=["push"]))


def deliveries_of(notification_id: Any) -> dict[str, Delivery]:
    return {d.channel: d for d in Delivery.objects.filter(notification_id=notification_id)}


@pytest.mark.usefixtures("alerts_with_fallback")
def test_no_active_device_falls_back_to_the_first_channel_the_user_allows(
    tenant: Tenant, grace: Recipient
) -> None:
    grace.channel_preferences.create(channel="email", enabled=False)

    deliveries = push(tenant)

    assert deliveries["push"].state == DeliveryState.FAILED
    assert deliveries["push"].reason == "no active device; fell back to sms"
    assert "email" not in deliveries  # opted out: skipped, not suppressed on her behalf
    assert (deliveries["sms"].state, deliveries["sms"].reason) == (
        DeliveryState.QUEUED,
        "fallback: no active push device",
    )
    assert deliveries["sms"].destination == "+14155550199"


def test_without_fallback_channels_push_just_fails(
    tenant: Tenant, grace: Recipient, alerts: NotificationType
) -> None:
    deliveries = push(tenant)

    assert list(deliveries) == ["push"]
    assert deliveries["push"].reason == "no active device"


@pytest.mark.usefixtures("alerts_with_fallback")
def test_the_last_dead_token_deactivates_the_device_and_falls_back_once(
    tenant: Tenant, grace: Recipient
) -> None:
    # given two devices whose tokens the provider reports dead
    for n in (1, 2):
        register_device(recipient=grace, token=f"dead-token-{n}", platform="android")
    deliveries = Delivery.objects.filter(
        notification_id=push(tenant)["push"].notification_id, channel="push"
    )
    assert deliveries.count() == 2

    # when both are sent in one batch
    sending.send_deliveries(delivery_ids=[d.pk for d in deliveries])

    # then both devices are off, both pushes failed, and one email is on its way
    assert not Device.objects.filter(recipient=grace, active=True).exists()
    assert set(deliveries.values_list("state", flat=True)) == {DeliveryState.FAILED}
    fallback = Delivery.objects.get(notification_id=deliveries[0].notification_id, channel="email")
    assert fallback.state == DeliveryState.QUEUED
    assert fallback.reason == "fallback: the last push device's token died"
    assert fallback.events.get().code == "fallback"
    staged = OutboxMessage.objects.filter(topic="deliveries.queued").order_by("-id").first()
    assert staged is not None
    assert staged.payload["delivery_ids"] == [fallback.pk]

    # and sending it reaches her by email
    sending.send_deliveries(delivery_ids=[fallback.pk])
    fallback.refresh_from_db()
    assert fallback.state == DeliveryState.SENT


@pytest.mark.usefixtures("alerts_with_fallback")
def test_a_dead_token_with_another_device_left_does_not_fall_back(
    tenant: Tenant, grace: Recipient
) -> None:
    register_device(recipient=grace, token="dead-token-1", platform="android")
    live, _ = register_device(recipient=grace, token="live-token-2", platform="android")
    notification_id = push(tenant)["push"].notification_id

    sending.send_deliveries(
        delivery_ids=list(
            Delivery.objects.filter(notification_id=notification_id).values_list("pk", flat=True)
        )
    )

    assert set(Device.objects.filter(active=True).values_list("pk", flat=True)) == {live.pk}
    assert set(deliveries_of(notification_id)) == {"push"}


@pytest.mark.usefixtures("alerts_with_fallback")
def test_re_registering_a_dead_device_brings_push_back(tenant: Tenant, grace: Recipient) -> None:
    device, _ = register_device(recipient=grace, token="dead-token-1", platform="android")
    sending.send_deliveries(delivery_ids=[push(tenant)["push"].pk])
    device.refresh_from_db()
    assert not device.active

    register_device(recipient=grace, token="dead-token-1", platform="android")

    device.refresh_from_db()
    assert device.active
    deliveries = push(tenant)
    assert deliveries["push"].state == DeliveryState.QUEUED
    assert "email" not in deliveries
