"""Dead letters: what RabbitMQ set aside in ``notify.dead``, and putting it back to work.

A task message is dead-lettered when its task raised (``task_acks_on_failure = False``
rejects it) or when it crashed its worker more often than the queue's delivery limit (SPEC
guarantee 5). Messages hold ids only (guarantee 2), so listing them shows no personal data.
A replay republishes a message unchanged to the queue it died in; tasks re-read their rows and
claim before sending, so a replay never sends twice (guarantee 3).

A ``failed`` (or ``unknown``) delivery is another matter: its task ran and recorded the
outcome. ``replay_delivery`` sends it again, the one way out of a terminal state.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from amqp.exceptions import AMQPError, MessageNacked
from django.db import transaction
from django.db.models import Q
from kombu import Producer, Queue
from kombu.exceptions import KombuError
from kombu.message import Message

import celeryconfig
from notifier.celery import app
from notifier.notifications import relay
from notifier.notifications.models import Delivery, DeliveryEvent, DeliveryState
from notifier.notifications.planning import Batch
from notifier.notifications.states import can_replay

logger = logging.getLogger(__name__)

# Always this declared Queue, never the bare name: a declaration without its quorum
# arguments makes RabbitMQ refuse with PRECONDITION_FAILED.
DEAD_LETTERS: Queue = celeryconfig.dead_letter_queues[0]
# A replay goes only where a worker consumes; anything else would be unroutable.
REPLAYABLE_QUEUES = frozenset(queue.name for queue in celeryconfig.task_queues)
# One pass takes at most this many messages off the queue, holding them unacknowledged so
# that none comes twice; a larger backlog is read in several passes (filter by queue).
SCAN_LIMIT = 10_000
# See _give_back: a message returned this often is renewed before a delivery limit drops it.
RENEW_AFTER_RETURNS = 10
# x- headers belong to the broker, which from RabbitMQ 4.0 ignores those a client sets
# (rabbitmq-server#11339), so what we carry across a republish goes in headers of our own.
REPLAYS_HEADER = "notify-replays"
DEATH_HEADER = "notify-death"
BROKER_COUNTERS = ("x-delivery-count", "x-acquired-count")
# Properties given to Producer.publish by name. The expiration is dropped as RabbitMQ drops it
# when dead-lettering: a copy must not expire out of a queue that has no dead-letter exchange.
_NAMED_PROPERTIES = frozenset(
    {"application_headers", "content_type", "content_encoding", "expiration"}
)
PUBLISH_TIMEOUT = 5.0
# What an unreachable or refusing broker raises: socket errors, kombu's OperationalError,
# AMQP channel and connection errors, and the nack of a confirmed publish.
BROKER_ERRORS: tuple[type[Exception], ...] = (OSError, KombuError, AMQPError, MessageNacked)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message in ``notify.dead``, as an operator needs to see it."""

    message_id: str  # the Celery task id
    task: str
    queue: str  # where it died, and where a replay sends it
    reason: str  # "rejected": the task raised; "delivery_limit": it kept killing workers
    count: int  # times it died there
    died_at: datetime | None
    kwargs: dict[str, Any]  # ids only
    replays: int = 0


def list_dead_letters(*, queue: str | None = None, limit: int = 100) -> list[DeadLetter]:
    """The first ``limit`` dead letters, oldest first; only those that died in ``queue`` if given.

    AMQP 0-9-1 cannot peek, so messages are taken with ``basic.get`` and given back (see
    ``_give_back``). Meanwhile they are invisible to a concurrent listing or replay.
    """
    found: list[DeadLetter] = []
    with _dead_letter_queue() as (dead, producer):
        held: list[Message] = []
        for message in _take(dead):
            held.append(message)
            letter = _describe(message)
            if queue is None or letter.queue == queue:
                found.append(letter)
                if len(found) >= limit:
                    break
        _give_back(held, producer)
    return found


