"""Planning: turn an accepted notification into deliveries, one per user × channel × address.

For each user the channels are resolved (the request's, else the type's defaults), then each
is checked against the user's preferences (type × channel, else channel), the suppression
list and quiet hours. Every outcome is a delivery row with a state and a reason, so support
can see why a channel was skipped. Rows are written in bulk, in the transaction that marks the
notification planned: planning twice (a redelivered message) finds it planned and does nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.db import transaction

from channels.errors import InvalidAddress
from notifier.content import selectors as content_selectors
from notifier.content.models import TemplateVersion
from notifier.core.enums import Channel, Priority
from notifier.notifications import limits, relay
from notifier.notifications.models import (
    Delivery,
    DeliveryEvent,
    DeliveryState,
    Notification,
    NotificationStatus,
)
from notifier.notifications.quiet_hours import QuietWindow, quiet_until
from notifier.notifications.routing import lane_for
from notifier.recipients.models import Recipient, Suppression
from notifier.recipients.services import suppression_key


@dataclass(frozen=True, slots=True)
class Batch:
    """Queued deliveries to enqueue together on one lane and channel."""

    lane: str
    channel: str
    delivery_ids: list[int]


@dataclass(frozen=True, slots=True)
class _Target:
    channel: str
    destination: str
    device_id: int | None


def plan_notification(*, notification_id: UUID, now: datetime, batch_size: int) -> list[Batch]:
    """Create the deliveries of a queued notification and stage their messages; return the
    batches staged."""
    with transaction.atomic():
        notification = (
            Notification.objects.select_for_update(of=("self",))
            .select_related("notification_type")
            .filter(pk=notification_id)
            .first()
        )
        if notification is None or notification.status not in (
            NotificationStatus.QUEUED,
            NotificationStatus.SCHEDULED,
        ):
            return []  # already planned (a redelivered message), cancelled or gone
        if notification.expires_at is not None and notification.expires_at <= now:
            notification.status = NotificationStatus.EXPIRED
            notification.save(update_fields=["status"])
            return []
        deliveries = _plan(notification, now)
        for delivery in deliveries:
            if delivery.state in (
                DeliveryState.FAILED,
                DeliveryState.SUPPRESSED,
                DeliveryState.DEDUPLICATED,
            ):
                delivery.failed_at = now
        Delivery.objects.bulk_create(deliveries)
        DeliveryEvent.objects.bulk_create(
            DeliveryEvent(
                delivery=d, state=d.state, code="planned", reason=d.reason, occurred_at=now
            )
            for d in deliveries
        )
        notification.status = NotificationStatus.PLANNED
        notification.save(update_fields=["status"])
        batches = split_batches(
            ((d.lane, d.channel, d.pk) for d in deliveries if d.state == DeliveryState.QUEUED),
            batch_size=batch_size,
        )
        # Their messages are outbox rows of this transaction: never queued rows without one.
        relay.stage_deliveries(batches)
    return batches


def split_batches(deliveries: Iterable[tuple[str, str, int]], *, batch_size: int) -> list[Batch]:
    """Group (lane, channel, delivery id) into tasks' batches, keeping their order.

    Critical deliveries go one per task: each is sent the moment it arrives.
    """
    grouped: dict[tuple[str, str], list[int]] = defaultdict(list)
    for lane, channel, delivery_id in deliveries:
        grouped[(lane, channel)].append(delivery_id)
    batches = []
    for (lane, channel), ids in grouped.items():
        size = 1 if lane == "critical" else batch_size
        batches += [
            Batch(lane=lane, channel=channel, delivery_ids=ids[start : start + size])
            for start in range(0, len(ids), size)
        ]
    return batches


def _plan(notification: Notification, now: datetime) -> list[Delivery]:
    user_ids = list(notification.recipients.order_by("position").values_list("user_id", flat=True))
    recipients = {
        r.user_id: r
        for r in Recipient.objects.filter(tenant_id=notification.tenant_id, user_id__in=user_ids)
        .select_related("quiet_hours")
        .prefetch_related("devices", "channel_preferences", "type_preferences")
    }
    fallbacks = _fallback_channels(notification)
    versions = _published_versions(notification, extra_channels=fallbacks)
    targets = {
        user_id: _targets(recipients[user_id], [*notification.channels, *fallbacks])
        for user_id in user_ids
        if user_id in recipients
    }
    suppressed = _suppressed(notification, targets.values())
    over_cap = limits.capped(notification, user_ids, now)
    repeated = limits.duplicates(notification, user_ids, now)

    deliveries: list[Delivery] = []
    for user_id in user_ids:
        recipient = recipients.get(user_id)
        if recipient is None:
            deliveries += [
                _delivery(notification, user_id, channel, DeliveryState.FAILED, "unknown user")
                for channel in notification.channels
            ]
            continue
        defer_until = _quiet_until(recipient, notification, now)
        for channel in notification.channels:
            reason = _opted_out(recipient, notification, channel)
            channel_targets = [t for t in targets[user_id] if t.channel == channel]
            if reason is None and not channel_targets:
                reason = {
                    Channel.EMAIL: "no email address",
                    Channel.SMS: "no phone number",
                    Channel.PUSH: "no active device",
                }[Channel(channel)]
            if reason is not None:
                state = DeliveryState.SUPPRESSED if "opted out" in reason else DeliveryState.FAILED
                fallback: list[Delivery] = []
                if channel == Channel.PUSH and not channel_targets:
                    fallback = _fallback(
                        notification, recipient, targets[user_id], fallbacks, versions,
                        suppressed=suppressed, defer_until=defer_until,
                        reason="fallback: no active push device",
                    )  # fmt: skip
                if fallback:
                    reason += f"; fell back to {fallback[0].channel}"
                deliveries += [_delivery(notification, user_id, channel, state, reason), *fallback]
                continue
            if (user_id, channel) in repeated:
                window = notification.notification_type.dedup_window
                deliveries.append(
                    _delivery(
                        notification,
                        user_id,
                        channel,
                        DeliveryState.DEDUPLICATED,
                        f"same content sent within {window} s",
                    )
                )
                continue
            if (user_id, channel) in over_cap:
                deliveries.append(
                    _delivery(
                        notification,
                        user_id,
                        channel,
                        DeliveryState.SUPPRESSED,
                        over_cap[(user_id, channel)],
                    )
                )
                continue
            deliveries += [
                _target_delivery(
                    notification,
                    recipient,
                    target,
                    versions,
                    suppressed=suppressed,
                    defer_until=defer_until,
                )
                for target in channel_targets
            ]
    return deliveries


def _target_delivery(
    notification: Notification,
    recipient: Recipient,
    target: _Target,
    versions: dict[tuple[str, str], TemplateVersion],
    *,
    suppressed: set[tuple[str, str]],
    defer_until: datetime | None,
    reason: str = "",
) -> Delivery:
    """The delivery to one address: queued, or why not (invalid, suppressed, quiet hours)."""
    channel = target.channel
    delivery = _delivery(
        notification,
        recipient.user_id,
        channel,
        DeliveryState.QUEUED,
        reason,
        recipient=recipient,
        target=target,
        version=_version_for(versions, channel, recipient.locale),
    )
    key = _key(target)
    delivery.address_key = key or ""
    if key is None:
        delivery.state = DeliveryState.FAILED
        delivery.reason = f"invalid {channel} address"
    elif (channel, key) in suppressed:
        delivery.state = DeliveryState.SUPPRESSED
        delivery.reason = "address is on the suppression list"
    elif defer_until is not None:
        delivery.state = DeliveryState.DEFERRED
        delivery.reason = "quiet hours"
        delivery.next_attempt_at = defer_until
    return delivery


def _fallback_channels(notification: Notification) -> list[str]:
    """The type's fallback channels for push, less those the notification targets anyway."""
    if Channel.PUSH not in notification.channels:
        return []
    return [
        channel
        for channel in notification.notification_type.fallback_channels
        if channel not in notification.channels
    ]


