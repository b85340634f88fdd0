"""Planning's reads and writes, in bulk and without a model instance per user or delivery.

A chunk of users is read with one query per table (recipients with their quiet hours,
devices, type and channel preferences), and a chunk's deliveries and their first events are
written by one statement: a fan-out plans thousands of users a second, where Django's
``prefetch_related`` (a queryset cloned per user) and ``bulk_create`` (a model instance per
row) cost more than the decisions themselves.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, time

from django.db import connection
from django.utils import timezone

from notifier.core.enums import Channel
from notifier.notifications.models import DeliveryState, Notification
from notifier.notifications.routing import lane_for
from notifier.recipients.addresses import stored_key
from notifier.recipients.models import (
    ChannelPreference,
    Device,
    Recipient,
    Suppression,
    TypePreference,
)


@dataclass(frozen=True, slots=True)
class Target:
    """One address of a user on one channel: an email, a phone number or a device's token."""

    channel: str
    destination: str
    device_id: int | None
    key: str | None  # the suppression key; None if the stored address is invalid


@dataclass(frozen=True, slots=True)
class Addressee:
    """What planning reads of a user: their addresses on the channels it may use (in their
    order), their preferences for this notification's type and their quiet hours."""

    pk: int
    user_id: str
    locale: str
    targets: list[Target]
    type_preferences: dict[str, bool]  # by channel
    channel_preferences: dict[str, bool]
    quiet_hours: tuple[time, time, str] | None  # start, end, time zone


@dataclass(frozen=True, slots=True)
class PlannedDelivery:
    """A delivery as planning decides it; the notification's columns are added when written."""

    user_id: str
    channel: str
    state: str
    reason: str
    recipient_id: int | None = None
    destination: str = ""
    address_key: str = ""
    device_id: int | None = None
    template_version_id: int | None = None
    next_attempt_at: datetime | None = None


def read_addressees(
    notification: Notification, user_ids: Sequence[str], channels: Sequence[str]
) -> dict[str, Addressee]:
    """The tenant's users among ``user_ids``, by user id, with their addresses on
    ``channels``: one query per table for all of them."""
    rows = list(
        Recipient.objects.filter(
            tenant_id=notification.tenant_id, user_id__in=user_ids
        ).values_list(
            "pk",
            "user_id",
            "locale",
            "email",
            "email_key",
            "phone",
            "phone_key",
            "quiet_hours__start",
            "quiet_hours__end",
            "quiet_hours__timezone",
        )
    )
    pks = [row[0] for row in rows]
    devices: dict[int, list[Target]] = defaultdict(list)
    if Channel.PUSH in channels:
        for recipient_id, device_id, token in (  # in the order they were registered
            Device.objects.filter(recipient_id__in=pks, active=True)
            .order_by("pk")
            .values_list("recipient_id", "pk", "token")
        ):
            key = _key(Channel.PUSH, token, stored=None)
            devices[recipient_id].append(Target(Channel.PUSH, token, device_id, key))
    type_preferences: dict[int, dict[str, bool]] = defaultdict(dict)
    for recipient_id, channel, enabled in TypePreference.objects.filter(
        recipient_id__in=pks, notification_type_id=notification.notification_type_id
    ).values_list("recipient_id", "channel", "enabled"):
        type_preferences[recipient_id][channel] = enabled
    channel_preferences: dict[int, dict[str, bool]] = defaultdict(dict)
    for recipient_id, channel, enabled in ChannelPreference.objects.filter(
        recipient_id__in=pks
    ).values_list("recipient_id", "channel", "enabled"):
        channel_preferences[recipient_id][channel] = enabled

    addressees: dict[str, Addressee] = {}
    for pk, user_id, locale, email, email_key, phone, phone_key, start, end, zone in rows:
        targets: list[Target] = []
        for channel in channels:
            if channel == Channel.EMAIL and email:
                targets.append(Target(channel, email, None, _key(channel, email, email_key)))
            elif channel == Channel.SMS and phone:
                targets.append(Target(channel, phone, None, _key(channel, phone, phone_key)))
            elif channel == Channel.PUSH:
                targets += devices[pk]
        addressees[user_id] = Addressee(
            pk=pk,
            user_id=user_id,
            locale=locale,
            targets=targets,
            type_preferences=type_preferences[pk],
            channel_preferences=channel_preferences[pk],
            quiet_hours=(start, end, zone) if zone is not None else None,
        )
    return addressees


