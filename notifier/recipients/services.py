"""Writes for recipients, devices, preferences and suppressions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time
from typing import Any

from django.db import transaction
from django.utils import timezone

from notifier.content.models import NotificationType

# Re-exported: the API, admin and webhooks key suppressions through the service layer.
from notifier.recipients.addresses import suppression_key as suppression_key
from notifier.recipients.models import (
    ChannelPreference,
    Device,
    QuietHours,
    Recipient,
    Suppression,
    TypePreference,
)
from notifier.tenancy.models import Tenant


class UnknownNotificationTypes(ValueError):
    def __init__(self, keys: list[str]) -> None:
        super().__init__("unknown notification types: " + ", ".join(keys))
        self.keys = keys


@dataclass(frozen=True, slots=True)
class QuietHoursWindow:
    start: time
    end: time
    timezone: str


@dataclass(frozen=True, slots=True)
class PreferenceDocument:
    """A user's preferences in the API's shape.

    ``channels`` and ``notification_types`` hold explicit choices only: a channel missing from
    them follows the next rule down (type → channel → allowed).
    """

    channels: Mapping[str, bool]
    quiet_hours: QuietHoursWindow | None
    notification_types: Mapping[str, Mapping[str, bool]]
    language: str


def upsert_recipient(
    *, tenant: Tenant, user_id: str, fields: Mapping[str, Any]
) -> tuple[Recipient, bool]:
    """Create or update a recipient; ``fields`` are already validated. Returns (row, created)."""
    return Recipient.objects.update_or_create(tenant=tenant, user_id=user_id, defaults=dict(fields))


@transaction.atomic
def register_device(
    *, recipient: Recipient, token: str, platform: str, app: str = ""
) -> tuple[Device, bool]:
    """Register a push token for ``recipient``; re-registering reactivates it.

    A token already registered to another user of the tenant moves to this one: the token
    names an app install, and the install now belongs to whoever signed in last.
    """
    now = timezone.now()
    device, created = Device.objects.select_for_update().get_or_create(
        tenant_id=recipient.tenant_id,
        token=token,
        defaults={"recipient": recipient, "platform": platform, "app": app, "last_seen_at": now},
    )
    if not created:
        device.recipient = recipient
        device.platform = platform
        device.app = app
        device.active = True
        device.last_seen_at = now
        device.deactivated_at = None
        device.deactivation_reason = ""
        device.save()
    return device, created


def unregister_device(*, recipient: Recipient, token: str) -> bool:
    """Remove a push token from ``recipient``. Returns False if it was not theirs."""
    deleted, _ = Device.objects.filter(recipient=recipient, token=token).delete()
    return deleted > 0


@transaction.atomic
def replace_preferences(*, recipient: Recipient, document: PreferenceDocument) -> None:
    """Replace every preference of ``recipient`` with ``document`` (PUT semantics)."""
    keys = sorted(document.notification_types)
    types = {
        t.key: t
        for t in NotificationType.objects.filter(tenant_id=recipient.tenant_id, key__in=keys)
    }
    unknown = [key for key in keys if key not in types]
    if unknown:
        raise UnknownNotificationTypes(unknown)

    ChannelPreference.objects.filter(recipient=recipient).delete()
    ChannelPreference.objects.bulk_create(
        ChannelPreference(recipient=recipient, channel=channel, enabled=enabled)
        for channel, enabled in document.channels.items()
    )
    TypePreference.objects.filter(recipient=recipient).delete()
    TypePreference.objects.bulk_create(
        TypePreference(
            recipient=recipient, notification_type=types[key], channel=channel, enabled=enabled
        )
        for key, channels in document.notification_types.items()
        for channel, enabled in channels.items()
    )
    QuietHours.objects.filter(recipient=recipient).delete()
    if document.quiet_hours is not None:
        QuietHours.objects.create(
            recipient=recipient,
            start=document.quiet_hours.start,
            end=document.quiet_hours.end,
            timezone=document.quiet_hours.timezone,
        )
    if document.language and document.language != recipient.locale:
        recipient.locale = document.language
        recipient.save(update_fields=["locale", "updated_at"])


def upsert_suppression(
    *, tenant: Tenant, channel: str, address: str, reason: str, note: str = ""
) -> tuple[Suppression, bool]:
    """Suppress ``address`` (already normalized) on ``channel``. Returns (row, created)."""
    return Suppression.objects.update_or_create(
        tenant=tenant, channel=channel, address=address, defaults={"reason": reason, "note": note}
    )


def remove_suppression(*, suppression: Suppression) -> None:
    suppression.delete()