def replay_dead_letters(*, queue: str | None = None, message_id: str | None = None) -> int:
    """Republish the selected dead letters to the queues they died in; returns how many.

    With no selector, every dead letter is replayed. Each is published with its original
    body and Celery headers to the ``notify`` exchange with publisher confirms, and acked in
    ``notify.dead`` only once the broker confirmed the copy: a crash in between leaves a
    duplicate, never a loss, and the task is idempotent. The pass reads only the messages
    ready when it starts, and replays a task id once, so a message that dies again while the
    pass runs is left for the operator instead of going round in a loop.
    """
    replayed: set[str] = set()
    count = 0
    with _dead_letter_queue() as (dead, producer):
        held: list[Message] = []
        for message in _take(dead):
            letter = _describe(message)
            selected = (queue is None or letter.queue == queue) and (
                message_id is None or letter.message_id == message_id
            )
            if not selected or (letter.message_id and letter.message_id in replayed):
                held.append(message)
                continue
            if letter.queue not in REPLAYABLE_QUEUES:
                logger.warning(
                    "dead letter %s died in %r: not replayable", letter.message_id, letter.queue
                )
                held.append(message)
                continue
            # A replay is a new attempt: the broker writes x-death afresh if it dies again.
            headers: dict[str, Any] = {
                k: v for k, v in message.headers.items() if not k.startswith("x-")
            }
            headers[REPLAYS_HEADER] = letter.replays + 1
            _republish(
                producer,
                message,
                exchange=celeryconfig.NOTIFY_EXCHANGE.name,
                routing_key=letter.queue,
                headers=headers,
            )
            message.ack()
            replayed.add(letter.message_id)
            count += 1
            logger.info("dead letter %s replayed to %s", letter.message_id, letter.queue)
        _give_back(held, producer)
    return count


@contextmanager
def _dead_letter_queue() -> Iterator[tuple[Queue, Producer]]:
    """The DLQ on a channel of its own, with publisher confirms (``confirm_publish``).

    Closing the connection hands every message still held back to the queue, so an error
    half-way loses nothing.
    """
    with app.connection_for_write() as connection:
        connection.connect()  # one attempt: an operator's page must not hang on a down broker
        channel = connection.channel()
        dead = DEAD_LETTERS.bind(channel)
        dead.declare()
        yield dead, Producer(channel)


def _take(dead: Queue) -> Iterator[Message]:
    """Messages from the head of the queue, unacked: none comes twice while they are held.

    Only those ready when the pass began (the first ``basic.get`` tells how many follow it),
    so messages dead-lettered meanwhile wait for the next pass.
    """
    message = dead.get(no_ack=False)
    if message is None:
        return
    yield message
    for _ in range(min(int(message.delivery_info["message_count"]), SCAN_LIMIT - 1)):
        message = dead.get(no_ack=False)
        if message is None:
            return
        yield message


def _give_back(held: list[Message], producer: Producer) -> None:
    """Return messages taken for reading to the queue, unchanged and in their place.

    Rejected with requeue, they go back to the head of the quorum queue, so repeated listings
    show the same page. But each return counts as a delivery (``x-delivery-count``), and
    from RabbitMQ 4.0 a quorum queue has a delivery limit by default (20) past which it
    drops a message when, like ``notify.dead``, it has no dead-letter exchange. So a message
    returned ``RENEW_AFTER_RETURNS`` times is renewed instead: a copy is published to the
    queue (confirmed) and only then the original acked. That costs its place in the queue
    and, after a crash between the two steps, may leave a duplicate; it never loses it.
    """
    for message in held:
        if int(message.headers.get("x-delivery-count") or 0) < RENEW_AFTER_RETURNS:
            message.reject(requeue=True)
            continue
        headers: dict[str, Any] = {
            k: v for k, v in message.headers.items() if k not in BROKER_COUNTERS
        }
        deaths: list[dict[str, Any]] = headers.get("x-death") or []
        if deaths and DEATH_HEADER not in headers:
            headers[DEATH_HEADER] = deaths[0]
        _republish(producer, message, exchange="", routing_key=DEAD_LETTERS.name, headers=headers)
        message.ack()


