"""The worker's message consumer: Celery's, except that an undecodable message dead-letters.

Celery acknowledges a message whose body it cannot decode ("so it doesn't enter a loop"),
which deletes it, and logs its body. SPEC guarantee 5 wants poison messages in the
dead-letter queue, where they can be read and replayed, and guarantee 11 keeps message bodies
out of logs. Rejecting without requeue sends the message through the queue's dead-letter
exchange to ``notify.dead`` (reason ``rejected``), once, so it cannot loop either.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

from notifier.core import unsafe

logger = logging.getLogger(__name__)


class Consumer(CeleryConsumer):
    def on_decode_error(self, message: Any, exc: Exception) -> None:
        if unsafe.without("undecodable"):  # the fault harness's negative control only
            super().on_decode_error(message, exc)
            return
        headers = message.headers or {}
        logger.error(
            "dead-lettering an undecodable message: task %s, id %s, content type %r: %s",
            headers.get("task"),
            headers.get("id"),
            message.content_type,
            type(exc).__name__,
        )
        # connection_errors: set from the broker transport when the consumer connects.
        errors = self.connection_errors  # type: ignore[attr-defined]
        message.reject_log_error(logger, errors, requeue=False)
