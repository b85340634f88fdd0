"""Circuit breakers and outbound rate limits around the provider calls of the pipeline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from channels.registry import registry
from notifier.content.models import NotificationType
from notifier.notifications import sending
from notifier.notifications.breakers import BreakerState, breakers
from notifier.notifications.models import Delivery, DeliveryState
from notifier.tenancy.models import Tenant
from tests.factories import RecipientFactory
from tests.pipeline.conftest import accept_and_plan, email_chain

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("alerts")]


def queued_emails(tenant: Tenant, count: int) -> list[int]:
    """One email to each of ``count`` users (one user's would also wait for order)."""
    ids = []
    for n in range(count):
        RecipientFactory.create(tenant=tenant, user_id=f"u{n}", email=f"u{n}@example.com")
        notification_id = accept_and_plan(
            tenant, user_ids=[f"u{n}"], channels=["email"], code=str(n)
        )
        ids.append(Delivery.objects.get(notification_id=notification_id).pk)
    return ids


def test_an_open_breaker_bounds_the_calls_to_a_dead_provider(
    tenant: Tenant, alerts: NotificationType, configure_providers: Callable[[dict[str, Any]], None]
) -> None:
    # given a primary that is down and a healthy secondary
    configure_providers(email_chain(("primary", {"DOWN": True}), ("secondary", {})))

    # when ten emails are sent one after another
    for delivery_id in queued_emails(tenant, 10):
        sending.send_deliveries(delivery_ids=[delivery_id])

    # then the primary was called five times (its breaker opened), and everything went out
    assert len(registry.get("email", "primary").attempts) == 5  # type: ignore[attr-defined]
    assert breakers().status("primary").state == BreakerState.OPEN
    assert set(Delivery.objects.values_list("state", "provider")) == {
        (DeliveryState.SENT, "secondary")
    }
    last = Delivery.objects.order_by("-pk").first()
    assert last is not None
    tried = last.events.get(state=DeliveryState.SENT).detail["tried"]
    assert tried == ["primary: circuit breaker open"]


def test_a_rate_limited_provider_defers_the_rest_without_spending_attempts(
    tenant: Tenant, configure_providers: Callable[[dict[str, Any]], None], settings: Any
) -> None:
    # given one call per 10 s allowed, and no waiting for a token
    configure_providers(email_chain(("only", {})))
    settings.NOTIFIER_PROVIDER_RATE_LIMITS = {"only": {"RATE": 0.1, "BURST": 1}}
    settings.NOTIFIER_THROTTLE_MAX_WAIT = 0.0
    ids = queued_emails(tenant, 4)

    # when a batch of four is sent
    sending.send_deliveries(delivery_ids=ids)

    # then one went, three wait for a token with their attempts intact
    deliveries = Delivery.objects.filter(pk__in=ids)
    assert sorted(deliveries.values_list("state", flat=True)) == sorted(
        [DeliveryState.SENT] + [DeliveryState.DEFERRED] * 3
    )
    for delivery in deliveries.filter(state=DeliveryState.DEFERRED):
        assert delivery.attempts == 0
        assert delivery.next_attempt_at is not None
        assert delivery.next_attempt_at > timezone.now()
        assert delivery.reason.startswith("retry: RateLimited: outbound rate limit")
    assert len(registry.get("email", "only").attempts) == 1  # type: ignore[attr-defined]
