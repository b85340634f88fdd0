"""Beat's sweeps of deliveries: release what is due, queue again what waited for a
predecessor, and recover the sends of lost workers.

Each claims its rows with ``SKIP LOCKED`` or a conditional UPDATE, so overlapping beat ticks
and workers never act on a row twice, and stages the messages of the rows it queues as outbox
rows of its own transaction (``relay.stage_deliveries``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction

from notifier.notifications import relay
from notifier.notifications.models import Delivery, DeliveryEvent, DeliveryState
from notifier.notifications.planning import Batch, split_batches
from notifier.notifications.sending import ORDER_WAIT_REASON

# Deliveries whose worker vanished mid-send (killed, partitioned, paused past its lease). If
# it had dispatched them, whether the provider got the message is unknown: they become
# `unknown`, never `queued`. If it died before dispatching them (claiming, rendering), no
# provider was called: they are queued again.
_EXPIRE_LEASES_SQL = """
UPDATE notifications_delivery
SET state = CASE WHEN dispatched_at IS NULL THEN 'queued' ELSE 'unknown' END,
    reason = CASE WHEN dispatched_at IS NULL
                  THEN 'worker lost before the send; queued again'
                  ELSE 'worker lost during the send; outcome unknown' END,
    updated_at = %(now)s
WHERE id IN (
  SELECT id FROM notifications_delivery
  WHERE state = 'sending' AND lease_expires_at <= %(now)s
  ORDER BY lease_expires_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING id, state, reason, lane, channel
"""

# Deliveries waiting for a predecessor among the given rows (same user, channel and lane):
# queued again once those have an outcome, in acceptance order. The claim checks order again.
_RELEASE_WAITING_SQL = """
UPDATE notifications_delivery w
SET state = 'queued', next_attempt_at = NULL, updated_at = %(now)s
WHERE w.id IN (
  SELECT waiting.id
  FROM notifications_delivery waiting
  JOIN notifications_delivery done
    ON done.tenant_id = waiting.tenant_id AND done.user_id = waiting.user_id
   AND done.channel = waiting.channel AND done.lane = waiting.lane
  WHERE done.id = ANY(%(ids)s)
    AND waiting.state = 'deferred' AND waiting.reason = %(waiting)s
  FOR UPDATE OF waiting SKIP LOCKED)
RETURNING w.id, w.lane, w.channel, w.accepted_at
"""


def release_due_deliveries(*, now: datetime, limit: int, batch_size: int) -> list[Batch]:
    """Move deferred deliveries whose time has come (quiet hours, retries, order waits) back
    to queued, staging their messages; returns the batches staged.

    Claimed with ``SKIP LOCKED`` so overlapping beat ticks never release a row twice.
    """
    with transaction.atomic():
        due = list(
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(state=DeliveryState.DEFERRED, next_attempt_at__lte=now)
            .order_by("next_attempt_at", "accepted_at", "id")[:limit]
        )
        if not due:
            return []
        Delivery.objects.filter(pk__in=[d.pk for d in due]).update(
            state=DeliveryState.QUEUED, next_attempt_at=None, updated_at=now
        )
        DeliveryEvent.objects.bulk_create(
            DeliveryEvent(delivery=d, state=DeliveryState.QUEUED, code="released", occurred_at=now)
            for d in due
        )
        batches = split_batches(((d.lane, d.channel, d.pk) for d in due), batch_size=batch_size)
        relay.stage_deliveries(batches)
    return batches


def release_waiting(*, delivery_ids: Sequence[int], now: datetime, batch_size: int) -> list[Batch]:
    """Queue again the deliveries held back by these (now settled) ones and stage their
    messages; return the batches staged.

    Called after a batch's outcomes are recorded, so a user's next message follows at once
    instead of at beat's next tick.
    """
    if not settings.NOTIFIER_ORDER_WINDOW:
        return []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            _RELEASE_WAITING_SQL,
            {"ids": list(delivery_ids), "now": now, "waiting": ORDER_WAIT_REASON},
        )
        released = sorted(cursor.fetchall(), key=lambda row: (row[3], row[0]))
        DeliveryEvent.objects.bulk_create(
            DeliveryEvent(
                delivery_id=pk, state=DeliveryState.QUEUED, code="released",
                reason="its predecessor was sent", occurred_at=now,
            )
            for pk, _lane, _channel, _accepted in released
        )  # fmt: skip
        batches = split_batches(
            ((lane, channel, pk) for pk, lane, channel, _ in released), batch_size=batch_size
        )
        relay.stage_deliveries(batches)
    return batches


def recover_expired_leases(*, now: datetime, limit: int, batch_size: int) -> list[Batch]:
    """Beat's lease sweep: end abandoned sends as ``unknown``; return critical resends.

    Non-critical unknown outcomes wait for a provider report (never resent blindly); a
    critical one whose lease has lapsed is sent once more (SPEC guarantee 3).
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_EXPIRE_LEASES_SQL, {"now": now, "limit": limit})
        lost = cursor.fetchall()
        DeliveryEvent.objects.bulk_create(
            DeliveryEvent(
                delivery_id=pk, state=state, code="lease_expired", reason=reason,
                occurred_at=now,
            )
            for pk, state, reason, _lane, _channel in lost
        )  # fmt: skip
        relay.stage_deliveries(
            split_batches(
                ((lane, channel, pk) for pk, state, _, lane, channel in lost if state == "queued"),
                batch_size=batch_size,
            )
        )
        resend = list(
            Delivery.objects.filter(
                state=DeliveryState.UNKNOWN,
                unknown_resends=0,
                lease_expires_at__lte=now,
                notification__priority="critical",
            )
            .exclude(expires_at__lte=now)
            .values_list("pk", "channel")[:limit]
        )
        batches = split_batches((("critical", ch, pk) for pk, ch in resend), batch_size=1)
        relay.stage_deliveries(batches, resend=True)
    return batches
