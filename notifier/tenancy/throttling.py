"""Per-tenant request quotas: a token bucket per tenant, shared by every web process."""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from notifier.core.ratelimit import buckets
from notifier.tenancy.auth import ApiPrincipal
from notifier.tenancy.models import Tenant


def tenant_quota(tenant: Tenant) -> tuple[float, int] | None:
    """(requests per second, burst) for ``tenant``; its own values, else the defaults."""
    default: dict[str, float] | None = settings.NOTIFIER_API_RATE_LIMIT
    if tenant.api_rate_limit is not None:
        rate = tenant.api_rate_limit
    elif default is not None:
        rate = default["RATE"]
    else:
        return None
    if tenant.api_burst is not None:
        burst = tenant.api_burst
    elif default is not None:
        burst = int(default["BURST"])
    else:
        burst = math.ceil(rate * 2)
    return float(rate), burst


class TenantRateThrottle(BaseThrottle):
    """Answer 429 with Retry-After once a tenant exceeds its quota.

    Runs after authentication, so an unauthenticated request is refused with 401 and never
    spends a tenant's tokens.
    """

    def __init__(self) -> None:
        self._retry_after = 0.0

    def allow_request(self, request: Request, view: Any) -> bool:
        principal = request.user
        if not isinstance(principal, ApiPrincipal):
            return True
        quota = tenant_quota(principal.tenant)
        if quota is None:
            return True
        rate, burst = quota
        decision = buckets().take(f"tenant:{principal.tenant.pk}", rate=rate, burst=burst)
        self._retry_after = decision.retry_after
        return decision.allowed

    def wait(self) -> float:
        # Whole seconds, rounded up: DRF writes Retry-After with %d, and 0 would invite an
        # immediate retry that is bound to fail.
        return float(max(1, math.ceil(self._retry_after)))
