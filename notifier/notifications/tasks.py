"""Celery tasks of the notifications app. Thin: each makes one call into the services.

Tasks take ids and re-read their rows, so a redelivered message is harmless. Routing is the
router's job (``routing.route_task``): a delivery task names its lane, never a queue.
"""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from notifier.notifications import planning, relay, sending, services, sweeps


@shared_task(name="notify.plan.notification")
def plan_notification(notification_id: str, lane: str = "transactional") -> None:
    planning.plan_notification(
        notification_id=notification_id,  # type: ignore[arg-type]
        now=timezone.now(),
        batch_size=settings.NOTIFIER_DELIVERY_BATCH,
    )


def _deliver(delivery_ids: list[int], resend: bool) -> dict[str, int]:
    counts = sending.send_deliveries(delivery_ids=delivery_ids, resend=resend)
    # A user's next message, held back for order, follows its predecessor at once.
    sweeps.release_waiting(
        delivery_ids=delivery_ids, now=timezone.now(), batch_size=settings.NOTIFIER_DELIVERY_BATCH
    )
    return counts


@shared_task(name="notify.deliver.push")
def deliver_push(delivery_ids: list[int], lane: str, resend: bool = False) -> dict[str, int]:
    return _deliver(delivery_ids, resend)


@shared_task(name="notify.deliver.email")
def deliver_email(delivery_ids: list[int], lane: str, resend: bool = False) -> dict[str, int]:
    return _deliver(delivery_ids, resend)


@shared_task(name="notify.deliver.sms")
def deliver_sms(delivery_ids: list[int], lane: str, resend: bool = False) -> dict[str, int]:
    return _deliver(delivery_ids, resend)


@shared_task(name="notify.schedule.release_due")
def release_due_deliveries() -> None:
    sweeps.release_due_deliveries(
        now=timezone.now(), limit=5000, batch_size=settings.NOTIFIER_DELIVERY_BATCH
    )


@shared_task(name="notify.maintenance.recover_leases")
def recover_expired_leases() -> None:
    sweeps.recover_expired_leases(
        now=timezone.now(), limit=1000, batch_size=settings.NOTIFIER_DELIVERY_BATCH
    )


@shared_task(name="notify.outbox.relay")
def relay_outbox() -> int:
    """Beat's safety net: publish due rows the on-commit path missed, and scheduled ones."""
    total = 0
    while published := relay.relay_outbox():
        total += published
    return total


@shared_task(name="notify.maintenance.purge_idempotency_records")
def purge_idempotency_records() -> int:
    return services.purge_expired_idempotency_records(now=timezone.now())


@shared_task(name="notify.maintenance.purge_outbox")
def purge_outbox() -> int:
    return relay.purge_published(now=timezone.now(), older_than=timedelta(days=1))
