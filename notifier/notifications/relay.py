"""The outbox relay: publishes committed outbox rows to RabbitMQ, at least once.

A row is claimed with ``FOR UPDATE SKIP LOCKED``, so any number of relays (and the
``on_commit`` fast path) share the table without publishing a row twice at the same time.
It is marked published in the transaction that claimed it, after the broker confirmed the
publish (``confirm_publish``). A crash between confirm and commit publishes the row again on
the next pass; consumers are idempotent, so that costs a redundant message, never a send.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from notifier.notifications.models import OutboxMessage

logger = logging.getLogger(__name__)

NOTIFICATION_ACCEPTED = "notification.accepted"
# Publishing must not hang a request or the relay on a broker that accepts TCP but answers
# nothing; a publish that fails is retried by the next relay pass.
PUBLISH_TIMEOUT = 5.0


def _publish(row: OutboxMessage) -> None:
    from notifier.notifications.tasks import plan_notification

    if row.topic != NOTIFICATION_ACCEPTED:
        raise ValueError(f"unknown outbox topic {row.topic!r}")
    # kombu's Producer.publish takes both timeouts; celery-types does not know them yet.
    plan_notification.apply_async(  # type: ignore[call-arg]
        kwargs={
            "notification_id": row.payload["notification_id"],
            "lane": row.payload.get("lane", "transactional"),
        },
        retry=False,
        timeout=PUBLISH_TIMEOUT,
        confirm_timeout=PUBLISH_TIMEOUT,
    )


def relay_outbox(*, now: datetime | None = None, batch_size: int = 200, **filters: Any) -> int:
    """Publish up to ``batch_size`` due outbox rows; returns how many were published.

    Rows that fail to publish stay unpublished with their error, for the next pass.
    """
    now = now or timezone.now()
    with transaction.atomic():
        rows = list(
            OutboxMessage.objects.select_for_update(skip_locked=True)
            .filter(published_at__isnull=True, available_at__lte=now, **filters)
            .order_by("available_at", "id")[:batch_size]
        )
        published: list[int] = []
        for row in rows:
            try:
                _publish(row)
            except Exception as exc:  # noqa: BLE001 - any publish failure leaves the row for later
                logger.warning("outbox row %s not published: %s", row.pk, type(exc).__name__)
                OutboxMessage.objects.filter(pk=row.pk).update(
                    attempts=F("attempts") + 1, last_error=f"{type(exc).__name__}: {exc}"[:500]
                )
                break  # the broker is likely down: leave the rest for the next pass
            published.append(row.pk)
        if published:
            OutboxMessage.objects.filter(pk__in=published).update(
                published_at=timezone.now(), attempts=F("attempts") + 1
            )
    return len(published)


def publish_now(outbox_id: int) -> None:
    """The ``on_commit`` fast path: publish one row right after its transaction commits.

    Never raises: the API has already answered 202 from the commit, and the relay publishes
    whatever this misses.
    """
    try:
        relay_outbox(batch_size=1, pk=outbox_id)
    except Exception:  # noqa: BLE001 - the relay catches up; the caller must not fail
        logger.warning("on-commit publish of outbox row %s failed; the relay will retry", outbox_id)
