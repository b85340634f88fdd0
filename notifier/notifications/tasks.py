"""Celery tasks of the notifications app. Thin: each makes one call into the services."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from notifier.notifications import services


@shared_task(name="notify.maintenance.purge_idempotency_records")
def purge_idempotency_records() -> int:
    return services.purge_expired_idempotency_records(now=timezone.now())