def _fallback(
    notification: Notification,
    recipient: Recipient,
    targets: list[_Target],
    fallbacks: list[str],
    versions: dict[tuple[str, str], TemplateVersion],
    *,
    suppressed: set[tuple[str, str]],
    defer_until: datetime | None,
    reason: str,
) -> list[Delivery]:
    """Push cannot reach the user: deliveries on the first fallback channel the user allows
    and can be reached on (an address, not suppressed); empty when there is none. Caps and
    deduplication are not counted again for the fallback channel."""
    for channel in fallbacks:
        if _opted_out(recipient, notification, channel) is not None:
            continue
        deliveries = [
            _target_delivery(
                notification,
                recipient,
                target,
                versions,
                suppressed=suppressed,
                defer_until=defer_until,
                reason=reason,
            )
            for target in targets
            if target.channel == channel
        ]
        if any(d.state in (DeliveryState.QUEUED, DeliveryState.DEFERRED) for d in deliveries):
            return deliveries
    return []


def plan_push_fallback(
    *, notification_id: UUID, user_id: str, now: datetime, batch_size: int
) -> list[Batch]:
    """The user's last active push device died while a push was on its way: send on the
    type's fallback channel instead, once. Returns the batches staged.

    The notification row is locked, so two dead tokens of one user reported at once (two
    devices) fall back once; a user who already has a delivery on a fallback channel for
    this notification, or who still has an active device, gets nothing more.
    """
    with transaction.atomic():
        notification = (
            Notification.objects.select_for_update(of=("self",))
            .select_related("notification_type")
            .get(pk=notification_id)
        )
        fallbacks = list(notification.notification_type.fallback_channels)
        recipient = (
            Recipient.objects.filter(tenant_id=notification.tenant_id, user_id=user_id)
            .select_related("quiet_hours")
            .prefetch_related("channel_preferences", "type_preferences")
            .first()
        )
        if (
            not fallbacks
            or recipient is None
            or recipient.devices.filter(active=True).exists()
            or Delivery.objects.filter(
                notification=notification, user_id=user_id, channel__in=fallbacks
            ).exists()
        ):
            return []
        targets = _targets(recipient, fallbacks)
        deliveries = _fallback(
            notification, recipient, targets, fallbacks,
            _published_versions(notification, extra_channels=fallbacks),
            suppressed=_suppressed(notification, [targets]),
            defer_until=_quiet_until(recipient, notification, now),
            reason="fallback: the last push device's token died",
        )  # fmt: skip
        Delivery.objects.bulk_create(deliveries)
        DeliveryEvent.objects.bulk_create(
            DeliveryEvent(
                delivery=d, state=d.state, code="fallback", reason=d.reason, occurred_at=now
            )
            for d in deliveries
        )
        batches = split_batches(
            ((d.lane, d.channel, d.pk) for d in deliveries if d.state == DeliveryState.QUEUED),
            batch_size=batch_size,
        )
        relay.stage_deliveries(batches)
    return batches


