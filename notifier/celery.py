"""The Celery application. Every Celery and kombu setting lives in ``celeryconfig.py``."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifier.settings")

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
