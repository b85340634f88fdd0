"""What can be sent: notification types, and their templates per channel and locale."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models

from notifier.core.enums import Category, Channel, Priority
from notifier.tenancy.models import Tenant


class NotificationType(models.Model):
    """A kind of notification a tenant sends (``order_shipped``), with its defaults."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="notification_types")
    key = models.SlugField(max_length=100, help_text="Referenced by the API, e.g. order_shipped")
    name = models.CharField(max_length=200, blank=True)
    category = models.CharField(max_length=16, choices=Category.choices)
    default_priority = models.CharField(
        max_length=8, choices=Priority.choices, default=Priority.NORMAL
    )
    default_channels = ArrayField(models.CharField(max_length=8, choices=Channel.choices))
    fallback_channels = ArrayField(
        models.CharField(max_length=8, choices=Channel.choices),
        default=list,
        blank=True,
        help_text="When push cannot reach a user (no active device, or the last one's token "
        "died), the first of these channels the user allows and can be reached on is used "
        "instead, in this order. Empty: no fallback.",
    )
    cap_limit = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="At most this many of this type per user and channel per cap period; "
        "empty: only the channel and category caps apply. Critical bypasses caps.",
    )
    cap_period = models.PositiveIntegerField(
        null=True, blank=True, help_text="Seconds; the window of cap_limit"
    )
    dedup_window = models.PositiveIntegerField(
        default=0,
        help_text="Seconds during which the same content to the same user and channel is "
        "sent once; 0 turns deduplication off.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "key"], name="notification_type_unique_key")
        ]

    def __str__(self) -> str:
        return self.key


class Template(models.Model):
    """The editable draft of a message for one type × channel × locale × variant.

    Editing changes the draft only. Publishing snapshots it into an immutable
    ``TemplateVersion``; sends use the published version and each delivery records it.
    For push, ``subject`` is the title; for SMS only ``body`` is used; email uses all three.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="templates")
    notification_type = models.ForeignKey(
        NotificationType, on_delete=models.CASCADE, related_name="templates"
    )
    channel = models.CharField(max_length=8, choices=Channel.choices)
    locale = models.CharField(max_length=35, default="en")
    variant = models.SlugField(max_length=64, default="default")
    subject = models.TextField(blank=True, help_text="Email subject or push title")
    body = models.TextField(help_text="SMS text, push body or email plain-text part")
    html = models.TextField(blank=True, help_text="Email HTML part")
    variables = ArrayField(
        models.CharField(max_length=100),
        default=list,
        blank=True,
        help_text="Variables the template needs; a send without them is refused.",
    )
    sample_vars = models.JSONField(
        default=dict, blank=True, help_text="Values used for previews and the publish test render"
    )
    published_version = models.ForeignKey(
        "TemplateVersion", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    archived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["notification_type", "channel", "locale", "variant"],
                condition=models.Q(archived_at__isnull=True),
                name="template_unique_slot",
            )
        ]

    def __str__(self) -> str:
        return f"{self.notification_type.key}/{self.channel}/{self.locale}/{self.variant}"


class TemplateVersion(models.Model):
    """An immutable published snapshot of a template. Old versions are kept forever."""

    template = models.ForeignKey(Template, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    subject = models.TextField(blank=True)
    body = models.TextField()
    html = models.TextField(blank=True)
    variables = ArrayField(models.CharField(max_length=100), default=list)
    published_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["template", "version"], name="template_version_unique")
        ]
        ordering = ["-version"]

    def __str__(self) -> str:
        return f"{self.template} v{self.version}"