def _delivery(
    notification: Notification,
    user_id: str,
    channel: str,
    state: str,
    reason: str,
    *,
    recipient: Recipient | None = None,
    target: _Target | None = None,
    version: TemplateVersion | None = None,
) -> Delivery:
    return Delivery(
        tenant_id=notification.tenant_id,
        notification=notification,
        recipient=recipient,
        user_id=user_id,
        channel=channel,
        destination=target.destination if target else "",
        device_id=target.device_id if target else None,
        template_version=version,
        state=state,
        reason=reason,
        expires_at=notification.expires_at,
        lane=lane_for(
            priority=notification.priority, category=notification.notification_type.category
        ),
        accepted_at=notification.created_at,
    )


def _targets(recipient: Recipient, channels: Iterable[str]) -> list[_Target]:
    targets: list[_Target] = []
    for channel in channels:
        if channel == Channel.EMAIL and recipient.email:
            targets.append(_Target(channel, recipient.email, None))
        elif channel == Channel.SMS and recipient.phone:
            targets.append(_Target(channel, recipient.phone, None))
        elif channel == Channel.PUSH:
            targets += [
                _Target(channel, device.token, device.pk)
                for device in recipient.devices.all()
                if device.active
            ]
    return targets


def _key(target: _Target) -> str | None:
    """The suppression key of the target's address; None if the stored address is invalid."""
    try:
        return suppression_key(channel=target.channel, address=target.destination)
    except InvalidAddress:
        return None


def _suppressed(
    notification: Notification, targets: Iterable[list[_Target]]
) -> set[tuple[str, str]]:
    keys = {key for user_targets in targets for t in user_targets if (key := _key(t))}
    return set(
        Suppression.objects.filter(tenant_id=notification.tenant_id, address__in=keys).values_list(
            "channel", "address"
        )
    )


def _opted_out(recipient: Recipient, notification: Notification, channel: str) -> str | None:
    """Why the user does not want ``channel`` for this type, or None if they do."""
    type_id = notification.notification_type_id
    for pref in recipient.type_preferences.all():
        if pref.notification_type_id == type_id and pref.channel == channel:
            key = notification.notification_type.key
            return None if pref.enabled else f"opted out of {channel} for {key}"
    for channel_pref in recipient.channel_preferences.all():
        if channel_pref.channel == channel:
            return None if channel_pref.enabled else f"opted out of {channel}"
    return None


def _quiet_until(
    recipient: Recipient, notification: Notification, now: datetime
) -> datetime | None:
    if notification.priority == Priority.CRITICAL:
        return None  # critical bypasses quiet hours (SPEC guarantee 8)
    quiet = getattr(recipient, "quiet_hours", None)
    if quiet is None:
        return None
    return quiet_until(QuietWindow(start=quiet.start, end=quiet.end, timezone=quiet.timezone), now)


def _published_versions(
    notification: Notification, *, extra_channels: Iterable[str] = ()
) -> dict[tuple[str, str], TemplateVersion]:
    versions = content_selectors.published_versions(
        notification_type_id=notification.notification_type_id,
        variant=notification.template_variant,
        channels=[*notification.channels, *extra_channels],
    )
    return {(v.template.channel, v.template.locale): v for v in versions}


def _version_for(
    versions: dict[tuple[str, str], TemplateVersion], channel: str, locale: str
) -> TemplateVersion | None:
    """The user's locale, else its language (pt-BR → pt), else English, else any."""
    for candidate in (locale, locale.split("-")[0], "en"):
        if (channel, candidate) in versions:
            return versions[(channel, candidate)]
    return next((v for (ch, _), v in versions.items() if ch == channel), None)
