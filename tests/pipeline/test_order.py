"""Per-user order (SPEC guarantee 10): within a lane, a user's deliveries on a channel leave in
the order their notifications were accepted, and the tests count the sends that did not."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

import celeryconfig
from channels.registry import registry
from notifier.content.models import NotificationType
from notifier.core.enums import Channel
from notifier.notifications import planning, sending, services, sweeps, tasks
from notifier.notifications.models import Delivery, DeliveryState, Notification
from notifier.recipients.models import Recipient
from notifier.tenancy.models import Tenant
from tests.factories import NotificationTypeFactory, RecipientFactory, published_template
from tests.pipeline.conftest import Worker, wait_for


@pytest.fixture
def news(tenant: Tenant) -> NotificationType:
    notification_type = NotificationTypeFactory.create(
        tenant=tenant, key="news", default_channels=[Channel.EMAIL]
    )
    published_template(notification_type, subject="#{{ n }}", body="#{{ n }}", variables=("n",))
    return notification_type


def accept(tenant: Tenant, user_id: str, n: int) -> str:
    outcome = services.accept_notification(
        tenant=tenant,
        request=services.SendRequest(
            user_ids=[user_id], notification_type="news", template_vars={"n": str(n)}
        ),
    )
    return str(outcome.body["notification_id"])


def planned_delivery(notification_id: str) -> Delivery:
    planning.plan_notification(notification_id=notification_id, now=timezone.now(), batch_size=50)  # type: ignore[arg-type]
    return Delivery.objects.get(notification_id=notification_id)


def sent_subjects() -> list[str]:
    return [accepted.message.subject for accepted in registry.get("email").sent]  # type: ignore[attr-defined]


@pytest.fixture
def sandbox_records() -> None:
    registry.get("email").clear()  # type: ignore[attr-defined]


@pytest.mark.django_db
@pytest.mark.usefixtures("news", "sandbox_records")
def test_a_later_delivery_waits_for_the_earlier_one_even_within_one_batch(
    tenant: Tenant,
) -> None:
    # given two notifications to ada, accepted in order, planned in the opposite order
    RecipientFactory.create(tenant=tenant, user_id="ada", email="ada@example.com")
    first_id, second_id = accept(tenant, "ada", 1), accept(tenant, "ada", 2)
    second = planned_delivery(second_id)
    first = planned_delivery(first_id)

    # when one task carries both, the later one first
    sending.send_deliveries(delivery_ids=[second.pk, first.pk])

    # then only the earlier one is sent; the later one waits for it, without using an attempt
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.state == DeliveryState.SENT
    assert (second.state, second.reason) == (DeliveryState.DEFERRED, sending.ORDER_WAIT_REASON)
    assert second.attempts == 0
    assert sent_subjects() == ["#1"]

    # and once the earlier one has its outcome the later one is queued again, and sent
    batches = sweeps.release_waiting(delivery_ids=[first.pk], now=timezone.now(), batch_size=50)
    assert [(b.lane, b.channel, b.delivery_ids) for b in batches] == [
        ("transactional", "email", [second.pk])
    ]
    sending.send_deliveries(delivery_ids=batches[0].delivery_ids)
    second.refresh_from_db()
    assert second.state == DeliveryState.SENT
    assert sent_subjects() == ["#1", "#2"]


@pytest.mark.django_db
@pytest.mark.usefixtures("news", "sandbox_records")
def test_order_does_not_hold_across_users_lanes_or_an_old_predecessor(
    tenant: Tenant, settings: Any
) -> None:
    settings.NOTIFIER_ORDER_WINDOW = 60
    for user_id in ("ada", "bob"):
        RecipientFactory.create(tenant=tenant, user_id=user_id, email=f"{user_id}@example.com")
    # an earlier notification to ada accepted long ago, still queued (stuck behind a backlog)
    old = planned_delivery(accept(tenant, "ada", 0))
    Notification.objects.filter(pk=old.notification_id).update(
        created_at=timezone.now() - timedelta(minutes=5)
    )
    Delivery.objects.filter(pk=old.pk).update(accepted_at=timezone.now() - timedelta(minutes=5))
    bobs = planned_delivery(accept(tenant, "bob", 1))
    adas = planned_delivery(accept(tenant, "ada", 2))

    sending.send_deliveries(delivery_ids=[adas.pk, bobs.pk])

    assert set(
        Delivery.objects.filter(pk__in=[adas.pk, bobs.pk]).values_list("state", flat=True)
    ) == {DeliveryState.SENT}


@pytest.mark.django_db
@pytest.mark.usefixtures("news", "sandbox_records")
def test_ordering_off_sends_both_at_once(tenant: Tenant, settings: Any) -> None:
    settings.NOTIFIER_ORDER_WINDOW = 0
    RecipientFactory.create(tenant=tenant, user_id="ada", email="ada@example.com")
    first = planned_delivery(accept(tenant, "ada", 1))
    second = planned_delivery(accept(tenant, "ada", 2))

    sending.send_deliveries(delivery_ids=[second.pk, first.pk])

    assert sorted(sent_subjects()) == ["#1", "#2"]


USERS = 2  # fewer users than concurrent senders, so a user's sends overlap
ROUNDS = 15


def out_of_order_sends(worker: Worker) -> tuple[int, int]:
    """(sends that left after a later-accepted one of the same user, all sends)."""
    accepted = {
        pk: at for pk, at in Delivery.objects.values_list("pk", "accepted_at") if at is not None
    }
    latest: dict[str, Any] = {}
    inversions = 0
    sent = worker.sent()
    for message in sent:
        at = accepted[int(message["correlation_id"])]
        user = message["destination"]
        if user in latest and at < latest[user]:
            inversions += 1
        latest[user] = max(at, latest.get(user, at))
    return inversions, len(sent)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("order_window", "expect_in_order"), [("120", True), ("0", False)])
def test_out_of_order_sends_are_counted_and_zero_with_ordering_on(
    start_worker: Callable[..., Worker],
    tenant: Tenant,
    news: NotificationType,
    order_window: str,
    expect_in_order: bool,
) -> None:
    # given racing senders, and a provider whose answers take 0–400 ms (one planner: two
    # notifications whose planning races are ordered only once both are planned, as
    # docs/architecture.md says)
    env = {"NOTIFIER_ORDER_WINDOW": order_window, "NOTIFIER_SANDBOX_JITTER_MS": "400"}
    start_worker(queues=celeryconfig.PLANNING_QUEUE, concurrency=1, **env)
    Recipient.objects.bulk_create(
        Recipient(tenant=tenant, user_id=f"u{i}", email=f"u{i}@example.com") for i in range(USERS)
    )

    # when every user is sent ROUNDS notifications, one after another, all planned and queued
    # before the senders start (so each user's deliveries are taken by senders side by side)
    for n in range(ROUNDS):
        for i in range(USERS):
            accept(tenant, f"u{i}", n)
    wait_for(lambda: Delivery.objects.count() == USERS * ROUNDS, timeout=60, interval=0.2)
    lane = ",".join(
        q.name for q in celeryconfig.task_queues if q.name.startswith("notify.transactional.")
    )
    worker = start_worker(queues=lane, concurrency=4, **env)

    # then (with beat's release of waiting deliveries) every one is sent once
    def all_sent() -> bool:
        tasks.release_due_deliveries()
        return len(worker.sent()) >= USERS * ROUNDS

    wait_for(all_sent, timeout=60, interval=0.2)
    inversions, total = out_of_order_sends(worker)
    assert total == USERS * ROUNDS
    if expect_in_order:
        assert inversions == 0, f"{inversions} of {total} sends left out of order"
    else:
        # the negative control: without the check, racing workers do reorder a user's sends
        assert inversions > 0
