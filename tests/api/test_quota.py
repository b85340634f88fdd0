"""Per-tenant API quotas: 429 with Retry-After, shared through Redis, held when Redis is down."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings

from notifier.core import ratelimit
from notifier.tenancy.models import Tenant
from tests.brokers import free_port
from tests.factories import TenantFactory, client_for

URL = "/api/v1/users/someone/notifications"


@pytest.fixture
def quota(settings: Any) -> Iterator[None]:
    """The default quota on, under a Redis prefix of this test's own, removed afterwards."""
    prefix = f"notifier:test:{uuid.uuid4().hex}:"
    redis_url = django_settings.REDIS_URL  # a test may point REDIS_URL elsewhere meanwhile
    settings.NOTIFIER_RATE_LIMIT_PREFIX = prefix
    settings.NOTIFIER_API_RATE_LIMIT = {"RATE": 100.0, "BURST": 200}
    ratelimit.reset_buckets()
    yield
    ratelimit.reset_buckets()
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()


def limited_tenant(rate: float, burst: int) -> Tenant:
    return TenantFactory.create(api_rate_limit=rate, api_burst=burst)


@pytest.mark.django_db
@pytest.mark.usefixtures("quota")
class TestTenantQuota:
    def test_burst_is_served_then_429_with_retry_after(self) -> None:
        # given a tenant allowed 3 requests at once, refilling 1 per second
        client = client_for(limited_tenant(rate=1, burst=3), "read")

        # when
        statuses = [client.get(URL).status_code for _ in range(3)]
        refused = client.get(URL)

        # then
        assert statuses == [200, 200, 200]
        assert refused.status_code == 429
        assert refused.json()["code"] == "rate_limited"
        assert int(refused["Retry-After"]) >= 1

    def test_tokens_come_back_at_the_rate(self) -> None:
        client = client_for(limited_tenant(rate=5, burst=1), "read")
        assert client.get(URL).status_code == 200
        assert client.get(URL).status_code == 429

        time.sleep(0.3)

        assert client.get(URL).status_code == 200

    def test_one_tenant_spending_its_quota_leaves_others_alone(self) -> None:
        busy = client_for(limited_tenant(rate=1, burst=1), "read")
        other = client_for(TenantFactory.create(), "read")
        busy.get(URL)

        assert busy.get(URL).status_code == 429
        assert other.get(URL).status_code == 200

    def test_every_process_shares_the_bucket_through_redis(self) -> None:
        # given a tenant that has spent its burst in this process
        tenant = limited_tenant(rate=0.01, burst=2)
        client = client_for(tenant, "read")
        client.get(URL)
        client.get(URL)

        # when another process (its own buckets object) asks for the same tenant
        other_process = ratelimit.TokenBuckets(
            django_settings.REDIS_URL, prefix=django_settings.NOTIFIER_RATE_LIMIT_PREFIX
        )
        decision = other_process.take(f"tenant:{tenant.pk}", rate=0.01, burst=2)

        # then it finds the bucket empty
        assert not decision.allowed
        assert decision.retry_after > 1

    def test_unauthenticated_requests_spend_no_tokens(self) -> None:
        from rest_framework.test import APIClient

        tenant = limited_tenant(rate=0.01, burst=1)
        for _ in range(5):
            assert APIClient().get(URL).status_code == 401

        assert client_for(tenant, "read").get(URL).status_code == 200


@pytest.mark.django_db
@pytest.mark.usefixtures("quota")
def test_redis_unreachable_limits_hold_locally_without_slowing_requests(settings: Any) -> None:
    # given Redis unreachable
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    ratelimit.reset_buckets()
    client = client_for(limited_tenant(rate=0.01, burst=2), "read")

    # when
    started = time.monotonic()
    statuses = [client.get(URL).status_code for _ in range(4)]
    elapsed = time.monotonic() - started

    # then the quota still holds (per process) and no request waited on Redis for long
    assert statuses == [200, 200, 429, 429]
    assert elapsed < 2
