"""Reads of recipients and their preferences shared by the API and admin."""

from __future__ import annotations

from notifier.recipients.models import Recipient
from notifier.recipients.services import PreferenceDocument, QuietHoursWindow


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
