"""Admin for processed provider reports: read-only, written by the webhooks alone."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from notifier.webhooks.models import ProviderEvent


@admin.register(ProviderEvent)
class ProviderEventAdmin(admin.ModelAdmin):
    list_display = ("received_at", "provider", "kind", "event_id", "delivery_id", "outcome")
    list_filter = ("provider", "kind", "outcome")
    # Exact matches on the unique index (provider, event_id) and on the delivery id.
    search_fields = ("=event_id", "=delivery_id")
    ordering = ("-received_at",)
    readonly_fields = [field.name for field in ProviderEvent._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
