"""Publishing task messages in windows: many publishes, then one wait for all their confirms.

A publisher confirm per message costs a round trip to the broker: measured on this kind of
machine, ~1,300 messages/s, against ~35,000 with a window of 1,000 unconfirmed (issue 6).
So a batch is published on a channel in confirm mode without waiting, and then the broker's
acks are collected, by delivery tag, until every message is settled or the time is up.

Every message is published ``mandatory``: one the broker cannot route to a queue comes back
(``basic.return``, which RabbitMQ sends before the message's ack) and counts as not published,
so the outbox row behind it stays for the next pass (RELIABILITY.md R2). A nack, a timeout or
a lost connection also leaves the message unpublished; publishing it again later is safe
because every consumer is idempotent.

Messages are Celery protocol 2 task messages, built by Celery itself and routed by the
project's router, so a worker cannot tell them from ``apply_async``'s.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from kombu import Connection, Producer, Queue

from notifier.notifications.routing import route_task

logger = logging.getLogger(__name__)

# Neither a request nor the relay may hang on a broker that accepts TCP and answers nothing.
PUBLISH_TIMEOUT = 5.0
UNREACHABLE_BACKOFF = 5.0
"""After a failed publish, :attr:`WindowedPublisher.recently_failed` holds this long: the
``on_commit`` fast path then leaves its rows to the relay instead of making API requests
wait on a broker that is down."""


@dataclass(frozen=True, slots=True)
class TaskCall:
    """One task message to publish: the task's name and its keyword arguments (ids only)."""

    name: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)


class _Window:
    """What one ``publish`` call is waiting for; filled in by the channel's event handlers."""

    def __init__(self, size: int) -> None:
        self.confirmed = [False] * size
        self.pending: dict[int, int] = {}  # delivery tag -> index of the call
        self.by_task_id: dict[str, int] = {}
        self.returned: set[int] = set()

    def settle(self, tag: int, multiple: bool, *, ack: bool) -> None:
        tags = [t for t in self.pending if t <= tag] if multiple else [tag]
        for settled in tags:
            index = self.pending.pop(settled, None)
            if index is not None:
                self.confirmed[index] = ack and index not in self.returned


class WindowedPublisher:
    """A connection per process, in confirm mode, shared by its threads under a lock."""

    def __init__(self, app: Celery) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._connection: Connection | None = None
        self._producer: Producer | None = None
        self._channel: Any = None
        self._declared: set[str] = set()
        self._last_tag = 0
        self._window: _Window | None = None
        self._failed_until = 0.0
        # A forked child must open its own connection: a socket shared with the parent
        # would interleave both processes' frames.
        if hasattr(os, "register_at_fork"):
            forget = weakref.WeakMethod(self._forget)
            os.register_at_fork(after_in_child=lambda: _call_if_alive(forget))

    def publish(self, calls: Sequence[TaskCall], *, timeout: float = PUBLISH_TIMEOUT) -> list[bool]:
        """Publish ``calls``; return, for each, whether the broker confirmed it and routed it
        to a queue. Raises on a connection failure (nothing can be known confirmed then)."""
        if not calls:
            return []
        with self._lock:
            try:
                return self._publish(calls, timeout)
            except Exception:
                self._close()  # its delivery tags and state are unknown now: start afresh
                self._failed_until = time.monotonic() + UNREACHABLE_BACKOFF
                raise

    @property
    def recently_failed(self) -> bool:
        """Whether a publish failed (broker down, or too slow to confirm) moments ago."""
        return time.monotonic() < self._failed_until

    def close(self) -> None:
        """Drop the connection and forget any failure: the next publish starts afresh."""
        with self._lock:
            self._close()
            self._failed_until = 0.0

    def _publish(self, calls: Sequence[TaskCall], timeout: float) -> list[bool]:
        deadline = time.monotonic() + timeout
        producer = self._ensure_producer(timeout)
        window = self._window = _Window(len(calls))
        try:
            for index, call in enumerate(calls):
                queue = self._queue_for(call)
                if queue.name not in self._declared:
                    queue(self._channel).declare()
                    self._declared.add(queue.name)
                task_id = str(uuid.uuid4())
                headers, properties, body, _ = self._app.amqp.create_task_message(
                    task_id, call.name, (), dict(call.kwargs)
                )
                producer.publish(
                    body,
                    exchange=queue.exchange,
                    routing_key=queue.routing_key,
                    headers=headers,
                    mandatory=True,
                    serializer="json",
                    delivery_mode=2,  # persistent
                    **properties,
                )
                self._last_tag += 1
                window.pending[self._last_tag] = index
                window.by_task_id[task_id] = index
            self._wait(window, deadline)
            return list(window.confirmed)
        finally:
            self._window = None

    def _wait(self, window: _Window, deadline: float) -> None:
        assert self._connection is not None
        while window.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"{len(window.pending)} publish(es) not confirmed by the broker in time"
                )
            try:
                self._connection.drain_events(timeout=remaining)
            except TimeoutError:
                continue  # socket.timeout: loop to report which were not confirmed

    def _queue_for(self, call: TaskCall) -> Queue:
        route = route_task(call.name, (), call.kwargs, {})
        queue: Queue = self._app.amqp.queues[route["queue"]]
        return queue

    def _ensure_producer(self, timeout: float) -> Producer:
        if self._producer is not None:
            return self._producer
        options = dict(self._app.conf.broker_transport_options or {})
        # Confirms are collected per window here, not awaited per message by py-amqp.
        options.pop("confirm_publish", None)
        connection = Connection(
            self._app.conf.broker_url,
            connect_timeout=timeout,
            heartbeat=0,
            transport_options=options,
        )
        # One attempt: kombu's connect() retries after 2 s, which a caller (an API request
        # publishing on commit) must not wait for; the relay's next pass is the retry.
        connection.ensure_connection(max_retries=0)
        # py-amqp's channel (kombu types it as the transport-neutral StdChannel).
        channel: Any = connection.channel()
        channel.confirm_select()
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        channel.events["basic_return"].add(self._on_return)
        self._connection = connection
        self._channel = channel
        self._producer = Producer(channel)
        self._last_tag = 0
        self._declared = set()
        return self._producer

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        if self._window is not None:
            self._window.settle(delivery_tag, multiple, ack=True)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        if self._window is not None:
            self._window.settle(delivery_tag, multiple, ack=False)

    def _on_return(self, exc: Exception, exchange: str, routing_key: str, message: Any) -> None:
        logger.warning("broker returned an unroutable message for %s: %s", routing_key, exc)
        if self._window is None:
            return
        task_id = message.properties.get("correlation_id")
        index = self._window.by_task_id.get(task_id)
        if index is not None:
            self._window.returned.add(index)

    def _close(self) -> None:
        connection, self._connection, self._producer = self._connection, None, None
        self._channel = None
        if connection is not None:
            try:
                connection.close()
            except Exception:
                logger.debug("closing a failed broker connection raised", exc_info=True)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._connection = None
        self._producer = None
        self._channel = None
        self._window = None


def _call_if_alive(method: weakref.WeakMethod[Any]) -> None:
    bound = method()
    if bound is not None:
        bound()


_publisher: WindowedPublisher | None = None
_publisher_lock = threading.Lock()


def publisher() -> WindowedPublisher:
    """The process's publisher, on the Celery app's broker."""
    global _publisher
    if _publisher is None:
        with _publisher_lock:
            if _publisher is None:
                from notifier.celery import app

                _publisher = WindowedPublisher(app)
    return _publisher
