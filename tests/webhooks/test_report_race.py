"""A provider report can overtake the worker's own record of the send: it is applied, and the
worker's record then adds what it knows without moving the state back."""

from __future__ import annotations

import pytest
from django.utils import timezone

from channels.base import SendResult
from notifier.notifications import sending
from notifier.notifications.models import Delivery, DeliveryState
from notifier.tenancy.models import Tenant
from notifier.webhooks import services
from notifier.webhooks.reports import DeliveryReport
from tests.factories import RecipientFactory
from tests.pipeline.conftest import accept_and_plan


@pytest.mark.django_db
@pytest.mark.usefixtures("alerts")
def test_a_delivered_report_before_the_workers_record_is_kept(tenant: Tenant) -> None:
    # given an SMS claimed by a worker, whose provider call has returned but not been recorded
    RecipientFactory.create(tenant=tenant, user_id="ada", phone="+14155550123")
    notification_id = accept_and_plan(tenant, user_ids=["ada"], channels=["sms"])
    delivery = Delivery.objects.select_related("notification").get(notification_id=notification_id)
    claimed = sending._claim([delivery.pk], timezone.now())

    # when Twilio's "delivered" callback arrives first
    outcome = services.apply_delivery_report(
        report=DeliveryReport(
            provider="twilio", event_id="SM1:delivered", kind="status", status="delivered",
            delivery_ref=str(delivery.pk), provider_message_id="SM1",
            target=DeliveryState.DELIVERED,
        )
    )  # fmt: skip
    # and then the worker records its send
    sending._record(
        {delivery.pk: delivery},
        claimed,
        {
            delivery.pk: sending.Outcome(
                DeliveryState.SENT, result=SendResult(provider="twilio", provider_message_id="SM1")
            )
        },
    )

    # then it is delivered, with what the worker knew
    assert outcome == services.Outcome.APPLIED
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.DELIVERED
    assert (delivery.provider, delivery.provider_message_id) == ("twilio", "SM1")
    assert delivery.sent_at is not None
    assert delivery.delivered_at is not None
    assert list(delivery.events.order_by("id").values_list("state", flat=True))[-2:] == [
        DeliveryState.DELIVERED,
        DeliveryState.SENT,
    ]
