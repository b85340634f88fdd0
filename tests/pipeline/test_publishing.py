"""Windowed publishing on the private broker: confirmed means routed to a queue, and an outbox
row stays unpublished until the broker has confirmed its message."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone
from kombu import Connection

import celeryconfig
from notifier.celery import app
from notifier.notifications import relay
from notifier.notifications.models import OutboxMessage
from notifier.notifications.publishing import TaskCall, publisher
from tests.brokers import PrivateRabbitMQ, free_port

QUEUE = celeryconfig.delivery_queue_name("bulk", "email")


def depth(broker: PrivateRabbitMQ) -> int:
    with Connection(broker.url) as connection:
        channel: Any = connection.default_channel
        return int(channel.queue_declare(QUEUE, passive=True).message_count)


@pytest.fixture
def empty_queue(rabbitmq: PrivateRabbitMQ) -> Iterator[None]:
    def purge() -> None:
        with Connection(rabbitmq.url) as connection:
            app.amqp.queues[QUEUE].bind(connection.default_channel).declare()
            app.amqp.queues[QUEUE].bind(connection.default_channel).purge()

    purge()
    yield
    purge()
    publisher().close()


def deliver(n: int) -> TaskCall:
    return TaskCall("notify.deliver.email", {"delivery_ids": [n], "lane": "bulk"})


@pytest.mark.usefixtures("empty_queue")
def test_a_window_of_a_thousand_messages_is_confirmed_and_queued(
    rabbitmq: PrivateRabbitMQ,
) -> None:
    confirmed = publisher().publish([deliver(n) for n in range(1000)])

    assert confirmed == [True] * 1000
    assert depth(rabbitmq) == 1000


@pytest.mark.usefixtures("empty_queue")
def test_a_message_the_broker_cannot_route_is_not_confirmed(rabbitmq: PrivateRabbitMQ) -> None:
    # given the publisher has declared the queue, which is then deleted behind its back
    assert publisher().publish([deliver(1)]) == [True]
    with Connection(rabbitmq.url) as connection:
        app.amqp.queues[QUEUE].bind(connection.default_channel).delete()

    # when it publishes to it again, mandatory: the broker returns the message
    confirmed = publisher().publish([deliver(2), deliver(3)])

    # then neither counts as published
    assert confirmed == [False, False]
    # and a fresh connection declares the queue again
    publisher().close()
    assert publisher().publish([deliver(4)]) == [True]
    assert depth(rabbitmq) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_queue")
def test_outbox_rows_stay_unpublished_while_the_broker_is_unreachable(
    rabbitmq: PrivateRabbitMQ, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given three committed outbox rows for delivery batches
    rows = OutboxMessage.objects.bulk_create(
        OutboxMessage(
            topic=relay.DELIVERIES_QUEUED,
            payload={"lane": "bulk", "channel": "email", "delivery_ids": [n]},
            available_at=timezone.now(),
        )
        for n in range(3)
    )

    # when the relay runs with the broker unreachable
    # (Celery reads the broker URL from the environment before its configuration)
    with monkeypatch.context() as patch:
        patch.setenv("CELERY_BROKER_URL", f"amqp://guest:guest@127.0.0.1:{free_port()}//")
        publisher().close()
        assert relay.relay_outbox() == 0
    publisher().close()

    # then every row is still unpublished, with the error and the attempt recorded
    for row in OutboxMessage.objects.filter(pk__in=[r.pk for r in rows]):
        assert row.published_at is None
        assert row.attempts == 1
        assert row.last_error

    # and once the broker is back, the next pass publishes them all
    assert relay.relay_outbox() == 3
    assert depth(rabbitmq) == 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_queue")
def test_after_a_failed_publish_the_on_commit_path_leaves_rows_to_the_relay_at_once(
    rabbitmq: PrivateRabbitMQ, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a publish that failed moments ago: the broker is down
    row = OutboxMessage.objects.create(
        topic=relay.DELIVERIES_QUEUED,
        payload={"lane": "bulk", "channel": "email", "delivery_ids": [1]},
        available_at=timezone.now(),
    )
    with monkeypatch.context() as patch:
        patch.setenv("CELERY_BROKER_URL", f"amqp://guest:guest@127.0.0.1:{free_port()}//")
        publisher().close()
        assert relay.relay_outbox() == 0
        assert publisher().recently_failed

        # when a request's transaction commits another row: the fast path does not even try
        started = time.monotonic()
        relay.publish_now(row.pk)
        elapsed = time.monotonic() - started
    publisher().close()

    # then the request did not wait, and the row is left (attempts untouched) for the relay
    assert elapsed < 0.05
    row.refresh_from_db()
    assert (row.published_at, row.attempts) == (None, 1)
    assert relay.relay_outbox() == 1
    assert depth(rabbitmq) == 1


def planning_depth(broker: PrivateRabbitMQ) -> int:
    with Connection(broker.url) as connection:
        channel: Any = connection.default_channel
        app.amqp.queues[celeryconfig.PLANNING_QUEUE].bind(channel).declare()
        return int(channel.queue_declare(celeryconfig.PLANNING_QUEUE, passive=True).message_count)


@pytest.fixture
def empty_planning_queue(rabbitmq: PrivateRabbitMQ) -> Iterator[None]:
    def purge() -> None:
        with Connection(rabbitmq.url) as connection:
            queue = app.amqp.queues[celeryconfig.PLANNING_QUEUE].bind(connection.default_channel)
            queue.declare()
            queue.purge()

    purge()
    yield
    relay.stop_background_publisher()
    purge()
    publisher().close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_planning_queue")
def test_an_accepted_notification_is_published_by_the_web_process_without_the_relay(
    rabbitmq: PrivateRabbitMQ, client: Any, order_shipped: Any
) -> None:
    # when the API accepts twenty notifications (no relay runs in this test)
    for n in range(20):
        body = {"user_ids": [f"u{n}"], "notification_type": "order_shipped",
                "template_vars": {"order_id": str(n)}}  # fmt: skip
        assert client.post("/api/v1/notifications", body, format="json").status_code == 202

    # then the process's publisher thread publishes every one soon after its commit
    deadline = time.monotonic() + 10
    while OutboxMessage.objects.filter(published_at__isnull=True).exists():
        assert time.monotonic() < deadline, "outbox rows left unpublished"
        time.sleep(0.02)
    assert OutboxMessage.objects.count() == 20
    assert planning_depth(rabbitmq) == 20


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_planning_queue")
def test_rows_handed_to_the_publisher_thread_are_published_before_it_stops(
    rabbitmq: PrivateRabbitMQ,
) -> None:
    # given outbox rows handed over in several calls
    rows = OutboxMessage.objects.bulk_create(
        OutboxMessage(
            topic=relay.NOTIFICATION_ACCEPTED,
            payload={"notification_id": f"00000000-0000-4000-8000-{n:012d}"},
            available_at=timezone.now(),
        )
        for n in range(30)
    )
    for start in range(0, 30, 3):
        relay.publish_soon(*(row.pk for row in rows[start : start + 3]))

    # when the thread is stopped at once (a test's end, a process shutting down cleanly)
    relay.stop_background_publisher()

    # then it has published everything it was handed
    assert not OutboxMessage.objects.filter(published_at__isnull=True).exists()
    assert planning_depth(rabbitmq) == 30
