"""The loop closed for real: the app (``live_server``) sends through the real SDKs to the
provider sandbox, which calls our webhooks back as Twilio and SNS do, signed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from channels.registry import registry
from notifier.notifications import sending
from notifier.notifications.models import Delivery, DeliveryState
from notifier.recipients.models import Suppression
from notifier.sandbox import markers
from notifier.sandbox.providers import providers_from_connection, webhook_settings_from_connection
from notifier.sandbox.server import SandboxServer
from notifier.tenancy.models import Tenant
from notifier.webhooks.models import ProviderEvent
from tests.factories import RecipientFactory
from tests.pipeline.conftest import accept_and_plan, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("alerts")]

PHONE = "+14155550123"


@pytest.fixture
def sandbox(live_server: Any, settings: Any, tmp_path: Path) -> Iterator[SandboxServer]:
    """A sandbox calling the live server's webhooks; the process sends through it."""
    original = settings.NOTIFIER_PROVIDERS
    with SandboxServer(
        state_dir=tmp_path / "sandbox",
        sns_endpoint=f"{live_server.url}/webhooks/sns",
        twilio_inbound_url=f"{live_server.url}/webhooks/twilio/inbound",
    ) as server:
        providers = providers_from_connection(
            server.connection, timeout=5, webhook_base_url=live_server.url
        )
        settings.NOTIFIER_PROVIDERS = providers
        for name, value in webhook_settings_from_connection(server.connection).items():
            setattr(settings, name, value)
        registry.configure(providers)
        try:
            yield server
        finally:
            registry.configure(original)


def send(
    tenant: Tenant, channel: str, *, email: str = "ada@example.com", phone: str = PHONE
) -> Delivery:
    RecipientFactory.create(tenant=tenant, user_id="ada", email=email, phone=phone)
    return send_again(tenant, channel)


def send_again(tenant: Tenant, channel: str) -> Delivery:
    notification_id = accept_and_plan(tenant, user_ids=["ada"], channels=[channel])
    delivery = Delivery.objects.get(notification_id=notification_id)
    sending.send_deliveries(delivery_ids=[delivery.pk])
    return delivery


def ends(delivery: Delivery, state: str, *, reports: int) -> Delivery:
    """Wait until ``delivery`` is in ``state`` and ``reports`` provider reports arrived."""

    def settled() -> Delivery | None:
        delivery.refresh_from_db()
        arrived = delivery.events.filter(code="provider_report").count()
        return delivery if delivery.state == state and arrived >= reports else None

    found = wait_for(settled, timeout=15)
    assert isinstance(found, Delivery)
    return found


def statuses(delivery: Delivery) -> list[tuple[str, bool]]:
    return [
        (event.detail["status"], event.detail["applied"])
        for event in delivery.events.filter(code="provider_report")
    ]


def test_an_sms_reaches_delivered(sandbox: SandboxServer, tenant: Tenant) -> None:
    delivery = send(tenant, "sms")

    delivery = ends(delivery, DeliveryState.DELIVERED, reports=2)

    assert delivery.delivered_at is not None
    # "sent" confirms what the send already recorded; "delivered" moves it on.
    assert statuses(delivery) == [("sent", False), ("delivered", True)]


def test_an_undelivered_sms_fails_with_twilios_error_code(
    sandbox: SandboxServer, tenant: Tenant
) -> None:
    delivery = send(tenant, "sms", phone=markers.UNDELIVERED_NUMBER)

    delivery = ends(delivery, DeliveryState.FAILED, reports=2)

    assert "30003" in delivery.reason


def test_an_email_reaches_delivered(sandbox: SandboxServer, tenant: Tenant) -> None:
    delivery = send(tenant, "email")

    ends(delivery, DeliveryState.DELIVERED, reports=1)


def test_a_bouncing_address_ends_bounced_and_suppressed(
    sandbox: SandboxServer, tenant: Tenant
) -> None:
    delivery = send(tenant, "email", email="bounce-me@example.com")

    ends(delivery, DeliveryState.BOUNCED, reports=1)

    suppression = Suppression.objects.get(tenant=tenant, channel="email")
    assert (suppression.address, suppression.reason) == ("bounce-me@example.com", "hard_bounce")


def test_a_complaint_suppresses_the_address(sandbox: SandboxServer, tenant: Tenant) -> None:
    delivery = send(tenant, "email", email="complaint@example.com")

    ends(delivery, DeliveryState.DELIVERED, reports=2)

    assert Suppression.objects.get(tenant=tenant, channel="email").reason == "complaint"


def test_out_of_order_callbacks_end_delivered_never_back_to_sent(
    sandbox: SandboxServer, tenant: Tenant
) -> None:
    sandbox.set_fault("twilio", callbacks="out_of_order")

    delivery = send(tenant, "sms")

    delivery = ends(delivery, DeliveryState.DELIVERED, reports=2)
    assert statuses(delivery) == [("delivered", True), ("sent", False)]


def test_duplicated_callbacks_are_applied_once(sandbox: SandboxServer, tenant: Tenant) -> None:
    sandbox.set_fault("twilio", callbacks="duplicate")
    sandbox.set_fault("ses", callbacks="duplicate")

    sms = ends(send(tenant, "sms"), DeliveryState.DELIVERED, reports=2)
    email = ends(send_again(tenant, "email"), DeliveryState.DELIVERED, reports=1)
    # every callback was sent twice and answered 200 both times
    wait_for(lambda: len(sandbox.callbacks_sent()) == 6, timeout=15)
    assert {callback["answer"] for callback in sandbox.callbacks_sent()} == {200}

    assert ProviderEvent.objects.count() == 3
    assert statuses(sms) == [("sent", False), ("delivered", True)]
    assert statuses(email) == [("Delivery", True)]


def test_no_callbacks_when_they_are_off(sandbox: SandboxServer, tenant: Tenant) -> None:
    sandbox.set_fault("twilio", callbacks="off")

    delivery = send(tenant, "sms")

    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.SENT
    assert not ProviderEvent.objects.exists()


def inbound(sandbox: SandboxServer, body: str) -> dict[str, Any]:
    response = requests.post(
        f"{sandbox.http_url}/_sandbox/twilio/inbound",
        json={"from": PHONE, "body": body},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_inbound_stop_suppresses_the_number_and_start_lifts_it(
    sandbox: SandboxServer, tenant: Tenant
) -> None:
    # given a first SMS delivered
    ends(send(tenant, "sms"), DeliveryState.DELIVERED, reports=2)

    # when the recipient answers STOP
    assert inbound(sandbox, "STOP")["webhook_status"] == 200

    # then the number is suppressed, and the next SMS is not sent
    assert Suppression.objects.get(tenant=tenant, channel="sms").reason == "stop"
    second = send_again(tenant, "sms")
    second.refresh_from_db()
    assert second.state == DeliveryState.SUPPRESSED
    assert len(sandbox.messages(provider="twilio")) == 1

    # and START lifts it
    inbound(sandbox, "start")
    assert not Suppression.objects.filter(tenant=tenant, channel="sms").exists()


def test_a_forged_sandbox_callback_is_refused(sandbox: SandboxServer, live_server: Any) -> None:
    # The sandbox's SNS certificate is allowed; a message it did not sign is not.
    callbacks = sandbox.context.callbacks
    assert callbacks is not None
    notification = callbacks.sns_notification('{"eventType": "Delivery", "mail": {}}')
    notification["Message"] = '{"eventType": "Bounce", "mail": {}}'

    response = requests.post(f"{live_server.url}/webhooks/sns", json=notification, timeout=10)

    assert response.status_code == 403