def _key(channel: str, address: str, stored: str | None) -> str | None:
    """The suppression key of an address: the one stored with it, else computed now; None if
    the address is invalid."""
    if stored is None:
        stored = stored_key(channel=channel, address=address)
    return stored or None


def suppressed_keys(
    notification: Notification, recipients: Iterable[Addressee]
) -> set[tuple[str, str]]:
    """The (channel, key) pairs among these users' addresses that the tenant suppressed."""
    keys = {t.key for recipient in recipients for t in recipient.targets if t.key}
    return set(
        Suppression.objects.filter(tenant_id=notification.tenant_id, address__in=keys).values_list(
            "channel", "address"
        )
    )


# One statement writes a chunk's deliveries (with the notification's own columns and the
# model's defaults) and the first event of each, and answers the queued ones as
# (lane, channel, id) in planning order: the rows come out of the JSON array in order, so their
# ids rise in that order. The rows travel as one JSON document: PostgreSQL parses it faster
# than psycopg2 quotes (and PostgreSQL parses) one array element per value.
_WRITE_SQL = """
WITH planned AS (
    INSERT INTO notifications_delivery (
        tenant_id, notification_id, lane, accepted_at, expires_at,
        user_id, channel, state, reason, recipient_id, destination, address_key, device_id,
        template_version_id, next_attempt_at, failed_at,
        provider, provider_message_id, attempts, fence, unknown_resends, last_error,
        queued_at, updated_at
    )
    SELECT %(tenant_id)s, %(notification_id)s::uuid, %(lane)s, %(accepted_at)s, %(expires_at)s,
           d.user_id, d.channel, d.state, d.reason, d.recipient_id, d.destination,
           d.address_key, d.device_id, d.template_version_id, d.next_attempt_at,
           CASE WHEN d.state = ANY(%(ended)s) THEN %(failed_at)s::timestamptz END,
           '', '', 0, 0, 0, '',
           %(written_at)s, %(written_at)s
    FROM ROWS FROM (json_to_recordset(%(deliveries)s::json) AS (
        user_id text, channel text, state text, reason text, recipient_id bigint,
        destination text, address_key text, device_id bigint, template_version_id bigint,
        next_attempt_at timestamptz
    )) WITH ORDINALITY AS d
    ORDER BY d.ordinality
    RETURNING id, lane, channel, state, reason
), events AS (
    INSERT INTO notifications_deliveryevent (
        delivery_id, state, provider, code, reason, detail, occurred_at
    )
    SELECT id, state, '', %(code)s, reason, '{}', %(now)s FROM planned ORDER BY id
)
SELECT lane, channel, id FROM planned WHERE state = %(queued)s ORDER BY id
"""
_COLUMNS = [field.name for field in fields(PlannedDelivery)]


def write_deliveries(
    notification: Notification,
    deliveries: list[PlannedDelivery],
    *,
    now: datetime,
    code: str,
    failed_at: datetime | None,
) -> list[tuple[str, str, int]]:
    """Insert ``deliveries`` with an event ``code`` each; failed, suppressed and deduplicated
    ones get ``failed_at``. Returns the queued ones as (lane, channel, id), in order."""
    if not deliveries:
        return []
    rows = [{name: getattr(d, name) for name in _COLUMNS} for d in deliveries]
    written_at = timezone.now()  # what auto_now_add and auto_now would write
    with connection.cursor() as cursor:
        cursor.execute(
            _WRITE_SQL,
            {
                "tenant_id": notification.tenant_id,
                "notification_id": str(notification.pk),
                "lane": lane_for(
                    priority=notification.priority,
                    category=notification.notification_type.category,
                ),
                "accepted_at": notification.created_at,
                "expires_at": notification.expires_at,
                "ended": [
                    DeliveryState.FAILED,
                    DeliveryState.SUPPRESSED,
                    DeliveryState.DEDUPLICATED,
                ],
                "failed_at": failed_at,
                "written_at": written_at,
                "deliveries": json.dumps(rows, default=_isoformat),
                "code": code,
                "now": now,
                "queued": DeliveryState.QUEUED,
            },
        )
        return [(lane, channel, pk) for lane, channel, pk in cursor.fetchall()]


def _isoformat(value: object) -> str:
    """Datetimes for JSON, to the microsecond (DjangoJSONEncoder drops the last three digits)."""
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
