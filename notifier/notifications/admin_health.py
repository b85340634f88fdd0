"""The admin's "Provider health" page: every configured provider's circuit breaker and rate
limit, and a button to reset a breaker.

Mounted under ``admin/provider-health/`` by ``notifier/urls.py``; both views go through
``admin.site.admin_view`` (staff only, CSRF-checked). Resetting a breaker lets calls through to
a provider the breaker judged unhealthy, so it takes the right to change deliveries, like
replaying them does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from notifier.notifications.breakers import BreakerStatus, breakers, configured_providers
from notifier.notifications.throttle import throttle

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProviderHealth:
    breaker: BreakerStatus
    opened_at: datetime | None
    retry_at: datetime | None
    limit: dict[str, float]  # ProviderThrottle.status; empty without a limit
    blocked_until: datetime | None


def _moment(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, tz=UTC) if epoch else None


def provider_health() -> list[ProviderHealth]:
    """Each configured provider's breaker and throttle, by name."""
    rows = []
    for status in breakers().statuses(configured_providers()):
        limit = throttle().status(status.provider)
        rows.append(
            ProviderHealth(
                breaker=status,
                opened_at=_moment(status.opened_at),
                retry_at=_moment(status.retry_at),
                limit=limit,
                blocked_until=_moment(limit.get("blocked_until")),
            )
        )
    return rows


def can_reset(request: HttpRequest) -> bool:
    return request.user.has_perm("notifications.change_delivery")


def provider_health_view(request: HttpRequest) -> HttpResponse:
    context = {
        **admin.site.each_context(request),
        "title": "Provider health",
        "rows": provider_health(),
        "can_reset": can_reset(request),
    }
    return TemplateResponse(request, "admin/provider_health.html", context)


def reset_breaker_view(request: HttpRequest) -> HttpResponse:
    """POST only: close one provider's breaker and forget its counts."""
    if request.method != "POST":
        return HttpResponse(status=405, headers={"Allow": "POST"})
    if not can_reset(request):
        raise PermissionDenied
    provider = request.POST.get("provider", "")
    if provider not in configured_providers():
        messages.error(request, "No such provider.")
    else:
        breakers().reset(provider)
        logger.info("breaker of %s reset by user %s", provider, request.user.pk)
        messages.success(request, f"The breaker of {provider} was reset: it is closed.")
    return HttpResponseRedirect(reverse("provider-health"))


urlpatterns = [
    path("", admin.site.admin_view(provider_health_view), name="provider-health"),
    path("reset/", admin.site.admin_view(reset_breaker_view), name="provider-health-reset"),
]
