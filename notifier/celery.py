"""The Celery application. Every Celery and kombu setting lives in ``celeryconfig.py``."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifier.settings")

logger = logging.getLogger(__name__)

app = Celery("notifier")
app.config_from_object("celeryconfig")
app.autodiscover_tasks()


@worker_init.connect
def declare_topology(sender: Any = None, **kwargs: Any) -> None:
    """Declare the dead-letter exchange and queue, then every work queue, before any worker
    consumes.

    With at-least-once dead-lettering RabbitMQ holds rejected messages in the source queue
    until the DLX target exists, so it must exist first (ECOSYSTEM.md §4.2). Every lane's
    queues are declared by every pool, not only its own: publishers publish ``mandatory`` (an
    unroutable message stays in the outbox), and Celery binds every configured queue to its
    delayed-delivery exchanges at start, which fails for a queue not declared yet.
    """
    import celeryconfig

    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for queue in (*celeryconfig.dead_letter_queues, *celeryconfig.task_queues):
            queue.bind(channel).declare()


def consumed_channels(lanes: Iterable[str] | None = None) -> list[str]:
    """The channels whose delivery queues (of ``lanes``, default all) this worker consumes;
    outside a worker, where every queue counts as consumed, all of them."""
    import celeryconfig

    queues = {
        celeryconfig.delivery_queue_name(lane, channel): channel
        for lane in (celeryconfig.LANES if lanes is None else lanes)
        for channel in celeryconfig.CHANNELS
    }
    return sorted({queues[name] for name in app.amqp.queues.consume_from if name in queues})


@worker_process_init.connect
def prepare_sending(**kwargs: Any) -> None:
    """In each pool process of a worker that consumes delivery queues, build the providers of
    those queues' channels at once, in a thread of its own (the process starts taking tasks
    meanwhile; a task that needs a provider still being built waits for it). Without this,
    the first delivery of every process after a start or a deploy pays for them: ~170 ms
    more for the first critical email (docs/performance.md, isolation)."""
    channels = consumed_channels()
    if channels:
        threading.Thread(
            target=_prepare_sending, args=(channels,), name="prepare-sending", daemon=True
        ).start()


def _prepare_sending(channels: list[str]) -> None:
    from notifier.notifications.sending import prepare_process

    started = time.perf_counter()
    try:
        built = prepare_process(channels)
    except Exception:
        logger.exception("preparing providers for %s failed", ", ".join(channels))
        return
    logger.info(
        "providers ready for %s in %.0f ms: %s",
        ", ".join(channels),
        (time.perf_counter() - started) * 1000,
        ", ".join(built) or "none configured",
    )
