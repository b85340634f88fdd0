"""Dead letters and replay, against the private RabbitMQ and a real worker: listing loses
nothing, a replay runs the same task again and never sends a delivery twice, and the command
and the admin do the same through the one service."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection as db_connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from kombu import Connection

import celeryconfig
from notifier.content.models import NotificationType
from notifier.core.enums import Channel
from notifier.notifications import deadletters, planning, tasks
from notifier.notifications.deadletters import (
    DeadLetter,
    list_dead_letters,
    replay_dead_letters,
    replay_delivery,
)
from notifier.notifications.models import Delivery, DeliveryState
from notifier.recipients.models import Recipient
from notifier.tenancy.models import Tenant
from tests.brokers import PrivateRabbitMQ
from tests.factories import (
    NotificationTypeFactory,
    RecipientFactory,
    client_for,
    published_template,
)
from tests.pipeline.conftest import Worker, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

QUEUES = {queue.name: queue for queue in celeryconfig.task_queues}
EMAIL_QUEUE = celeryconfig.delivery_queue_name("transactional", "email")


def purge_queues(rabbitmq: PrivateRabbitMQ) -> None:
    with Connection(rabbitmq.url) as connection:
        channel = connection.default_channel
        for queue in (*celeryconfig.task_queues, *celeryconfig.dead_letter_queues):
            bound = queue.bind(channel)
            bound.declare()
            bound.purge()


@pytest.fixture(autouse=True)
def empty_queues(rabbitmq: PrivateRabbitMQ) -> Iterator[None]:
    """The topology declared (as a worker would), and empty before and after each test: the
    other suites expect no dead letters but their own."""
    purge_queues(rabbitmq)
    yield
    purge_queues(rabbitmq)


@pytest.fixture
def alerts(tenant: Tenant) -> NotificationType:
    notification_type = NotificationTypeFactory.create(
        tenant=tenant, key="alert", default_channels=[Channel.EMAIL]
    )
    published_template(
        notification_type,
        subject="Alert {{ code }}",
        body="Your code is {{ code }}",
        variables=("code",),
    )
    return notification_type


@pytest.fixture
def ada(tenant: Tenant) -> Recipient:
    recipient: Recipient = RecipientFactory.create(
        tenant=tenant, user_id="ada", email="ada@example.com"
    )
    return recipient


def send(tenant: Tenant, **body: object) -> str:
    payload = {"user_ids": ["ada"], "notification_type": "alert", "template_vars": {"code": "42"}}
    response = client_for(tenant).post("/api/v1/notifications", payload | body, format="json")
    assert response.status_code == 202, response.json()
    return str(response.json()["notification_id"])


def poison() -> str:
    """A planning message that can never succeed; the worker rejects it to notify.dead."""
    return str(tasks.plan_notification.apply_async(kwargs={"notification_id": "not-a-uuid"}).id)


def dead_letter_by_hand(rabbitmq: PrivateRabbitMQ, task: Any, queue: str, **kwargs: Any) -> str:
    """Publish ``task`` and reject its message as a failing worker would (no worker running)."""
    task_id = str(task.apply_async(kwargs=kwargs).id)
    with Connection(rabbitmq.url) as connection:
        bound = QUEUES[queue].bind(connection.default_channel)
        message = wait_for(lambda: bound.get(no_ack=False))
        assert message.headers["id"] == task_id
        message.reject(requeue=False)
    # RabbitMQ dead-letters asynchronously.
    wait_for(lambda: letters_of(task_id))
    return task_id


def letters_of(task_id: str, **filters: Any) -> list[DeadLetter]:
    """The dead letters of one task (messages other tests left behind do not count)."""
    return [d for d in list_dead_letters(**filters) if d.message_id == task_id]


def failed_delivery(tenant: Tenant, ada: Recipient) -> Delivery:
    """A delivery the sandbox refused for good, whose address support has since corrected."""
    Recipient.objects.filter(pk=ada.pk).update(email="fail-permanent@example.com")
    notification_id = send(tenant)
    wait_for(
        lambda: Delivery.objects.filter(
            notification_id=notification_id, state=DeliveryState.FAILED
        ).exists()
    )
    delivery = Delivery.objects.get(notification_id=notification_id)
    Delivery.objects.filter(pk=delivery.pk).update(
        destination="ada@example.com", address_key="ada@example.com"
    )
    return delivery


def state_of(delivery: Delivery) -> str:
    delivery.refresh_from_db()
    return delivery.state


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_a_poison_message_is_listed_with_its_reason_and_reading_keeps_it(worker: Worker) -> None:
    # given
    before = timezone.now()
    task_id = poison()

    # when
    (letter,) = wait_for(lambda: letters_of(task_id))

    # then
    assert letter.message_id == task_id
    assert letter.task == "notify.plan.notification"
    assert (letter.queue, letter.reason, letter.count) == ("notify.planning", "rejected", 1)
    assert letter.died_at is not None
    assert before - timedelta(seconds=1) <= letter.died_at <= timezone.now()
    assert letter.kwargs == {"notification_id": "not-a-uuid"}
    assert letter.replays == 0

    # and listing it twice more changes nothing
    assert letters_of(task_id) == [letter]
    assert letters_of(task_id) == [letter]
    assert letters_of(task_id, queue="notify.planning") == [letter]
    assert letters_of(task_id, queue=EMAIL_QUEUE) == []


def test_a_message_listed_many_times_is_renewed_not_dropped(
    rabbitmq: PrivateRabbitMQ, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a dead letter, and a renewal after every other return (instead of every tenth)
    monkeypatch.setattr(deadletters, "RENEW_AFTER_RETURNS", 2)
    task_id = dead_letter_by_hand(
        rabbitmq, tasks.deliver_email, EMAIL_QUEUE, delivery_ids=[1], lane="transactional"
    )
    (first,) = letters_of(task_id)

    # when it is listed more often than a delivery limit of 3 would allow
    for _ in range(6):
        assert letters_of(task_id) == [first]

    # then it is still there, as it was, and its return count was reset on the way
    with Connection(rabbitmq.url) as connection:
        bound = deadletters.DEAD_LETTERS.bind(connection.default_channel)
        message = bound.get(no_ack=False)
        assert message is not None
        assert message.headers["id"] == task_id
        assert int(message.headers["x-delivery-count"]) <= 2
        message.reject(requeue=True)
    assert first.queue == EMAIL_QUEUE
    assert first.reason == "rejected"


def test_replaying_a_dead_lettered_delivery_task_sends_it_exactly_once(
    request: pytest.FixtureRequest,
    settings: Any,
    rabbitmq: PrivateRabbitMQ,
    tenant: Tenant,
    alerts: NotificationType,
    ada: Recipient,
) -> None:
    # given a queued delivery whose task message died before any worker ran it
    # (only the hand-made message below exists: nothing is published on commit)
    settings.NOTIFIER_PUBLISH_ON_COMMIT = False
    notification_id = send(tenant)
    (batch,) = planning.plan_notification(
        notification_id=UUID(notification_id), now=timezone.now(), batch_size=100
    )
    task_id = dead_letter_by_hand(
        rabbitmq,
        tasks.deliver_email,
        EMAIL_QUEUE,
        delivery_ids=batch.delivery_ids,
        lane=batch.lane,
    )
    worker: Worker = request.getfixturevalue("worker")
    (letter,) = letters_of(task_id)
    assert (letter.task, letter.queue) == ("notify.deliver.email", EMAIL_QUEUE)
    assert letter.kwargs == {"delivery_ids": batch.delivery_ids, "lane": "transactional"}

    # when
    assert replay_dead_letters(message_id=task_id) == 1

    # then the same task ran again and sent the delivery, once
    (delivery,) = Delivery.objects.filter(notification_id=notification_id)
    wait_for(lambda: state_of(delivery) == DeliveryState.SENT)
    assert replay_dead_letters(message_id=task_id) == 0
    time.sleep(1)
    assert [m["correlation_id"] for m in worker.sent()] == [str(delivery.pk)]
    assert delivery.attempts == 1
    assert letters_of(task_id) == []


def test_a_replayed_delivery_task_whose_delivery_expired_ends_it_expired(
    request: pytest.FixtureRequest,
    settings: Any,
    rabbitmq: PrivateRabbitMQ,
    tenant: Tenant,
    alerts: NotificationType,
    ada: Recipient,
) -> None:
    # given a dead-lettered delivery task whose delivery expired while it lay there
    # (only the hand-made message below exists: nothing is published on commit)
    settings.NOTIFIER_PUBLISH_ON_COMMIT = False
    notification_id = send(tenant, expires_at=(timezone.now() + timedelta(hours=1)).isoformat())
    (batch,) = planning.plan_notification(
        notification_id=UUID(notification_id), now=timezone.now(), batch_size=100
    )
    dead_letter_by_hand(
        rabbitmq,
        tasks.deliver_email,
        EMAIL_QUEUE,
        delivery_ids=batch.delivery_ids,
        lane="transactional",
    )
    Delivery.objects.filter(pk__in=batch.delivery_ids).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    worker: Worker = request.getfixturevalue("worker")

    # when
    assert replay_dead_letters(queue=EMAIL_QUEUE) == 1

    # then
    (delivery,) = Delivery.objects.filter(notification_id=notification_id)
    wait_for(lambda: state_of(delivery) == DeliveryState.EXPIRED)
    assert worker.sent() == []


def test_two_concurrent_replays_of_a_failed_delivery_send_it_once(
    worker: Worker, tenant: Tenant, alerts: NotificationType, ada: Recipient
) -> None:
    # given
    delivery = failed_delivery(tenant, ada)
    assert delivery.attempts == 1
    start = threading.Barrier(2)
    results: list[bool] = []

    def replay() -> None:
        try:
            start.wait()
            results.append(replay_delivery(delivery_id=delivery.pk, now=timezone.now()))
        finally:
            db_connection.close()

    # when two operators replay it at the same moment
    threads = [threading.Thread(target=replay) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # then one replay won, and the delivery was sent once, on its second attempt
    assert sorted(results) == [False, True]
    wait_for(lambda: state_of(delivery) == DeliveryState.SENT)
    time.sleep(1)
    assert [m["correlation_id"] for m in worker.sent()] == [str(delivery.pk)]
    assert delivery.attempts == 2
    assert delivery.failed_at is None
    assert delivery.events.filter(code="replayed").count() == 1


def test_an_expired_failed_delivery_is_not_replayed(
    worker: Worker, tenant: Tenant, alerts: NotificationType, ada: Recipient
) -> None:
    # given a failed delivery whose notification has expired since
    delivery = failed_delivery(tenant, ada)
    Delivery.objects.filter(pk=delivery.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    # when
    replayed = replay_delivery(delivery_id=delivery.pk, now=timezone.now())

    # then
    assert replayed is False
    assert state_of(delivery) == DeliveryState.FAILED
    assert "InvalidRecipient" in delivery.reason
    assert not delivery.events.filter(code="replayed").exists()
    time.sleep(1)
    assert worker.sent() == []


def test_the_command_lists_and_replays_dead_letters_and_failed_deliveries(
    worker: Worker, tenant: Tenant, alerts: NotificationType, ada: Recipient
) -> None:
    # given a poison message and a failed delivery
    task_id = poison()
    delivery = failed_delivery(tenant, ada)
    wait_for(lambda: letters_of(task_id))

    # when
    listed = run("deadletters", "list")

    # then
    dead_part, failed_part = listed.split("Recently failed deliveries")
    row = next(line for line in dead_part.splitlines() if line.startswith(task_id))
    assert row.split()[1:5] == ["notify.plan.notification", "notify.planning", "rejected", "1"]
    row = next(line for line in failed_part.splitlines() if line.startswith(str(delivery.pk)))
    assert "email" in row
    assert "InvalidRecipient" in row

    # a replay must say what to replay
    with pytest.raises(CommandError, match="Say which dead letters"):
        run("deadletters", "replay")
    with pytest.raises(CommandError, match="No dead letter"):
        run("deadletters", "replay", "--id", "no-such-task")

    # the poison runs again, dies again and is back, counted as replayed once
    assert run("deadletters", "replay", "--id", task_id).strip() == "Replayed 1 dead letter(s)."
    wait_for(lambda: [d.replays for d in letters_of(task_id)] == [1])
    assert (
        run("deadletters", "replay", "--queue", "notify.planning").strip()
        == "Replayed 1 dead letter(s)."
    )
    wait_for(lambda: [d.replays for d in letters_of(task_id)] == [2])

    # the failed delivery is sent once; a second replay finds it no longer failed
    assert run("deadletters", "replay", "--delivery", str(delivery.pk)).strip() == (
        f"Delivery {delivery.pk} replayed."
    )
    wait_for(lambda: state_of(delivery) == DeliveryState.SENT)
    with pytest.raises(CommandError, match="not failed or unknown"):
        run("deadletters", "replay", "--delivery", str(delivery.pk))
    assert [m["correlation_id"] for m in worker.sent()] == [str(delivery.pk)]


def test_the_admin_action_replays_failed_deliveries_and_refuses_expired_ones(
    worker: Worker,
    admin_client: Client,
    tenant: Tenant,
    alerts: NotificationType,
    ada: Recipient,
) -> None:
    # given two failed deliveries, one of which has expired since
    fixed = failed_delivery(tenant, ada)
    expired = failed_delivery(tenant, ada)
    Delivery.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    # when
    response = admin_client.post(
        reverse("admin:notifications_delivery_changelist"),
        {"action": "replay_selected", "_selected_action": [fixed.pk, expired.pk]},
    )

    # then
    assert response.status_code == 302
    assert messages_of(response) == [
        f"Replayed 1 delivery(ies): #{fixed.pk}.",
        f"Refused 1 delivery(ies), not failed or unknown, or expired: #{expired.pk}.",
    ]
    wait_for(lambda: state_of(fixed) == DeliveryState.SENT)
    time.sleep(1)
    assert state_of(expired) == DeliveryState.FAILED
    assert [m["correlation_id"] for m in worker.sent()] == [str(fixed.pk)]


def test_the_dead_letters_page_lists_a_message_and_replays_it_on_a_csrf_checked_post(
    worker: Worker, admin_client: Client, admin_user: User
) -> None:
    # given
    task_id = poison()
    wait_for(lambda: letters_of(task_id))
    page_url = reverse("admin:notifications_delivery_dead_letters")
    replay_url = reverse("admin:notifications_delivery_replay_dead_letter")

    # when
    page = admin_client.get(page_url)

    # then it shows the message, why it died, and a replay form with the CSRF token
    assert page.status_code == 200
    content = page.content.decode()
    assert task_id in content
    assert "notify.plan.notification" in content
    assert "rejected" in content
    assert "notification_id=not-a-uuid" in content
    assert 'name="csrfmiddlewaretoken"' in content
    assert (
        page_url
        in admin_client.get(reverse("admin:notifications_delivery_changelist")).content.decode()
    )

    # a POST without the token is refused, and a GET replays nothing
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin_user)
    assert strict.post(replay_url, {"message_id": task_id}).status_code == 403
    assert admin_client.get(replay_url, {"message_id": task_id}).status_code == 405
    assert [d.replays for d in letters_of(task_id)] == [0]

    # when the button is pressed
    response = admin_client.post(replay_url, {"message_id": task_id, "queue": "notify.planning"})

    # then
    assert response.status_code == 302
    assert response["Location"] == f"{page_url}?queue=notify.planning"
    assert messages_of(response) == [f"Replayed {task_id}: its task runs again."]
    wait_for(lambda: [d.replays for d in letters_of(task_id)] == [1])


def test_staff_who_may_only_view_deliveries_see_dead_letters_but_cannot_replay(
    rabbitmq: PrivateRabbitMQ,
) -> None:
    # given a dead letter, a user who is not staff, and staff who may only view deliveries
    task_id = dead_letter_by_hand(
        rabbitmq, tasks.deliver_email, EMAIL_QUEUE, delivery_ids=[1], lane="transactional"
    )
    page_url = reverse("admin:notifications_delivery_dead_letters")
    replay_url = reverse("admin:notifications_delivery_replay_dead_letter")
    outsider, viewer = Client(), Client()
    outsider.force_login(User.objects.create_user(username="outsider"))
    staff = User.objects.create_user(username="viewer", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_delivery"))
    viewer.force_login(staff)

    # then
    assert outsider.get(page_url).status_code == 302
    assert outsider.post(replay_url, {"message_id": task_id}).status_code == 302
    page = viewer.get(page_url)
    assert page.status_code == 200
    assert task_id in page.content.decode()
    assert 'value="Replay"' not in page.content.decode()
    assert viewer.post(replay_url, {"message_id": task_id}).status_code == 403
    changelist = viewer.get(reverse("admin:notifications_delivery_changelist"))
    assert "replay_selected" not in changelist.content.decode()
    assert [d.replays for d in letters_of(task_id)] == [0]
