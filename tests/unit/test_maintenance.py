"""Maintenance: expired idempotency records are purged; live ones stay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from notifier.celery import app
from notifier.notifications.models import IdempotencyRecord
from notifier.notifications.services import purge_expired_idempotency_records
from notifier.tenancy.models import Tenant


@pytest.mark.django_db
def test_purges_only_expired_records_in_batches(tenant: Tenant) -> None:
    # given 5 expired records and 2 live ones
    now = timezone.now()
    IdempotencyRecord.objects.bulk_create(
        IdempotencyRecord(
            tenant=tenant,
            key=f"k{i}",
            fingerprint="f",
            response_status=202,
            response_body={},
            created_at=now - timedelta(days=2),
            expires_at=now - timedelta(seconds=1) if i < 5 else now + timedelta(hours=1),
        )
        for i in range(7)
    )

    # when
    purged = purge_expired_idempotency_records(now=now, batch_size=2)

    # then
    assert purged == 5
    assert sorted(IdempotencyRecord.objects.values_list("key", flat=True)) == ["k5", "k6"]


def test_purge_is_scheduled_hourly_on_beat() -> None:
    # as a worker does at start: import every app's tasks module
    app.loader.import_default_modules()
    entry = app.conf.beat_schedule["purge-idempotency-records"]

    assert entry["task"] in app.tasks
    assert entry["schedule"] == 3600.0
