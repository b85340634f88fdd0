"""Tenancy: another tenant's rows are invisible. Their ids answer 404, never data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from rest_framework.test import APIClient

from notifier.content.models import NotificationType, Template, TemplateVersion
from notifier.core.enums import Channel
from notifier.notifications.models import Delivery, DeliveryState, Notification
from notifier.recipients import services as recipient_services
from notifier.recipients.models import Device, Recipient, Suppression
from notifier.tenancy.models import Tenant
from tests.api.contract import accept, assert_error
from tests.factories import (
    NotificationTypeFactory,
    RecipientFactory,
    TenantFactory,
    client_for,
    published_template,
)

TOKEN = "f00d" * 16


@dataclass(frozen=True)
class Other:
    """Everything the other tenant has."""

    tenant: Tenant
    notification_type: NotificationType
    template: Template
    user: Recipient
    device: Device
    suppression: Suppression
    notification: Notification


@pytest.fixture
def other(db: None) -> Other:
    tenant: Tenant = TenantFactory.create()
    secret = NotificationTypeFactory.create(tenant=tenant, key="secret_type")
    template = published_template(secret, body="Secret {{ name }}", subject="S {{ name }}")
    bob: Recipient = RecipientFactory.create(
        tenant=tenant, user_id="bob", email="bob@other.example"
    )
    RecipientFactory.create(tenant=tenant, user_id="ada", email="ada@other.example")
    device, _ = recipient_services.register_device(recipient=bob, token=TOKEN, platform="ios")
    suppression, _ = recipient_services.upsert_suppression(
        tenant=tenant, channel=Channel.EMAIL, address="blocked@other.example", reason="manual"
    )
    notification = accept(secret, "bob", "ada", name="Bob")
    Delivery.objects.create(
        tenant=tenant,
        notification=notification,
        user_id="bob",
        channel=Channel.EMAIL,
        destination="bob@other.example",
        state=DeliveryState.DELIVERED,
    )
    return Other(tenant, secret, template, bob, device, suppression, notification)


@pytest.fixture
def mine(tenant: Tenant, order_shipped: NotificationType) -> Notification:
    """The caller's own rows: user ada, a suppression and a notification to ada."""
    RecipientFactory.create(tenant=tenant, user_id="ada", email="ada@mine.example")
    recipient_services.upsert_suppression(
        tenant=tenant, channel=Channel.EMAIL, address="mine@example.com", reason="manual"
    )
    return accept(order_shipped, "ada", order_id="1")


# (method, path, body): every endpoint addressing one of the other tenant's rows.
FOREIGN = [
    ("GET", "/api/v1/notifications/{notification}", None),
    ("GET", "/api/v1/users/bob", None),
    ("GET", "/api/v1/users/bob/notification-preferences", None),
    ("PUT", "/api/v1/users/bob/notification-preferences", {"channels": {"email": False}}),
    ("GET", "/api/v1/users/bob/devices", None),
    ("POST", "/api/v1/users/bob/devices", {"token": "1" * 64, "platform": "ios"}),
    ("DELETE", "/api/v1/users/bob/devices", {"token": TOKEN}),
    ("GET", "/api/v1/suppressions/{suppression}", None),
    ("DELETE", "/api/v1/suppressions/{suppression}", None),
    ("GET", "/api/v1/notification-types/secret_type", None),
    (
        "PUT",
        "/api/v1/notification-types/secret_type",
        {"key": "secret_type", "category": "marketing", "default_channels": ["sms"]},
    ),
    ("GET", "/api/v1/templates/{template}", None),
    ("PATCH", "/api/v1/templates/{template}", {"body": "Hacked {{ name }}"}),
    ("DELETE", "/api/v1/templates/{template}", None),
    ("POST", "/api/v1/templates/{template}/publish", None),
    ("POST", "/api/v1/templates/{template}/preview", {}),
    ("GET", "/api/v1/templates/{template}/versions", None),
]


