"""Provider reports we have processed, so that a replayed webhook is applied once.

Providers retry a webhook until they get a 2xx, and may send the same one twice anyway
(Twilio, SNS, SendGrid: at-least-once). Each report's provider event id is stored under a
unique constraint in the transaction that applies it; a replay finds the row and changes
nothing.
Rows hold ids and statuses only, never a phone number or an email address.
"""

from __future__ import annotations

from django.db import models


class ProviderEvent(models.Model):
    provider = models.CharField(max_length=32, help_text="twilio, ses or sendgrid")
    event_id = models.CharField(
        max_length=255,
        help_text=(
            "Twilio: MessageSid:MessageStatus (inbound: inbound:MessageSid); SNS: MessageId; "
            "SendGrid: sg_event_id"
        ),
    )
    kind = models.CharField(max_length=32, help_text="status, inbound, Delivery, Bounce, ...")
    delivery_id = models.BigIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=32, blank=True, help_text="What applying it did")
    detail = models.JSONField(default=dict, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "event_id"], name="provider_event_unique_id"
            )
        ]
        indexes = [models.Index(fields=["-received_at"], name="provider_event_recent")]

    def __str__(self) -> str:
        return f"{self.provider} {self.kind} {self.event_id}"
