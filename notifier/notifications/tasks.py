"""Celery tasks of the notifications app. Thin: each makes one call into the services.

Tasks take ids and re-read their rows, so a redelivered message is harmless. Routing is the
router's job (``routing.route_task``): a delivery task names its lane, never a queue.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from notifier.celery import consumed_channels
from notifier.core import unsafe
from notifier.notifications import delivering, relay, services, sweeps

# PostgreSQL unreachable (or restarting) is an outage, not a poison message: the task's
# message waits in the broker's delayed delivery, with exponential backoff and full jitter up
# to a minute, instead of dead-lettering. Past MAX_OUTAGE_RETRIES (about an hour) it does
# dead-letter, where it can be replayed. Every other exception still dead-letters at once.
MAX_OUTAGE_RETRIES = 60
RETRY_DURING_DATABASE_OUTAGE: dict[str, Any] = (
    {}
    if unsafe.without("outage_retry")  # the fault harness's negative control only
    else {
        "autoretry_for": (OperationalError, InterfaceError),
        "retry_backoff": 1,
        "retry_backoff_max": 60,
        "retry_jitter": True,
        "max_retries": MAX_OUTAGE_RETRIES,
    }
)
# Beat runs its sweeps again at the next tick: a failed or timed-out tick is logged, and its
# message acked rather than dead-lettered or requeued.
SWEEP: dict[str, Any] = {"acks_on_failure": True, "acks_on_timeout": True}


@shared_task(name="notify.plan.notification", **RETRY_DURING_DATABASE_OUTAGE)
def plan_notification(notification_id: str, lane: str = "transactional") -> None:
    delivering.plan_and_send(
        notification_id=notification_id,  # type: ignore[arg-type]
        batch_size=settings.NOTIFIER_DELIVERY_BATCH,
        sends_critical=consumed_channels(lanes=("critical",)),
    )


def _deliver(delivery_ids: list[int], resend: bool) -> dict[str, int]:
    return delivering.send_batch(
        delivery_ids=delivery_ids, batch_size=settings.NOTIFIER_DELIVERY_BATCH, resend=resend
    )


@shared_task(name="notify.deliver.push", **RETRY_DURING_DATABASE_OUTAGE)
def deliver_push(delivery_ids: list[int], lane: str, resend: bool = False) -> dict[str, int]:
    return _deliver(delivery_ids, resend)


@shared_task(name="notify.deliver.email", **RETRY_DURING_DATABASE_OUTAGE)
def deliver_email(delivery_ids: list[int], lane: str, resend: bool = False) -> dict[str, int]:
    return _deliver(delivery_ids, resend)


@shared_task(name="notify.deliver.sms", **RETRY_DURING_DATABASE_OUTAGE)
def deliver_sms(delivery_ids: list[int], lane: str, resend: bool = False) -> dict[str, int]:
    return _deliver(delivery_ids, resend)


@shared_task(name="notify.schedule.release_due", **SWEEP)
def release_due_deliveries() -> None:
    sweeps.release_due_deliveries(
        now=timezone.now(), limit=5000, batch_size=settings.NOTIFIER_DELIVERY_BATCH
    )


@shared_task(name="notify.maintenance.recover_leases", **SWEEP)
def recover_expired_leases() -> None:
    sweeps.recover_expired_leases(
        now=timezone.now(), limit=1000, batch_size=settings.NOTIFIER_DELIVERY_BATCH
    )


@shared_task(name="notify.outbox.relay", **SWEEP)
def relay_outbox() -> int:
    """Beat's safety net: publish due rows the on-commit path missed, and scheduled ones."""
    total = 0
    while published := relay.relay_outbox():
        total += published
    return total


@shared_task(name="notify.maintenance.purge_idempotency_records", **SWEEP)
def purge_idempotency_records() -> int:
    return services.purge_expired_idempotency_records(now=timezone.now())


@shared_task(name="notify.maintenance.purge_outbox", **SWEEP)
def purge_outbox() -> int:
    return relay.purge_published(now=timezone.now(), older_than=timedelta(days=1))