def snapshot(other: Other) -> dict[str, Any]:
    """The other tenant's rows, to show a refused request changed none of them."""
    return {
        "type": NotificationType.objects.filter(pk=other.notification_type.pk).values().get(),
        "template": Template.objects.filter(pk=other.template.pk).values().get(),
        "versions": list(TemplateVersion.objects.filter(template=other.template).values()),
        "user": Recipient.objects.filter(pk=other.user.pk).values().get(),
        "preferences": other.user.channel_preferences.count(),
        "devices": list(Device.objects.filter(tenant=other.tenant).values()),
        "suppressions": list(Suppression.objects.filter(tenant=other.tenant).values()),
    }


@pytest.mark.django_db
class TestForeignIds:
    @pytest.mark.parametrize(
        ("method", "path", "body"), FOREIGN, ids=[f"{m} {p}" for m, p, _ in FOREIGN]
    )
    def test_answer_404_never_data_and_change_nothing(
        self,
        client: APIClient,
        mine: Notification,
        other: Other,
        method: str,
        path: str,
        body: dict[str, Any] | None,
    ) -> None:
        # given
        before = snapshot(other)
        path = path.format(
            notification=other.notification.pk,
            suppression=other.suppression.pk,
            template=other.template.pk,
        )

        # when
        response = client.generic(
            method, path, json.dumps(body or {}), content_type="application/json"
        )

        # then
        assert_error(response, 404, "not_found")
        assert set(response.json()) == {"code", "detail"}
        assert snapshot(other) == before

    def test_the_same_requests_work_for_the_owner(self, other: Other) -> None:
        # given the other tenant's own key
        owner = client_for(other.tenant)

        # when
        statuses = [
            owner.generic(
                method,
                path.format(
                    notification=other.notification.pk,
                    suppression=other.suppression.pk,
                    template=other.template.pk,
                ),
                json.dumps(body or {}),
                content_type="application/json",
            ).status_code
            for method, path, body in FOREIGN
            if method == "GET"
        ]

        # then (so the 404s above come from the tenant, not from the ids)
        assert set(statuses) == {200}

    def test_a_foreign_users_history_is_empty(
        self, client: APIClient, mine: Notification, other: Other
    ) -> None:
        # when
        response = client.get("/api/v1/users/bob/notifications")

        # then
        assert response.status_code == 200
        assert response.json()["results"] == []
        assert response.json()["has_more"] is False

    def test_a_user_id_both_tenants_use_shows_only_the_callers_data(
        self, client: APIClient, mine: Notification, other: Other
    ) -> None:
        # when
        user = client.get("/api/v1/users/ada").json()
        history = client.get("/api/v1/users/ada/notifications").json()

        # then
        assert user["email"] == "ada@mine.example"
        assert [n["notification_id"] for n in history["results"]] == [str(mine.pk)]

    def test_put_of_a_foreign_user_id_creates_the_callers_own_user(
        self, client: APIClient, other: Other
    ) -> None:
        # when
        response = client.put("/api/v1/users/bob", {"email": "bob@mine.example"}, format="json")

        # then
        assert response.status_code == 201
        other.user.refresh_from_db()
        assert other.user.email == "bob@other.example"
        assert Recipient.objects.filter(user_id="bob").count() == 2

    def test_a_token_registered_by_another_tenant_stays_theirs(
        self, client: APIClient, mine: Notification, other: Other
    ) -> None:
        # when the same app install registers with this tenant too
        response = client.post(
            "/api/v1/users/ada/devices", {"token": TOKEN, "platform": "ios"}, format="json"
        )

        # then
        assert response.status_code == 201
        other.device.refresh_from_db()
        assert other.device.recipient_id == other.user.pk
        assert other.device.active is True