def _republish(
    producer: Producer,
    message: Message,
    *,
    exchange: str,
    routing_key: str,
    headers: dict[str, Any],
) -> None:
    """Publish ``message`` again, body and properties as they were, and wait for the confirm.

    ``mandatory``: a copy nobody would receive raises instead of vanishing, and then the
    original is not acked.
    """
    properties: dict[str, Any] = {
        k: v for k, v in message.properties.items() if k not in _NAMED_PROPERTIES
    }
    producer.publish(
        message.body,
        exchange=exchange,
        routing_key=routing_key,
        headers=headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=properties.pop("delivery_mode", 2),
        mandatory=True,
        retry=False,
        timeout=PUBLISH_TIMEOUT,
        confirm_timeout=PUBLISH_TIMEOUT,
        **properties,
    )


def _describe(message: Message) -> DeadLetter:
    headers: dict[str, Any] = message.headers or {}
    deaths: list[dict[str, Any]] = headers.get("x-death") or [headers.get(DEATH_HEADER) or {}]
    death = deaths[0]  # the latest death comes first
    died_at = death.get("time")
    if isinstance(died_at, datetime) and died_at.tzinfo is None:
        died_at = died_at.replace(tzinfo=UTC)  # AMQP timestamps are UTC seconds
    return DeadLetter(
        message_id=str(headers.get("id") or message.properties.get("correlation_id") or ""),
        task=str(headers.get("task") or ""),
        queue=str(death.get("queue") or ""),
        reason=str(death.get("reason") or ""),
        count=int(death.get("count") or 0),
        died_at=died_at if isinstance(died_at, datetime) else None,
        kwargs=_task_kwargs(message),
        replays=int(headers.get(REPLAYS_HEADER) or 0),
    )


def _task_kwargs(message: Message) -> dict[str, Any]:
    """The task's keyword arguments from a Celery (protocol 2) body: ``[args, kwargs, embed]``."""
    try:
        body = json.loads(message.body or "")
    except (TypeError, ValueError):
        return {}  # undecodable: perhaps why it died
    if isinstance(body, list) and len(body) > 1 and isinstance(body[1], dict):
        return body[1]
    return {}


def recent_failed_deliveries(*, limit: int = 20) -> list[Delivery]:
    """The deliveries that failed last, for the operator choosing what to replay."""
    return list(
        Delivery.objects.filter(state=DeliveryState.FAILED)
        .order_by("-failed_at")
        .only("id", "channel", "reason", "failed_at", "attempts")[:limit]
    )


def replay_delivery(*, delivery_id: int, now: datetime) -> bool:
    """Send a ``failed`` or ``unknown`` delivery again; False if it may not be replayed.

    An operator's deliberate action, once the cause is fixed (``states.can_replay``). One
    conditional UPDATE moves it back to ``queued`` only if it is still in the state it was
    read in and has not expired, so of two concurrent replays exactly one succeeds and the
    delivery is sent once; the claim in ``sending`` does the rest. Its attempts are kept, so
    a replay gets one attempt: a transient error fails it again rather than retrying. An
    expired delivery is refused and stays as it is.
    """
    before = Delivery.objects.filter(pk=delivery_id).values("state", "lane", "channel").first()
    if before is None or not can_replay(before["state"]):
        return False
    with transaction.atomic():
        replayed = (
            Delivery.objects.filter(pk=delivery_id, state=before["state"])
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
            .update(
                state=DeliveryState.QUEUED,
                reason="replayed",
                next_attempt_at=None,
                failed_at=None,
                updated_at=now,
            )
        )
        if not replayed:
            return False
        DeliveryEvent.objects.create(
            delivery_id=delivery_id,
            state=DeliveryState.QUEUED,
            code="replayed",
            reason=f"replayed by an operator from {before['state']}",
            detail={"from": before["state"]},
            occurred_at=now,
        )
        # Its message is an outbox row of this transaction: published after the commit, or
        # by the relay if the broker is down; never a queued row without a message.
        relay.stage_deliveries(
            [Batch(lane=before["lane"], channel=before["channel"], delivery_ids=[delivery_id])]
        )
    return True
