"""Failover along a channel's provider chain: only when a provider certainly did not take the
message, never after an unknown outcome, and the attempt log says who was tried."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from channels.registry import registry
from notifier.content.models import NotificationType
from notifier.notifications import sending
from notifier.notifications.models import Delivery, DeliveryState
from notifier.recipients.services import register_device
from notifier.sandbox.providers import providers_from_connection
from notifier.sandbox.server import SandboxServer
from notifier.tenancy.models import Tenant
from tests.factories import RecipientFactory
from tests.pipeline.conftest import accept_and_plan, email_chain


def queued_email(tenant: Tenant, email: str) -> Delivery:
    RecipientFactory.create(tenant=tenant, user_id="ada", email=email)
    notification_id = accept_and_plan(tenant, user_ids=["ada"], channels=["email"])
    return Delivery.objects.get(notification_id=notification_id)


@pytest.mark.django_db
@pytest.mark.usefixtures("alerts")
def test_a_provider_outage_fails_over_to_the_next_and_says_so(
    tenant: Tenant, configure_providers: Callable[[dict[str, Any]], None]
) -> None:
    configure_providers(email_chain(("primary", {"DOWN": True}), ("secondary", {})))
    delivery = queued_email(tenant, "ada@example.com")

    sending.send_deliveries(delivery_ids=[delivery.pk])

    delivery.refresh_from_db()
    assert (delivery.state, delivery.provider) == (DeliveryState.SENT, "secondary")
    assert len(registry.get("email", "secondary").sent) == 1  # type: ignore[attr-defined]
    assert registry.get("email", "primary").sent == []  # type: ignore[attr-defined]
    sent_event = delivery.events.get(state=DeliveryState.SENT)
    (tried,) = sent_event.detail["tried"]
    assert tried.startswith("primary: ProviderUnavailable")


@pytest.mark.django_db
@pytest.mark.usefixtures("alerts")
def test_an_unknown_outcome_is_never_failed_over(
    tenant: Tenant, configure_providers: Callable[[dict[str, Any]], None]
) -> None:
    # given a primary that takes the message and then loses the answer
    configure_providers(email_chain(("primary", {}), ("secondary", {})))
    delivery = queued_email(tenant, "timeout@example.com")

    sending.send_deliveries(delivery_ids=[delivery.pk])

    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.UNKNOWN
    assert registry.get("email", "secondary").attempts == []  # type: ignore[attr-defined]


@pytest.mark.django_db
@pytest.mark.usefixtures("alerts")
def test_when_every_provider_is_down_the_delivery_waits_to_retry(
    tenant: Tenant, configure_providers: Callable[[dict[str, Any]], None]
) -> None:
    configure_providers(email_chain(("primary", {"DOWN": True}), ("secondary", {"DOWN": True})))
    delivery = queued_email(tenant, "ada@example.com")

    sending.send_deliveries(delivery_ids=[delivery.pk])

    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.DEFERRED
    assert delivery.next_attempt_at is not None
    assert len(delivery.events.get(state=DeliveryState.DEFERRED).detail["tried"]) == 2


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxServer]:
    with SandboxServer(state_dir=tmp_path_factory.mktemp("sandbox")) as server:
        yield server


@pytest.mark.django_db
def test_ses_outage_fails_over_to_smtp_through_the_real_sdks(
    tenant: Tenant,
    alerts: NotificationType,
    sandbox: SandboxServer,
    configure_providers: Callable[[dict[str, Any]], None],
) -> None:
    # given SES failing with 503s, SMTP after it
    configure_providers(providers_from_connection(sandbox.connection, timeout=5.0))
    sandbox.clear_messages()
    sandbox.set_fault("ses", status=503)
    try:
        delivery = queued_email(tenant, "grace@example.com")

        # when
        sending.send_deliveries(delivery_ids=[delivery.pk])
    finally:
        sandbox.clear_faults()

    # then SMTP took it, SES took nothing: one message, one provider
    delivery.refresh_from_db()
    assert (delivery.state, delivery.provider) == (DeliveryState.SENT, "smtp")
    accepted = sandbox.messages(to="grace@example.com")
    assert [message["provider"] for message in accepted] == ["smtp"]
    assert accepted[0]["subject"] == "Alert 7"


@pytest.mark.django_db
def test_an_ios_device_goes_to_apns_and_an_android_one_to_fcm(
    tenant: Tenant,
    alerts: NotificationType,
    sandbox: SandboxServer,
    configure_providers: Callable[[dict[str, Any]], None],
) -> None:
    configure_providers(providers_from_connection(sandbox.connection, timeout=5.0))
    sandbox.clear_messages()
    recipient = RecipientFactory.create(tenant=tenant, user_id="ada")
    ios_token = "a1" * 32
    register_device(recipient=recipient, token=ios_token, platform="ios")
    register_device(recipient=recipient, token="fcm-token-android-1", platform="android")
    notification_id = accept_and_plan(tenant, user_ids=["ada"], channels=["push"])
    deliveries = Delivery.objects.filter(notification_id=notification_id)

    sending.send_deliveries(delivery_ids=[d.pk for d in deliveries])

    assert {d.destination: (d.state, d.provider) for d in deliveries.all()} == {
        ios_token: (DeliveryState.SENT, "apns"),
        "fcm-token-android-1": (DeliveryState.SENT, "fcm"),
    }
    assert {(m["provider"], m["to"]) for m in sandbox.messages()} == {
        ("apns", ios_token),
        ("fcm", "fcm-token-android-1"),
    }
