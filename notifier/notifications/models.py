"""Accepted notifications, the deliveries they fan out to, and their history.

A ``Notification`` is one accepted API request. A ``Delivery`` is one recipient × channel ×
destination: the unit that is sent, retried and tracked. Every state change of a delivery is
a ``DeliveryEvent``, so support can answer "why didn't it arrive?" from the rows alone.
"""

from __future__ import annotations

import uuid

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import HashIndex
from django.db import models

from notifier.content.models import NotificationType, TemplateVersion
from notifier.core.enums import Channel, Priority
from notifier.recipients.models import Device, Recipient
from notifier.tenancy.models import Tenant


class NotificationStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SCHEDULED = "scheduled", "Scheduled"
    PLANNED = "planned", "Planned"
    CANCELLED = "cancelled", "Cancelled"
    EXPIRED = "expired", "Expired"


class Notification(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Indexed as the first column of notification_recent.
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="notifications", db_index=False
    )
    notification_type = models.ForeignKey(
        NotificationType, on_delete=models.PROTECT, related_name="notifications"
    )
    priority = models.CharField(max_length=8, choices=Priority.choices)
    status = models.CharField(
        max_length=16, choices=NotificationStatus.choices, default=NotificationStatus.QUEUED
    )
    channels = ArrayField(
        models.CharField(max_length=8, choices=Channel.choices),
        help_text="Channels targeted: the request's, else the type's defaults.",
    )
    channels_requested = models.BooleanField(
        default=False, help_text="True when the caller named the channels explicitly."
    )
    template_variant = models.SlugField(max_length=64, default="default", db_index=False)
    template_vars = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    request_id = models.CharField(max_length=255, blank=True)
    content_hash = models.CharField(
        max_length=64, blank=True, help_text="SHA-256 of type, variant and variables (dedup)"
    )
    recipient_count = models.PositiveIntegerField()
    scheduled_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="notification_recent"),
            # The admin lists all tenants' notifications newest first.
            models.Index(fields=["-created_at"], name="notification_created"),
        ]

    def __str__(self) -> str:
        return f"{self.notification_type.key} {self.id}"


class NotificationRecipient(models.Model):
    """One ``user_id`` a notification was addressed to, in request order.

    Kept apart from deliveries because a notification is accepted before it is planned: the
    user history and status endpoints read it from the moment of the 202.
    """

    # Both indexed as the first column of a composite index below.
    notification = models.ForeignKey(
        Notification, on_delete=models.CASCADE, related_name="recipients", db_index=False
    )
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", db_index=False)
    user_id = models.CharField(max_length=255)
    position = models.PositiveIntegerField()
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["notification", "user_id"], name="notification_recipient_unique"
            )
        ]
        indexes = [
            # GET /users/{user_id}/notifications: newest first, per tenant.
            models.Index(
                fields=["tenant", "user_id", "-created_at"], name="notif_recipient_history"
            ),
            # Admin search by user_id across tenants.
            models.Index(fields=["user_id"], name="notif_recipient_user_id"),
        ]

    def __str__(self) -> str:
        return self.user_id


class DeliveryState(models.TextChoices):
    """A delivery's life; transitions only move forward (``notifier.notifications.states``)."""

    QUEUED = "queued", "Queued"
    DEFERRED = "deferred", "Deferred"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    READ = "read", "Read"
    FAILED = "failed", "Failed"
    BOUNCED = "bounced", "Bounced"
    SUPPRESSED = "suppressed", "Suppressed"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"
    DEDUPLICATED = "deduplicated", "Deduplicated"
    UNKNOWN = "unknown", "Unknown outcome"


