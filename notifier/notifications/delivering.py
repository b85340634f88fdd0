"""Sending a batch of deliveries and what follows it; a critical notification planned and sent
by one process.

A critical notification planned by a process that also consumes its deliveries' queues (the
critical pool does both) is sent by that process as soon as planning commits, instead of
through one more message: the broker hop, the publish's confirm and the queue's wait cost a
one-time password tens of milliseconds (docs/performance.md, isolation). Its outbox rows are
still committed with the deliveries, held back for ``planning.HOLD_FOR``, and discarded once
the batch is sent; if sending fails here they are published at once, and if the process dies
first the relay publishes them when the hold is over; the batch then goes the usual way. Either
way the claim admits one send per delivery (SPEC guarantee 3).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Collection, Sequence
from uuid import UUID

from django.utils import timezone

from notifier.notifications import planning, relay, sending, sweeps
from notifier.notifications.planning import Batch

logger = logging.getLogger(__name__)


def send_batch(
    *, delivery_ids: Sequence[int], batch_size: int, resend: bool = False
) -> dict[str, int]:
    """Send the deliveries still queued among ``delivery_ids``; then release each user's next
    message held back for order, which follows its predecessor at once. Returns a count per
    final state."""
    counts = sending.send_deliveries(delivery_ids=delivery_ids, resend=resend)
    sweeps.release_waiting(delivery_ids=delivery_ids, now=timezone.now(), batch_size=batch_size)
    return counts


def plan_and_send(
    *, notification_id: UUID, batch_size: int, sends_critical: Collection[str]
) -> list[Batch]:
    """Plan a notification (``planning.plan_notification``); its critical batches on the
    channels in ``sends_critical`` (those whose critical queues this process consumes) are
    sent here and now. Returns the batches staged.

    Critical batches hold one delivery each, so that each is sent the moment its message
    arrives; sent here, ``batch_size`` of them go together, their provider calls concurrent,
    instead of one after another.
    """

    def held(batch: Batch) -> bool:
        return batch.lane == "critical" and batch.channel in sends_critical

    batches = planning.plan_notification(
        notification_id=notification_id, now=timezone.now(), batch_size=batch_size, hold=held
    )
    for chunk in itertools.batched((b for b in batches if b.held_by is not None), batch_size):
        outbox_ids = [batch.held_by for batch in chunk if batch.held_by is not None]
        try:
            send_batch(
                delivery_ids=[pk for batch in chunk for pk in batch.delivery_ids],
                batch_size=batch_size,
            )
        except Exception:
            # Not the planning task's failure: its work is committed. The batches' messages,
            # published now, take over; a failure that repeats dead-letters as their own.
            logger.exception("critical batches of outbox rows %s not sent here", outbox_ids)
            relay.release(*outbox_ids)
        else:
            relay.discard(*outbox_ids)
    return batches
