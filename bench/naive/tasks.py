"""The naive task: one per notification, one ``save()`` per state change, one synchronous
provider call per delivery."""

from __future__ import annotations

from celery import shared_task
from django.db.models import F
from django.utils import timezone

from channels.base import OutboundMessage
from channels.errors import ChannelError
from channels.registry import registry
from notifier.content.models import TemplateVersion
from notifier.content.rendering import render_message
from notifier.notifications.models import (
    Delivery,
    DeliveryState,
    Notification,
    NotificationRecipient,
)
from notifier.recipients.models import Device, Recipient


@shared_task(name="naive.send_notification")
def send_notification(notification_id: str) -> None:
    notification = Notification.objects.select_related("notification_type").get(pk=notification_id)
    user_ids = (
        NotificationRecipient.objects.filter(notification=notification)
        .order_by("position")
        .values_list("user_id", flat=True)
    )
    for user_id in user_ids:
        recipient = Recipient.objects.filter(
            tenant_id=notification.tenant_id, user_id=user_id
        ).first()
        for channel in notification.channels:
            send_one(notification, user_id, recipient, channel)


def send_one(
    notification: Notification, user_id: str, recipient: Recipient | None, channel: str
) -> None:
    device = (
        Device.objects.filter(recipient=recipient, active=True).first()
        if recipient is not None and channel == "push"
        else None
    )
    destination = ""
    if recipient is not None:
        destination = {"email": recipient.email, "sms": recipient.phone}.get(channel, "")
    if device is not None:
        destination = device.token
    version = TemplateVersion.objects.filter(
        template__notification_type=notification.notification_type,
        template__channel=channel,
        template__published_version_id=F("id"),
    ).first()
    delivery = Delivery.objects.create(
        tenant_id=notification.tenant_id,
        notification=notification,
        recipient=recipient,
        user_id=user_id,
        channel=channel,
        destination=destination,
        address_key=destination,
        device=device,
        template_version=version,
        accepted_at=notification.created_at,
    )
    if not destination or version is None:
        delivery.state = DeliveryState.FAILED
        delivery.reason = "no address" if not destination else "no template"
        delivery.failed_at = timezone.now()
        delivery.save()
        return
    delivery.state = DeliveryState.SENDING
    delivery.attempts = 1
    delivery.save()
    rendered = render_message(
        subject=version.subject,
        body=version.body,
        html=version.html,
        variables=notification.template_vars,
    )
    provider = registry.chain(
        channel, platform=device.platform if device else "", destination=destination
    )[0]
    try:
        result = provider.send(
            OutboundMessage(
                channel=channel,
                destination=destination,
                subject=rendered.subject,
                body=rendered.body,
                html=rendered.html,
                correlation_id=str(delivery.pk),
                priority=notification.priority,
                platform=device.platform if device else "",
                data={"notification_id": str(notification.pk)},
            )
        )
    except ChannelError as exc:
        delivery.state = DeliveryState.FAILED
        delivery.reason = str(exc)[:255]
        delivery.failed_at = timezone.now()
        delivery.save()
        return
    delivery.state = DeliveryState.SENT
    delivery.provider = result.provider
    delivery.provider_message_id = result.provider_message_id
    delivery.sent_at = timezone.now()
    delivery.save()