@pytest.mark.django_db
class TestForeignNotificationTypes:
    def test_cannot_be_sent(self, client: APIClient, other: Other) -> None:
        # when
        response = client.post(
            "/api/v1/notifications",
            {
                "user_ids": ["ada"],
                "notification_type": "secret_type",
                "template_vars": {"name": "x"},
            },
            format="json",
        )

        # then
        assert_error(response, 422, "unknown_notification_type")

    def test_cannot_get_templates(self, client: APIClient, other: Other) -> None:
        # when
        response = client.post(
            "/api/v1/templates",
            {"notification_type": "secret_type", "channel": "sms", "body": "Hi"},
            format="json",
        )

        # then
        assert_error(response, 422, "unknown_notification_type")
        assert not Template.objects.exclude(tenant=other.tenant).exists()
        assert Template.objects.filter(notification_type=other.notification_type).count() == 1

    def test_cannot_appear_in_preferences(
        self, client: APIClient, mine: Notification, other: Other
    ) -> None:
        # when
        response = client.put(
            "/api/v1/users/ada/notification-preferences",
            {"notification_types": {"secret_type": {"email": False}}},
            format="json",
        )

        # then
        assert_error(response, 422, "unknown_notification_type")

    def test_their_keys_are_free_for_the_caller(self, client: APIClient, other: Other) -> None:
        # when
        response = client.post(
            "/api/v1/notification-types",
            {"key": "secret_type", "category": "social", "default_channels": ["push"]},
            format="json",
        )

        # then
        assert response.status_code == 201
        other.notification_type.refresh_from_db()
        assert other.notification_type.category == "transactional"

    def test_their_suppressed_addresses_are_not_the_callers(
        self, client: APIClient, other: Other
    ) -> None:
        # when
        response = client.post(
            "/api/v1/suppressions",
            {"channel": "email", "address": "blocked@other.example", "reason": "complaint"},
            format="json",
        )

        # then
        assert response.status_code == 201
        other.suppression.refresh_from_db()
        assert other.suppression.reason == "manual"


@pytest.mark.django_db
class TestLists:
    def test_notification_types(self, client: APIClient, mine: Notification, other: Other) -> None:
        listed = client.get("/api/v1/notification-types").json()

        assert [t["key"] for t in listed] == ["order_shipped"]

    def test_templates(
        self, client: APIClient, tenant: Tenant, mine: Notification, other: Other
    ) -> None:
        # when
        listed = client.get("/api/v1/templates").json()
        filtered = client.get("/api/v1/templates", {"notification_type": "secret_type"}).json()

        # then
        assert {t["id"] for t in listed} == set(
            Template.objects.filter(tenant=tenant).values_list("pk", flat=True)
        )
        assert other.template.pk not in {t["id"] for t in listed}
        assert filtered == []

    def test_suppressions(self, client: APIClient, mine: Notification, other: Other) -> None:
        # when
        listed = client.get("/api/v1/suppressions").json()
        searched = client.get("/api/v1/suppressions", {"address": "blocked@other.example"}).json()

        # then
        assert [s["address"] for s in listed] == ["mine@example.com"]
        assert searched == []

    def test_devices_of_a_shared_user_id(
        self, client: APIClient, mine: Notification, other: Other
    ) -> None:
        # given the other tenant's ada has a device
        adas = Recipient.objects.get(tenant=other.tenant, user_id="ada")
        recipient_services.register_device(recipient=adas, token="a" * 64, platform="android")

        # when
        listed = client.get("/api/v1/users/ada/devices").json()

        # then
        assert listed == []

    def test_a_notification_shows_no_foreign_deliveries(
        self, client: APIClient, mine: Notification, other: Other
    ) -> None:
        # given a delivery row of the other tenant's notification to a user named like ours
        Delivery.objects.create(
            tenant=other.tenant,
            notification=other.notification,
            user_id="ada",
            channel=Channel.SMS,
            destination="+14155550123",
        )

        # when
        body = client.get(f"/api/v1/notifications/{mine.pk}").json()

        # then
        assert body["users"] == [{"user_id": "ada", "channels": {}}]
