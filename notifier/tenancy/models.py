"""Tenants and their API keys. Every row of every other app belongs to one tenant."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models


class Scope(models.TextChoices):
    SEND = "send", "Send notifications, manage users, devices and preferences"
    READ = "read", "Read notifications, users and preferences"
    MANAGE = "manage", "Manage templates, notification types and suppressions"


class Tenant(models.Model):
    name = models.CharField(max_length=100, unique=True)
    api_rate_limit = models.FloatField(
        null=True,
        blank=True,
        help_text="API requests per second; empty means the NOTIFIER_API_RATE_LIMIT default.",
    )
    api_burst = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests allowed at once above the rate; empty: default."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class ApiKey(models.Model):
    """A hashed API key. The raw key is shown once, when it is created, and never stored.

    A key reads ``ntf_<prefix>_<secret>``: ``prefix`` finds the row through a unique index,
    and the SHA-256 of the whole key is compared in constant time. The secret carries 240 bits
    of entropy, so a fast hash is the right tool here (a slow password hash would only cost
    every request a few hundred milliseconds).
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    scopes = ArrayField(models.CharField(max_length=16, choices=Scope.choices))
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"ntf_{self.prefix}_… ({self.tenant.name})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
