"""The outbox relay: publishes committed outbox rows to RabbitMQ, at least once.

Every message the pipeline sends is first an outbox row, written in the transaction that made
it necessary: an accepted notification (planning), and queued deliveries (from planning, beat's
releases, the lease sweep and operators' replays). A broker that is down or refuses a message
therefore never leaves a committed row without its message: the row waits for the next pass.

A row is claimed with ``FOR UPDATE SKIP LOCKED``, so any number of relays (and the
``on_commit`` fast paths) share the table without publishing a row twice at the same time.
A pass publishes its rows in one window (``publishing``: mandatory, publisher confirms
collected together) and marks published, in the transaction that claimed them, exactly those
the broker confirmed. A crash between confirm and commit publishes a row again on the next
pass; consumers are idempotent, so that costs a redundant message, never a send.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from notifier.notifications.models import OutboxMessage
from notifier.notifications.publishing import TaskCall, publisher
from notifier.notifications.routing import DELIVER_PREFIX, PLAN_TASK

if TYPE_CHECKING:
    from notifier.notifications.planning import Batch

logger = logging.getLogger(__name__)

NOTIFICATION_ACCEPTED = "notification.accepted"
DELIVERIES_QUEUED = "deliveries.queued"


def stage_deliveries(
    batches: Iterable[Batch], *, resend: bool = False, hold_for: timedelta | None = None
) -> list[int]:
    """Outbox rows for batches of queued deliveries, in the caller's transaction; each is
    published right after the commit, and by the relay if that fails. Returns their ids.

    ``resend`` lets the claim take critical deliveries of unknown outcome (SPEC guarantee 3).
    ``hold_for``: the caller sends the batches itself right after the commit, then discards
    the rows (:func:`discard`), or releases them (:func:`release`) if it could not send them.
    They are not published on commit, and the relay publishes them once ``hold_for`` is over
    if they are still there (the caller died, or is that slow).
    """
    now = timezone.now()
    rows = OutboxMessage.objects.bulk_create(
        OutboxMessage(
            topic=DELIVERIES_QUEUED,
            payload={
                "lane": batch.lane,
                "channel": batch.channel,
                "delivery_ids": list(batch.delivery_ids),
                **({"resend": True} if resend else {}),
            },
            available_at=now + hold_for if hold_for else now,
        )
        for batch in batches
    )
    ids = [row.pk for row in rows]
    if ids and settings.NOTIFIER_PUBLISH_ON_COMMIT and not hold_for:
        transaction.on_commit(partial(publish_now, *ids))
    return ids


def discard(*outbox_ids: int) -> None:
    """Delete held outbox rows not published yet: their work was done without a message
    (``stage_deliveries``' ``hold_for``). A row the relay has published meanwhile stays."""
    OutboxMessage.objects.filter(pk__in=outbox_ids, published_at__isnull=True).delete()


def release(*outbox_ids: int) -> None:
    """Make held outbox rows due now: the relay publishes them on its next pass."""
    OutboxMessage.objects.filter(pk__in=outbox_ids, published_at__isnull=True).update(
        available_at=timezone.now()
    )


def _task_call(row: OutboxMessage) -> TaskCall:
    """The task message an outbox row stands for; ids only (SPEC guarantee 2)."""
    payload = row.payload
    if row.topic == NOTIFICATION_ACCEPTED:
        return TaskCall(
            PLAN_TASK,
            {
                "notification_id": payload["notification_id"],
                "lane": payload.get("lane", "transactional"),
            },
        )
    if row.topic == DELIVERIES_QUEUED:
        kwargs = {"delivery_ids": payload["delivery_ids"], "lane": payload["lane"]}
        if payload.get("resend"):
            kwargs["resend"] = True
        return TaskCall(DELIVER_PREFIX + payload["channel"], kwargs)
    raise ValueError(f"unknown outbox topic {row.topic!r}")


def relay_outbox(*, now: datetime | None = None, batch_size: int = 500, **filters: Any) -> int:
    """Publish up to ``batch_size`` due outbox rows in one window; returns how many the broker
    confirmed. Rows it did not confirm stay unpublished with their error, for the next pass.
    """
    now = now or timezone.now()
    with transaction.atomic():
        rows = list(
            OutboxMessage.objects.select_for_update(skip_locked=True)
            .filter(published_at__isnull=True, available_at__lte=now, **filters)
            .order_by("available_at", "id")[:batch_size]
        )
        if not rows:
            return 0
        try:
            confirmed = publisher().publish([_task_call(row) for row in rows])
        except Exception as exc:  # noqa: BLE001 - any failure leaves the rows for later
            logger.warning("outbox: %s row(s) not published: %s", len(rows), type(exc).__name__)
            confirmed = [False] * len(rows)
            error = f"{type(exc).__name__}: {exc}"[:500]
        else:
            error = "not confirmed by the broker (nacked or unroutable)"
        published = [row.pk for row, ok in zip(rows, confirmed, strict=True) if ok]
        failed = [row.pk for row, ok in zip(rows, confirmed, strict=True) if not ok]
        if published:
            OutboxMessage.objects.filter(pk__in=published).update(
                published_at=timezone.now(), attempts=F("attempts") + 1
            )
        if failed:
            OutboxMessage.objects.filter(pk__in=failed).update(
                attempts=F("attempts") + 1, last_error=error
            )
    return len(published)


def publish_now(*outbox_ids: int) -> None:
    """The ``on_commit`` fast path: publish rows right after their transaction commits.

    Never raises: the caller's work is committed (the API has answered 202), and the relay
    publishes whatever this misses. Skipped while the broker has just failed a publish, so
    that an outage costs API requests nothing.
    """
    if publisher().recently_failed:
        return
    try:
        relay_outbox(batch_size=len(outbox_ids), pk__in=outbox_ids)
    except Exception:  # noqa: BLE001 - the relay catches up; the caller must not fail
        logger.warning(
            "on-commit publish of outbox rows %s failed; the relay will retry", outbox_ids
        )


def publish_soon(*outbox_ids: int) -> None:
    """The API's ``on_commit`` fast path: hand the rows to this process's publisher thread.

    The request answers without waiting for the broker's confirm, and under load the thread
    publishes many requests' rows in one window (one claim, one wait for confirms, one
    update) instead of one window per request. Rows it has not published when the process
    ends are the relay's, as are rows of any failure.
    """
    _background.submit(outbox_ids)


class _BackgroundPublisher:
    """A daemon thread publishing the outbox rows it is handed, up to 500 per pass."""

    IDLE_SECONDS = 5.0
    """Idle this long, the thread closes its database connection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[int, ...] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def submit(self, outbox_ids: tuple[int, ...]) -> None:
        if not self._running():
            with self._lock:
                if not self._running():
                    # A forked child has the parent's object but not its thread.
                    self._queue = queue.SimpleQueue()
                    self._thread = threading.Thread(
                        target=self._run, args=(self._queue,), name="outbox-publisher", daemon=True
                    )
                    self._pid = os.getpid()
                    self._thread.start()
        self._queue.put(outbox_ids)

    def _running(self) -> bool:
        return self._pid == os.getpid() and self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Publish what was handed over, then end the thread and close its connection."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None and self._pid == os.getpid():
                self._queue.put(None)
                thread.join(timeout)

    def _run(self, work: queue.SimpleQueue[tuple[int, ...] | None]) -> None:
        try:
            while True:
                try:
                    first = work.get(timeout=self.IDLE_SECONDS)
                except queue.Empty:
                    connection.close()
                    continue
                if first is None:
                    return
                ids, stopping = list(first), False
                while len(ids) < 500:
                    try:
                        more = work.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stopping = True
                        break
                    ids.extend(more)
                # No request cycle closes this thread's connection: drop it here if it broke
                # (PostgreSQL restarted) or outlived CONN_MAX_AGE, as a request would.
                close_old_connections()
                publish_now(*ids)
                if stopping:
                    return
        finally:
            connection.close()


_background = _BackgroundPublisher()
stop_background_publisher = _background.stop


def purge_published(*, now: datetime, older_than: timedelta, batch_size: int = 10_000) -> int:
    """Delete rows published before ``now - older_than``, in batches; returns how many."""
    purged = 0
    while True:
        batch = list(
            OutboxMessage.objects.filter(published_at__lt=now - older_than).values_list(
                "pk", flat=True
            )[:batch_size]
        )
        if not batch:
            return purged
        purged += OutboxMessage.objects.filter(pk__in=batch).delete()[0]
