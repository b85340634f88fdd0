"""Per-user caps and deduplication, decided at planning time.

Caps bound how many notifications a user receives per channel in a period: a channel cap
(``NOTIFIER_CHANNEL_CAPS``, e.g. 10 push an hour), a category cap (``NOTIFIER_CATEGORY_CAPS``,
e.g. 3 marketing a day) and the type's own cap. Critical notifications bypass caps (SPEC
guarantee 8). Deduplication sends the same content (type, variant and variables) to a user on a
channel once per the type's ``dedup_window``. Both count distinct notifications with a live
delivery (queued, on its way or sent) in the window, with one aggregate query per rule for all
users of the notification. They are best effort under concurrency: two notifications planned
at the same instant may both pass a cap that admits one more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count

from notifier.core.enums import Priority
from notifier.notifications.models import Delivery, DeliveryState, Notification

LIVE_STATES = (
    DeliveryState.QUEUED,
    DeliveryState.DEFERRED,
    DeliveryState.SENDING,
    DeliveryState.SENT,
    DeliveryState.DELIVERED,
    DeliveryState.READ,
    DeliveryState.UNKNOWN,
)


@dataclass(frozen=True, slots=True)
class CapRule:
    description: str
    channels: tuple[str, ...]
    limit: int
    period: int  # seconds
    scope: dict[str, Any]  # extra filter on the counted deliveries


def cap_rules(notification: Notification) -> list[CapRule]:
    if notification.priority == Priority.CRITICAL:
        return []
    notification_type = notification.notification_type
    channels = tuple(notification.channels)
    rules = [
        CapRule(
            f"{cap['limit']} {channel} per {_period(cap['period'])}",
            (channel,),
            cap["limit"],
            cap["period"],
            {},
        )
        for channel, cap in settings.NOTIFIER_CHANNEL_CAPS.items()
        if channel in channels
    ]
    category_cap = settings.NOTIFIER_CATEGORY_CAPS.get(notification_type.category)
    if category_cap:
        rules.append(
            CapRule(
                f"{category_cap['limit']} {notification_type.category} per "
                f"{_period(category_cap['period'])}",
                channels,
                category_cap["limit"],
                category_cap["period"],
                {"notification__notification_type__category": notification_type.category},
            )
        )
    if notification_type.cap_limit is not None and notification_type.cap_period:
        rules.append(
            CapRule(
                f"{notification_type.cap_limit} {notification_type.key} per "
                f"{_period(notification_type.cap_period)}",
                channels,
                notification_type.cap_limit,
                notification_type.cap_period,
                {"notification__notification_type_id": notification_type.pk},
            )
        )
    return rules


def capped(
    notification: Notification, user_ids: Sequence[str], now: datetime
) -> dict[tuple[str, str], str]:
    """(user_id, channel) pairs over a cap, each with the cap that stops it."""
    over: dict[tuple[str, str], str] = {}
    for rule in cap_rules(notification):
        usage = (
            _recent(notification, user_ids, rule.channels, now - timedelta(seconds=rule.period))
            .filter(**rule.scope)
            .values("user_id", "channel")
            .annotate(sent=Count("notification_id", distinct=True))
        )
        for row in usage:
            if row["sent"] >= rule.limit:
                over.setdefault(
                    (row["user_id"], row["channel"]), f"cap reached: {rule.description}"
                )
    return over


def duplicates(
    notification: Notification, user_ids: Sequence[str], now: datetime
) -> set[tuple[str, str]]:
    """(user_id, channel) pairs that already got this content within the dedup window."""
    window = notification.notification_type.dedup_window
    if not window or not notification.content_hash:
        return set()
    return set(
        _recent(notification, user_ids, notification.channels, now - timedelta(seconds=window))
        .filter(notification__content_hash=notification.content_hash)
        .values_list("user_id", "channel")
    )


def _recent(
    notification: Notification, user_ids: Sequence[str], channels: Sequence[str], since: datetime
) -> Any:
    return Delivery.objects.filter(
        tenant_id=notification.tenant_id,
        user_id__in=user_ids,
        channel__in=channels,
        queued_at__gte=since,
        state__in=LIVE_STATES,
    ).exclude(notification_id=notification.pk)


def _period(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return unit if count == 1 else f"{count} {unit}s"
    return f"{seconds} s"
