"""GET a notification's status, and a user's notification history."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from notifier.content.models import NotificationType
from notifier.core.enums import Channel
from notifier.notifications.models import Delivery, DeliveryState, Notification
from tests.api.contract import accept, assert_error, assert_invalid_field

TIMESTAMPS = ("queued_at", "sent_at", "delivered_at", "read_at", "failed_at")


def deliver(
    notification: Notification,
    user_id: str,
    channel: str,
    state: str,
    *,
    destination: str = "ada@example.com",
    reason: str = "",
    **timestamps: datetime,
) -> Delivery:
    """A delivery row as the pipeline would leave it."""
    return Delivery.objects.create(
        tenant=notification.tenant,
        notification=notification,
        user_id=user_id,
        channel=channel,
        destination=destination,
        state=state,
        reason=reason,
        **timestamps,
    )


def view_of(delivery: Delivery) -> dict[str, Any]:
    """What the API shows of ``delivery``, timestamps parsed back."""
    return {
        "delivery_id": delivery.pk,
        "status": delivery.state,
        "reason": delivery.reason,
        **{name: getattr(delivery, name) for name in TIMESTAMPS},
    }


def parsed(views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {k: datetime.fromisoformat(v) if k in TIMESTAMPS and v else v for k, v in view.items()}
        for view in views
    ]


@pytest.mark.django_db
class TestNotificationStatus:
    def test_a_just_accepted_notification_lists_its_users_in_request_order(
        self, client: APIClient, order_shipped: NotificationType
    ) -> None:
        # given
        sent = client.post(
            "/api/v1/notifications",
            {
                "user_ids": ["zoe", "ada"],
                "notification_type": "order_shipped",
                "template_vars": {"order_id": "1042"},
                "metadata": {"order": 1042},
            },
            format="json",
        ).json()

        # when
        response = client.get(f"/api/v1/notifications/{sent['notification_id']}")

        # then
        assert response.status_code == 200
        body = response.json()
        assert body["notification_id"] == sent["notification_id"]
        assert body["notification_type"] == "order_shipped"
        assert body["status"] == "queued"
        assert body["priority"] == "normal"
        assert body["channels_targeted"] == ["push", "email"]
        assert body["template_id"] == "default"
        assert body["metadata"] == {"order": 1042}
        assert body["scheduled_at"] is None
        assert body["expires_at"] is None
        assert datetime.fromisoformat(body["created_at"]) <= timezone.now()
        assert body["users"] == [
            {"user_id": "zoe", "channels": {}},
            {"user_id": "ada", "channels": {}},
        ]

    def test_deliveries_are_shown_per_user_and_channel_with_their_timestamps(
        self, client: APIClient, order_shipped: NotificationType
    ) -> None:
        # given deliveries the pipeline recorded
        notification = accept(order_shipped, "ada", "bob", order_id="7")
        now = timezone.now()
        phone = deliver(
            notification, "ada", Channel.PUSH, DeliveryState.DELIVERED, destination="tok-1",
            sent_at=now, delivered_at=now + timedelta(seconds=1),
        )  # fmt: skip
        tablet = deliver(
            notification, "ada", Channel.PUSH, DeliveryState.READ, destination="tok-2",
            sent_at=now, delivered_at=now, read_at=now + timedelta(minutes=5),
        )  # fmt: skip
        email = deliver(
            notification, "ada", Channel.EMAIL, DeliveryState.BOUNCED,
            reason="mailbox does not exist", failed_at=now,
        )  # fmt: skip
        bobs = deliver(notification, "bob", Channel.EMAIL, DeliveryState.QUEUED)

        # when
        body = client.get(f"/api/v1/notifications/{notification.pk}").json()

        # then
        users = {user["user_id"]: user["channels"] for user in body["users"]}
        assert list(users) == ["ada", "bob"]
        assert set(users["ada"]) == {"push", "email"}
        assert parsed(users["ada"]["push"]) == [view_of(phone), view_of(tablet)]
        assert parsed(users["ada"]["email"]) == [view_of(email)]
        assert parsed(users["bob"]["email"]) == [view_of(bobs)]
        assert users["ada"]["email"][0]["status"] == "bounced"
        assert users["ada"]["email"][0]["reason"] == "mailbox does not exist"
        assert users["bob"]["email"][0]["sent_at"] is None

    def test_only_this_notifications_deliveries_are_shown(
        self, client: APIClient, order_shipped: NotificationType
    ) -> None:
        # given
        shown = accept(order_shipped, "ada", order_id="1")
        other = accept(order_shipped, "ada", order_id="2")
        deliver(other, "ada", Channel.EMAIL, DeliveryState.SENT)

        # when
        body = client.get(f"/api/v1/notifications/{shown.pk}").json()

        # then
        assert body["users"] == [{"user_id": "ada", "channels": {}}]

    def test_an_unknown_id_answers_404(self, client: APIClient) -> None:
        # when
        response = client.get("/api/v1/notifications/6f1c4b4e-0000-4000-8000-000000000000")

        # then
        assert_error(response, 404, "not_found")

    def test_an_id_that_is_not_a_uuid_answers_404(self, client: APIClient) -> None:
        assert_error(client.get("/api/v1/notifications/42"), 404, "not_found")


HISTORY = "/api/v1/users/ada/notifications"


@pytest.mark.django_db
class TestUserHistory:
    def test_newest_first_with_this_users_deliveries_only(
        self, client: APIClient, order_shipped: NotificationType
    ) -> None:
        # given three notifications to ada, one also to bob, one to bob alone
        first = accept(order_shipped, "ada", order_id="1")
        second = accept(order_shipped, "ada", "bob", order_id="2")
        accept(order_shipped, "bob", order_id="3")
        third = accept(order_shipped, "ada", order_id="4")
        adas = deliver(second, "ada", Channel.EMAIL, DeliveryState.DELIVERED)
        deliver(second, "bob", Channel.EMAIL, DeliveryState.FAILED)

        # when
        response = client.get(HISTORY)

        # then
        assert response.status_code == 200
        body = response.json()
        assert [n["notification_id"] for n in body["results"]] == [
            str(third.pk),
            str(second.pk),
            str(first.pk),
        ]
        assert list(body["results"][1]["channels"]) == ["email"]
        assert parsed(body["results"][1]["channels"]["email"]) == [view_of(adas)]
        assert body["results"][0]["channels"] == {}
        assert body["results"][0]["notification_type"] == "order_shipped"
        assert body["results"][0]["status"] == "queued"
        assert body["page"] == 1
        assert body["limit"] == 20
        assert body["has_more"] is False

    def test_pages_follow_each_other_and_say_whether_more_exist(
        self, client: APIClient, order_shipped: NotificationType
    ) -> None:
        # given five notifications, oldest first
        ids = [str(accept(order_shipped, "ada", order_id=str(i)).pk) for i in range(5)]
        newest_first = ids[::-1]

        # when
        pages = [client.get(HISTORY, {"page": page, "limit": 2}).json() for page in (1, 2, 3, 4)]

        # then
        assert [[n["notification_id"] for n in p["results"]] for p in pages] == [
            newest_first[0:2],
            newest_first[2:4],
            newest_first[4:5],
            [],
        ]
        assert [p["has_more"] for p in pages] == [True, True, False, False]
        assert [(p["page"], p["limit"]) for p in pages] == [(1, 2), (2, 2), (3, 2), (4, 2)]

    def test_a_full_last_page_says_no_more(
        self, client: APIClient, order_shipped: NotificationType
    ) -> None:
        # given
        for i in range(4):
            accept(order_shipped, "ada", order_id=str(i))

        # when
        body = client.get(HISTORY, {"page": 2, "limit": 2}).json()

        # then
        assert len(body["results"]) == 2
        assert body["has_more"] is False

    def test_the_default_page_holds_twenty(
        self, client: APIClient, order_shipped: NotificationType
    ) -> None:
        # given
        for i in range(21):
            accept(order_shipped, "ada", order_id=str(i))

        # when
        body = client.get(HISTORY).json()

        # then
        assert len(body["results"]) == 20
        assert body["has_more"] is True

    def test_a_user_without_notifications_has_an_empty_history(self, client: APIClient) -> None:
        # when
        response = client.get("/api/v1/users/nobody/notifications")

        # then
        assert response.status_code == 200
        assert response.json() == {"results": [], "page": 1, "limit": 20, "has_more": False}

    @pytest.mark.parametrize(
        ("query", "field"),
        [
            ({"page": 0}, "page"),
            ({"page": -1}, "page"),
            ({"page": "two"}, "page"),
            ({"limit": 0}, "limit"),
            ({"limit": 101}, "limit"),
            ({"limit": "all"}, "limit"),
            ({"offset": 10}, "offset"),
        ],
    )
    def test_invalid_paging_answers_400_naming_the_parameter(
        self, client: APIClient, query: dict[str, Any], field: str
    ) -> None:
        assert_invalid_field(client.get(HISTORY, query), field)
