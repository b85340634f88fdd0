"""Planning: turn an accepted notification into deliveries, one per user × channel × address.

For each user the channels are resolved (the request's, else the type's defaults), then each
is checked against the user's preferences (type × channel, else channel), the suppression
list and quiet hours. Every outcome is a delivery row with a state and a reason, so support
can see why a channel was skipped. Rows are written in bulk, in the transaction that marks the
notification planned: planning twice (a redelivered message) finds it planned and does nothing.

Users are planned in chunks, so memory stays flat however many a notification has; each
chunk is read and written in bulk (``planning_rows``), with the addresses' suppression keys
stored with them (``Recipient.email_key``) rather than normalized again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from itertools import batched
from uuid import UUID

from django.db import transaction

from notifier.content import selectors as content_selectors
from notifier.content.models import TemplateVersion
from notifier.core.enums import Channel, Priority
from notifier.notifications import limits, relay
from notifier.notifications.models import (
    Delivery,
    DeliveryState,
    Notification,
    NotificationStatus,
)
from notifier.notifications.planning_rows import (
    Addressee,
    PlannedDelivery,
    Target,
    read_addressees,
    suppressed_keys,
    write_deliveries,
)
from notifier.notifications.quiet_hours import QuietWindow, quiet_until
from notifier.recipients.models import Device

# Users read, decided and written together. 1,000 (the API's most per request) plans a
# request's users with one set of queries; a larger notification goes 1,000 users at a time.
CHUNK_SIZE = 1000


@dataclass(frozen=True, slots=True)
class Batch:
    """Queued deliveries to enqueue together on one lane and channel."""

    lane: str
    channel: str
    delivery_ids: list[int]
    held_by: int | None = None
    """The outbox row of a batch staged for its planner to send (``hold``), else None."""


def plan_notification(
    *,
    notification_id: UUID,
    now: datetime,
    batch_size: int,
    chunk_size: int = CHUNK_SIZE,
    hold: Callable[[Batch], bool] | None = None,
) -> list[Batch]:
    """Create the deliveries of a queued notification and stage their messages; return the
    batches staged.

    Batches for which ``hold`` is true are the caller's to send once this returns: their
    outbox rows are held (``relay.stage_deliveries``' ``hold_for``) and named by the
    batches' ``held_by``.
    """
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
        fallbacks = _fallback_channels(notification)
        versions = _published_versions(notification, extra_channels=fallbacks)
        batches = _Batches(batch_size=batch_size)
        staged: list[Batch] = []
        in_order = notification.recipients.order_by("position").values_list("user_id", flat=True)
        # Beyond a chunk, a server-side cursor: never every user id in memory at once.
        user_ids: Iterable[str] = (
            in_order.iterator(chunk_size=chunk_size)
            if notification.recipient_count > chunk_size
            else in_order
        )
        for chunk in batched(user_ids, chunk_size):
            planned = _plan(notification, chunk, fallbacks, versions, now)
            queued = write_deliveries(notification, planned, now=now, code="planned", failed_at=now)
            # Their messages are outbox rows of this transaction: never queued rows without one.
            staged += _stage(batches.add(queued), hold)
        staged += _stage(batches.rest(), hold)
        notification.status = NotificationStatus.PLANNED
        notification.save(update_fields=["status"])
    return staged


def split_batches(deliveries: Iterable[tuple[str, str, int]], *, batch_size: int) -> list[Batch]:
    """Group (lane, channel, delivery id) into tasks' batches, keeping their order.

    Critical deliveries go one per task: each is sent the moment it arrives.
    """
    grouped: dict[tuple[str, str], list[int]] = defaultdict(list)
    for lane, channel, delivery_id in deliveries:
        grouped[(lane, channel)].append(delivery_id)
    batches = []
    for (lane, channel), ids in grouped.items():
        size = _size(lane, batch_size)
        batches += [
            Batch(lane=lane, channel=channel, delivery_ids=ids[start : start + size])
            for start in range(0, len(ids), size)
        ]
    return batches


def _size(lane: str, batch_size: int) -> int:
    return 1 if lane == "critical" else batch_size


class _Batches:
    """``split_batches`` fed one chunk at a time: each batch holds what ``split_batches`` over
    the whole notification would put in it; full ones are handed out as they fill."""

    def __init__(self, *, batch_size: int) -> None:
        self.batch_size = batch_size
        self.open: dict[tuple[str, str], list[int]] = {}

    def add(self, deliveries: Iterable[tuple[str, str, int]]) -> list[Batch]:
        full: list[Batch] = []
        for lane, channel, delivery_id in deliveries:
            ids = self.open.setdefault((lane, channel), [])
            ids.append(delivery_id)
            if len(ids) == _size(lane, self.batch_size):
                full.append(Batch(lane=lane, channel=channel, delivery_ids=ids))
                self.open[(lane, channel)] = []
        return full

    def rest(self) -> list[Batch]:
        batches = [
            Batch(lane=lane, channel=channel, delivery_ids=ids)
            for (lane, channel), ids in self.open.items()
            if ids
        ]
        self.open = {}
        return batches


HOLD_FOR = timedelta(seconds=15)
"""How long a held batch's outbox row waits for its planner to send it before the relay
publishes it anyway: longer than a send takes, short enough should the planner die."""


def _stage(batches: list[Batch], hold: Callable[[Batch], bool] | None) -> list[Batch]:
    held: list[Batch] = []
    rest: list[Batch] = []
    for batch in batches:
        (held if hold is not None and hold(batch) else rest).append(batch)
    relay.stage_deliveries(rest)
    outbox_ids = relay.stage_deliveries(held, hold_for=HOLD_FOR)
    return rest + [replace(batch, held_by=pk) for batch, pk in zip(held, outbox_ids, strict=True)]


def _plan(
    notification: Notification,
    user_ids: Sequence[str],
    fallbacks: list[str],
    versions: dict[tuple[str, str], TemplateVersion],
    now: datetime,
) -> list[PlannedDelivery]:
    recipients = read_addressees(notification, user_ids, [*notification.channels, *fallbacks])
    suppressed = suppressed_keys(notification, recipients.values())
    over_cap = limits.capped(notification, user_ids, now)
    repeated = limits.duplicates(notification, user_ids, now)

    deliveries: list[PlannedDelivery] = []
    for user_id in user_ids:
        recipient = recipients.get(user_id)
        if recipient is None:
            deliveries += [
                PlannedDelivery(user_id, channel, DeliveryState.FAILED, "unknown user")
                for channel in notification.channels
            ]
            continue
        defer_until = _quiet_until(recipient, notification, now)
        for channel in notification.channels:
            reason = _opted_out(recipient, notification, channel)
            channel_targets = [t for t in recipient.targets if t.channel == channel]
            if reason is None and not channel_targets:
                reason = {
                    Channel.EMAIL: "no email address",
                    Channel.SMS: "no phone number",
                    Channel.PUSH: "no active device",
                }[Channel(channel)]
            if reason is not None:
                state = DeliveryState.SUPPRESSED if "opted out" in reason else DeliveryState.FAILED
                fallback: list[PlannedDelivery] = []
                if channel == Channel.PUSH and not channel_targets:
                    fallback = _fallback(
                        notification, recipient, fallbacks, versions,
                        suppressed=suppressed, defer_until=defer_until,
                        reason="fallback: no active push device",
                    )  # fmt: skip
                if fallback:
                    reason += f"; fell back to {fallback[0].channel}"
                deliveries += [PlannedDelivery(user_id, channel, state, reason), *fallback]
                continue
            if (user_id, channel) in repeated:
                window = notification.notification_type.dedup_window
                deliveries.append(
                    PlannedDelivery(
                        user_id,
                        channel,
                        DeliveryState.DEDUPLICATED,
                        f"same content sent within {window} s",
                    )
                )
                continue
            if (user_id, channel) in over_cap:
                deliveries.append(
                    PlannedDelivery(
                        user_id, channel, DeliveryState.SUPPRESSED, over_cap[(user_id, channel)]
                    )
                )
                continue
            deliveries += [
                _target_delivery(
                    recipient, target, versions, suppressed=suppressed, defer_until=defer_until
                )
                for target in channel_targets
            ]
    return deliveries


def _target_delivery(
    recipient: Addressee,
    target: Target,
    versions: dict[tuple[str, str], TemplateVersion],
    *,
    suppressed: set[tuple[str, str]],
    defer_until: datetime | None,
    reason: str = "",
) -> PlannedDelivery:
    """The delivery to one address: queued, or why not (invalid, suppressed, quiet hours)."""
    channel = target.channel
    state, next_attempt_at = DeliveryState.QUEUED, None
    if target.key is None:
        state, reason = DeliveryState.FAILED, f"invalid {channel} address"
    elif (channel, target.key) in suppressed:
        state, reason = DeliveryState.SUPPRESSED, "address is on the suppression list"
    elif defer_until is not None:
        state, reason, next_attempt_at = DeliveryState.DEFERRED, "quiet hours", defer_until
    version = _version_for(versions, channel, recipient.locale)
    return PlannedDelivery(
        recipient.user_id,
        channel,
        state,
        reason,
        recipient_id=recipient.pk,
        destination=target.destination,
        address_key=target.key or "",
        device_id=target.device_id,
        template_version_id=version.pk if version is not None else None,
        next_attempt_at=next_attempt_at,
    )


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
    recipient: Addressee,
    fallbacks: list[str],
    versions: dict[tuple[str, str], TemplateVersion],
    *,
    suppressed: set[tuple[str, str]],
    defer_until: datetime | None,
    reason: str,
) -> list[PlannedDelivery]:
    """Push cannot reach the user: deliveries on the first fallback channel the user allows
    and can be reached on (an address, not suppressed); empty when there is none. Caps and
    deduplication are not counted again for the fallback channel."""
    for channel in fallbacks:
        if _opted_out(recipient, notification, channel) is not None:
            continue
        deliveries = [
            _target_delivery(
                recipient,
                target,
                versions,
                suppressed=suppressed,
                defer_until=defer_until,
                reason=reason,
            )
            for target in recipient.targets
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
        recipient = read_addressees(notification, [user_id], fallbacks).get(user_id)
        if (
            not fallbacks
            or recipient is None
            or Device.objects.filter(recipient_id=recipient.pk, active=True).exists()
            or Delivery.objects.filter(
                notification=notification, user_id=user_id, channel__in=fallbacks
            ).exists()
        ):
            return []
        deliveries = _fallback(
            notification, recipient, fallbacks,
            _published_versions(notification, extra_channels=fallbacks),
            suppressed=suppressed_keys(notification, [recipient]),
            defer_until=_quiet_until(recipient, notification, now),
            reason="fallback: the last push device's token died",
        )  # fmt: skip
        # failed_at stays empty here, as it always has for fallback deliveries.
        queued = write_deliveries(
            notification, deliveries, now=now, code="fallback", failed_at=None
        )
        batches = split_batches(queued, batch_size=batch_size)
        relay.stage_deliveries(batches)
    return batches


def _opted_out(recipient: Addressee, notification: Notification, channel: str) -> str | None:
    """Why the user does not want ``channel`` for this type, or None if they do."""
    enabled = recipient.type_preferences.get(channel)
    if enabled is not None:
        key = notification.notification_type.key
        return None if enabled else f"opted out of {channel} for {key}"
    enabled = recipient.channel_preferences.get(channel)
    if enabled is not None:
        return None if enabled else f"opted out of {channel}"
    return None


def _quiet_until(
    recipient: Addressee, notification: Notification, now: datetime
) -> datetime | None:
    if notification.priority == Priority.CRITICAL:
        return None  # critical bypasses quiet hours (SPEC guarantee 8)
    if recipient.quiet_hours is None:
        return None
    start, end, zone = recipient.quiet_hours
    return quiet_until(QuietWindow(start=start, end=end, timezone=zone), now)


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
