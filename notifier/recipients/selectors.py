"""Reads of recipients and their preferences shared by the API and admin."""

from __future__ import annotations

from django.db.models import QuerySet

from channels.errors import InvalidAddress
from notifier.core.enums import Channel
from notifier.recipients.models import Recipient, Suppression
from notifier.recipients.services import PreferenceDocument, QuietHoursWindow, suppression_key
from notifier.tenancy.models import Tenant


def preferences_of(recipient: Recipient) -> PreferenceDocument:
    channels = {p.channel: p.enabled for p in recipient.channel_preferences.all()}
    types: dict[str, dict[str, bool]] = {}
    for pref in recipient.type_preferences.select_related("notification_type"):
        types.setdefault(pref.notification_type.key, {})[pref.channel] = pref.enabled
    quiet = getattr(recipient, "quiet_hours", None)
    return PreferenceDocument(
        channels=channels,
        quiet_hours=(
            QuietHoursWindow(start=quiet.start, end=quiet.end, timezone=quiet.timezone)
            if quiet
            else None
        ),
        notification_types=types,
        language=recipient.locale,
    )


def suppressions(
    *, tenant: Tenant, channel: str | None = None, address: str | None = None
) -> QuerySet[Suppression]:
    """The tenant's suppressions, newest first; ``address`` in any notation matches the stored
    key (casefolded email, E.164 number, token) on ``channel``, or on every channel."""
    rows = Suppression.objects.filter(tenant=tenant).order_by("-created_at", "-id")
    if channel is not None:
        rows = rows.filter(channel=channel)
    if address is not None:
        channels = [channel] if channel is not None else Channel.values
        rows = rows.filter(address__in={_matching_key(c, address) for c in channels})
    return rows


def _matching_key(channel: str, address: str) -> str:
    try:
        return suppression_key(channel=channel, address=address)
    except InvalidAddress:
        return address
