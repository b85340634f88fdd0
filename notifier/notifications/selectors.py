"""Reads of notifications and deliveries, shaped for the API and admin."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from notifier.notifications.models import Delivery, Notification, NotificationRecipient
from notifier.tenancy.models import Tenant

DELIVERY_TIMESTAMPS = ("queued_at", "sent_at", "delivered_at", "read_at", "failed_at")


@dataclass(frozen=True, slots=True)
class HistoryPage:
    results: list[dict[str, Any]]
    page: int
    limit: int
    has_more: bool


def get_notification(*, tenant: Tenant, notification_id: UUID) -> Notification | None:
    return (
        Notification.objects.select_related("notification_type")
        .filter(tenant=tenant, id=notification_id)
        .first()
    )


def notification_status(notification: Notification) -> dict[str, Any]:
    """The notification with, per user and per channel, each delivery's state and times."""
    user_ids = notification.recipients.order_by("position").values_list("user_id", flat=True)
    by_user = _deliveries_by_user(Delivery.objects.filter(notification=notification))
    return {
        **_summary(notification),
        "users": [
            {"user_id": user_id, "channels": by_user.get(user_id, {})} for user_id in user_ids
        ],
    }


def user_history(*, tenant: Tenant, user_id: str, page: int, limit: int) -> HistoryPage:
    """Notifications addressed to ``user_id``, newest first, with this user's deliveries.

    Fetches one row more than asked to know whether a next page exists, instead of counting
    a history that may hold millions of rows.
    """
    offset = (page - 1) * limit
    rows = list(
        NotificationRecipient.objects.filter(tenant=tenant, user_id=user_id)
        .select_related("notification__notification_type")
        .order_by("-created_at", "-id")[offset : offset + limit + 1]
    )
    has_more = len(rows) > limit
    notifications = [row.notification for row in rows[:limit]]
    deliveries = _deliveries_by_notification(
        Delivery.objects.filter(notification__in=notifications, user_id=user_id)
    )
    results = [{**_summary(n), "channels": deliveries.get(n.id, {})} for n in notifications]
    return HistoryPage(results=results, page=page, limit=limit, has_more=has_more)


def _summary(notification: Notification) -> dict[str, Any]:
    return {
        "notification_id": str(notification.id),
        "notification_type": notification.notification_type.key,
        "priority": notification.priority,
        "status": notification.status,
        "channels_targeted": list(notification.channels),
        "template_id": notification.template_variant,
        "metadata": notification.metadata,
        "created_at": notification.created_at,
        "scheduled_at": notification.scheduled_at,
        "expires_at": notification.expires_at,
    }


def _delivery_view(delivery: Delivery) -> dict[str, Any]:
    view: dict[str, Any] = {
        "delivery_id": delivery.pk,
        "status": delivery.state,
        "reason": delivery.reason,
    }
    view.update({name: getattr(delivery, name) for name in DELIVERY_TIMESTAMPS})
    return view


def _deliveries_by_user(
    deliveries: Iterable[Delivery],
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(dict)
    for delivery in sorted(deliveries, key=lambda d: d.pk):
        grouped[delivery.user_id].setdefault(delivery.channel, []).append(_delivery_view(delivery))
    return grouped


def _deliveries_by_notification(
    deliveries: Iterable[Delivery],
) -> dict[UUID, dict[str, list[dict[str, Any]]]]:
    grouped: dict[UUID, dict[str, list[dict[str, Any]]]] = defaultdict(dict)
    for delivery in sorted(deliveries, key=lambda d: d.pk):
        grouped[delivery.notification_id].setdefault(delivery.channel, []).append(
            _delivery_view(delivery)
        )
    return grouped
