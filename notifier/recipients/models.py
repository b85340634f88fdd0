"""The people notifications go to, how to reach them, and what they agreed to receive."""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.db.models.functions import Upper

from notifier.core.enums import Channel
from notifier.recipients.addresses import stored_key
from notifier.tenancy.models import Tenant


class Recipient(models.Model):
    """A tenant's user, known by the tenant's own ``user_id``."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="recipients")
    user_id = models.CharField(max_length=255)
    email = models.CharField(max_length=320, blank=True)
    phone = models.CharField(max_length=16, blank=True, help_text="E.164, e.g. +14155550123")
    timezone = models.CharField(max_length=64, default="UTC", help_text="IANA time zone")
    locale = models.CharField(max_length=35, default="en", help_text="BCP 47 language tag")
    attributes = models.JSONField(default=dict, blank=True)
    # The addresses' suppression keys (addresses.stored_key), written by save() with them so
    # that planning a fan-out does not normalize every address again. "" means no address or
    # an invalid one; NULL means not known: a row written without save() (COPY, or an UPDATE
    # of the address alone, which a trigger of migration 0003 catches), and planning computes
    # the key itself.
    email_key = models.CharField(max_length=4096, null=True, blank=True, editable=False)  # noqa: DJ001
    phone_key = models.CharField(max_length=16, null=True, blank=True, editable=False)  # noqa: DJ001
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user_id"], name="recipient_unique_user_id")
        ]
        indexes = [
            # Support staff search by address (admin), case-insensitively for email.
            models.Index(Upper("email"), name="recipient_email_upper"),
            models.Index(fields=["phone"], name="recipient_phone"),
            # Admin search by user_id across tenants.
            models.Index(fields=["user_id"], name="recipient_user_id"),
            GinIndex(fields=["attributes"], name="recipient_attributes_gin"),
        ]

    def __str__(self) -> str:
        return self.user_id

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save; the suppression key of each address saved is saved with it."""
        fields = kwargs.get("update_fields")
        if fields is None or "email" in fields:
            self.email_key = stored_key(channel=Channel.EMAIL, address=self.email)
        if fields is None or "phone" in fields:
            self.phone_key = stored_key(channel=Channel.SMS, address=self.phone)
        if fields is not None:
            keys = {f"{name}_key" for name in ("email", "phone") if name in fields}
            kwargs["update_fields"] = {*fields, *keys}
        super().save(*args, **kwargs)


class Platform(models.TextChoices):
    IOS = "ios", "iOS"
    ANDROID = "android", "Android"
    WEB = "web", "Web"


class Device(models.Model):
    """A push token. Deactivated, not deleted, when a provider reports it dead."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="devices")
    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="devices")
    token = models.TextField()
    platform = models.CharField(max_length=16, choices=Platform.choices)
    app = models.CharField(max_length=255, blank=True, help_text="Bundle or application id")
    active = models.BooleanField(default=True)
    last_seen_at = models.DateTimeField()
    deactivated_at = models.DateTimeField(null=True, blank=True)
    deactivation_reason = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # A token identifies one app install; if another user registers it, it moves.
            models.UniqueConstraint(fields=["tenant", "token"], name="device_unique_token")
        ]
        indexes = [models.Index(fields=["recipient", "active"], name="device_recipient_active")]

    def __str__(self) -> str:
        return f"{self.platform} …{self.token[-6:]}"


class ChannelPreference(models.Model):
    """A user's switch for a whole channel. No row means the channel is allowed."""

    recipient = models.ForeignKey(
        Recipient, on_delete=models.CASCADE, related_name="channel_preferences"
    )
    channel = models.CharField(max_length=8, choices=Channel.choices)
    enabled = models.BooleanField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["recipient", "channel"], name="channel_pref_unique")
        ]

    def __str__(self) -> str:
        return f"{self.channel}: {'on' if self.enabled else 'off'}"


class TypePreference(models.Model):
    """A user's switch for one notification type on one channel; overrides the channel's."""

    recipient = models.ForeignKey(
        Recipient, on_delete=models.CASCADE, related_name="type_preferences"
    )
    notification_type = models.ForeignKey(
        "content.NotificationType", on_delete=models.CASCADE, related_name="+"
    )
    channel = models.CharField(max_length=8, choices=Channel.choices)
    enabled = models.BooleanField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["recipient", "notification_type", "channel"], name="type_pref_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel}: {'on' if self.enabled else 'off'}"


class QuietHours(models.Model):
    """A daily window in the user's time zone when only critical notifications go out."""

    recipient = models.OneToOneField(
        Recipient, on_delete=models.CASCADE, related_name="quiet_hours"
    )
    start = models.TimeField()
    end = models.TimeField(help_text="May be earlier than start: the window spans midnight.")
    timezone = models.CharField(max_length=64, help_text="IANA time zone")

    class Meta:
        verbose_name_plural = "quiet hours"

    def __str__(self) -> str:
        return f"{self.start:%H:%M}–{self.end:%H:%M} {self.timezone}"


class SuppressionReason(models.TextChoices):
    HARD_BOUNCE = "hard_bounce", "Hard bounce"
    COMPLAINT = "complaint", "Spam complaint"
    UNSUBSCRIBE = "unsubscribe", "Unsubscribed"
    STOP = "stop", "Replied STOP"
    MANUAL = "manual", "Added manually"


class Suppression(models.Model):
    """An address on a channel that must not be sent to, and why.

    ``address`` holds the matching key: a casefolded email, an E.164 number or a push token.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="suppressions")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    address = models.CharField(max_length=4096)
    reason = models.CharField(max_length=16, choices=SuppressionReason.choices)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "channel", "address"], name="suppression_unique_address"
            )
        ]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="suppression_recent")]

    def __str__(self) -> str:
        return f"{self.channel}:{self.address} ({self.reason})"