class Delivery(models.Model):
    """One recipient × channel × destination."""

    # Both indexed as the first column of a composite index below: a single-column index
    # of their own would only cost every insert (planning writes a row per recipient).
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", db_index=False)
    notification = models.ForeignKey(
        Notification, on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    recipient = models.ForeignKey(
        Recipient, on_delete=models.SET_NULL, null=True, blank=True, related_name="deliveries"
    )
    user_id = models.CharField(max_length=255)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    destination = models.CharField(max_length=4096, help_text="Email, E.164 number or token")
    address_key = models.CharField(
        max_length=4096,
        blank=True,
        help_text="The destination as the suppression list keys it (recipients.services."
        "suppression_key), so the send-time recheck is an equality, not a re-normalization.",
    )
    device = models.ForeignKey(
        Device, on_delete=models.SET_NULL, null=True, blank=True, related_name="deliveries"
    )
    template_version = models.ForeignKey(
        TemplateVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    state = models.CharField(
        max_length=16, choices=DeliveryState.choices, default=DeliveryState.QUEUED
    )
    # Per-user order (SPEC guarantee 10): within a lane, a user's deliveries on a channel leave
    # in the order their notifications were accepted; the claim refuses a row while an earlier
    # one is still queued or sending (see sending._CLAIM_SQL).
    lane = models.CharField(max_length=16, default="transactional")
    accepted_at = models.DateTimeField(
        null=True, blank=True, help_text="When its notification was accepted: the order key"
    )
    reason = models.CharField(max_length=255, blank=True, help_text="Why it ended this way")
    provider = models.CharField(max_length=32, blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # Claims: a worker owns a delivery until lease_expires_at; the fencing counter rises with
    # every claim so a worker whose lease lapsed cannot record over its successor.
    fence = models.PositiveIntegerField(default=0)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Set, per claim, just before the provider calls: a lease that lapses without it means the
    # worker died before calling, so the delivery is queued again rather than `unknown`.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # A critical delivery whose outcome is unknown may be sent once more (SPEC guarantee 3);
    # this counts those resends so the claim can refuse a second one.
    unknown_resends = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    queued_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(fields=["notification", "user_id"], name="delivery_notification_user"),
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(state="deferred"),
                name="delivery_due_deferred",
            ),
            models.Index(
                fields=["lease_expires_at"],
                condition=models.Q(state="sending"),
                name="delivery_leased",
            ),
            models.Index(fields=["provider", "provider_message_id"], name="delivery_provider_id"),
            # Support searches by user id or address ("why didn't ada@… get it?"). A hash
            # index, because a push token or web push URL may exceed a btree entry's limit.
            models.Index(fields=["user_id"], name="delivery_user_id"),
            # Planning counts a user's recent deliveries per channel (caps, dedup).
            models.Index(
                fields=["tenant", "user_id", "channel", "-queued_at"], name="delivery_user_recent"
            ),
            HashIndex(fields=["destination"], name="delivery_destination"),
            # The claim's per-user order check: earlier deliveries still queued, sending or
            # waiting (deferred) for order.
            models.Index(
                fields=["tenant", "user_id", "channel", "lane", "accepted_at"],
                condition=models.Q(state__in=["queued", "sending", "deferred"]),
                name="delivery_user_pending",
            ),
            models.Index(
                fields=["-failed_at"],
                condition=models.Q(state__in=["failed", "bounced", "unknown"]),
                name="delivery_failed_recent",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel} to {self.user_id} ({self.state})"


class DeliveryEvent(models.Model):
    """One change of a delivery's state, or one provider report about it."""

    # Indexed as the first column of delivery_event_time.
    delivery = models.ForeignKey(
        Delivery, on_delete=models.CASCADE, related_name="events", db_index=False
    )
    state = models.CharField(max_length=16, choices=DeliveryState.choices)
    provider = models.CharField(max_length=32, blank=True)
    code = models.CharField(max_length=64, blank=True, help_text="Provider or internal code")
    reason = models.TextField(blank=True)
    detail = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField()

    class Meta:
        ordering = ["occurred_at", "id"]
        indexes = [models.Index(fields=["delivery", "occurred_at"], name="delivery_event_time")]

    def __str__(self) -> str:
        return f"{self.state} at {self.occurred_at:%Y-%m-%d %H:%M:%S}"


class OutboxMessage(models.Model):
    """A message to publish to the broker, committed with the rows it points at.

    Topics: ``notification.accepted`` (plan it) and ``deliveries.queued`` (send a batch). The
    relay publishes unpublished rows with publisher confirms and marks them; payloads are ids
    only, never personal data. Published rows are purged after a day.
    """

    topic = models.CharField(max_length=100)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    available_at = models.DateTimeField()
    published_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["available_at", "id"],
                condition=models.Q(published_at__isnull=True),
                name="outbox_unpublished",
            ),
            # The hourly purge of rows published more than a day ago.
            models.Index(
                fields=["published_at"],
                condition=models.Q(published_at__isnull=False),
                name="outbox_published",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.topic} #{self.pk}"


class IdempotencyRecord(models.Model):
    """The outcome of a request made with an idempotency key, replayed for 24 hours.

    Written in the transaction that creates the notification, so the record exists exactly
    when the notification does.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the request")
    response_status = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    notification = models.ForeignKey(
        Notification, on_delete=models.CASCADE, null=True, related_name="+"
    )
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "key"], name="idempotency_unique_key")
        ]

    def __str__(self) -> str:
        return self.key
