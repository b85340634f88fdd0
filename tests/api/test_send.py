"""POST /api/v1/notifications: acceptance, validation and idempotency."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from notifier.content.models import NotificationType
from notifier.notifications.models import (
    IdempotencyRecord,
    Notification,
    NotificationRecipient,
    OutboxMessage,
)
from notifier.tenancy.models import Tenant
from notifier.tenancy.services import issue_api_key
from tests.factories import TenantFactory, client_for, published_template

URL = "/api/v1/notifications"


def send_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "user_ids": ["user-1", "user-2"],
        "notification_type": "order_shipped",
        "template_vars": {"order_id": "1042"},
    }
    body.update(overrides)
    return body


@pytest.mark.django_db
class TestAccept:
    def test_accepts_and_commits_notification_recipients_and_outbox_row(
        self, client: APIClient, order_shipped: NotificationType
    ) -> None:
        # when
        response = client.post(URL, send_body(), format="json")

        # then
        assert response.status_code == 202
        body = response.json()
        assert body["status"] == "queued"
        assert body["channels_targeted"] == ["push", "email"]
        notification = Notification.objects.get(pk=body["notification_id"])
        assert response["Location"] == f"/api/v1/notifications/{notification.pk}"
        assert list(
            NotificationRecipient.objects.filter(notification=notification)
            .order_by("position")
            .values_list("user_id", flat=True)
        ) == ["user-1", "user-2"]
        outbox = OutboxMessage.objects.get()
        # the broker message is a pointer: ids only, no personal data
        assert outbox.payload == {"notification_id": str(notification.pk), "lane": "transactional"}
        assert outbox.published_at is None

    def test_requested_channels_narrow_the_target(
        self, client: APIClient, order_shipped: NotificationType
    ) -> None:
        response = client.post(URL, send_body(channels=["email"]), format="json")

        assert response.status_code == 202
        assert response.json()["channels_targeted"] == ["email"]

    def test_thousand_users_in_one_request(
        self, client: APIClient, order_shipped: NotificationType
    ) -> None:
        user_ids = [f"user-{i}" for i in range(1000)]

        response = client.post(URL, send_body(user_ids=user_ids), format="json")

        assert response.status_code == 202
        notification = Notification.objects.get()
        assert notification.recipient_count == 1000
        assert NotificationRecipient.objects.filter(notification=notification).count() == 1000

    def test_scheduled_in_the_future_is_scheduled_and_released_then(
        self, client: APIClient, order_shipped: NotificationType
    ) -> None:
        at = timezone.now() + timedelta(hours=2)

        response = client.post(URL, send_body(scheduled_at=at.isoformat()), format="json")

        assert response.status_code == 202
        assert response.json()["status"] == "scheduled"
        assert OutboxMessage.objects.get().available_at == at

    @pytest.mark.parametrize(
        ("overrides", "code"),
        [
            ({"notification_type": "nope"}, "unknown_notification_type"),
            ({"template_id": "holiday"}, "unknown_template"),
            ({"channels": ["sms"]}, "unknown_template"),
            ({"template_vars": {}}, "missing_template_variables"),
            ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at_in_past"),
            ({"scheduled_at": "2001-01-01T00:00:00Z"}, "scheduled_at_in_past"),
            ({"scheduled_at": "2999-01-01T00:00:00Z"}, "scheduled_at_too_far"),
        ],
    )
    def test_business_rule_violations_answer_422_and_write_nothing(
        self, client: APIClient, order_shipped: NotificationType, overrides: dict, code: str
    ) -> None:
        response = client.post(URL, send_body(**overrides), format="json")

        assert response.status_code == 422
        assert response.json()["code"] == code
        assert response.json()["detail"]
        assert not Notification.objects.exists()
        assert not OutboxMessage.objects.exists()

    @pytest.mark.parametrize(
        ("overrides", "field"),
        [
            ({"user_ids": []}, "user_ids"),
            ({"user_ids": [f"u{i}" for i in range(1001)]}, "user_ids"),
            ({"user_ids": ["a", "a"]}, "user_ids"),
            ({"user_ids": [1]}, "user_ids"),
            ({"user_ids": ["bad\r\nid"]}, "user_ids"),
            ({"priority": "urgent"}, "priority"),
            ({"channels": ["fax"]}, "channels"),
            ({"channels": ["email", "email"]}, "channels"),
            ({"template_vars": ["not", "an", "object"]}, "template_vars"),
            ({"scheduled_at": "tomorrow"}, "scheduled_at"),
            ({"scheduled_at": "2030-01-01T09:00:00"}, "scheduled_at"),
            ({"request_id": "has\nnewline"}, "request_id"),
            ({"metadata": {"x": "y" * 5000}}, "metadata"),
            ({"notification_id": "00000000-0000-0000-0000-000000000000"}, "notification_id"),
            ({"unexpected": True}, "unexpected"),
        ],
    )
    def test_invalid_fields_answer_400_naming_the_field(
        self, client: APIClient, order_shipped: NotificationType, overrides: dict, field: str
    ) -> None:
        response = client.post(URL, send_body(**overrides), format="json")

        assert response.status_code == 400
        body = response.json()
        assert body["code"] == "invalid_fields"
        assert field in body["fields"]
        assert field in body["detail"]
        assert not Notification.objects.exists()

    def test_malformed_json_answers_400(self, client: APIClient) -> None:
        response = client.post(URL, data="{not json", content_type="application/json")

        assert response.status_code == 400
        assert response.json()["code"] == "malformed_json"

    def test_body_over_the_limit_answers_413(self, client: APIClient, settings) -> None:
        settings.NOTIFIER_MAX_BODY_BYTES = 1000

        response = client.post(URL, send_body(metadata={"x": "y" * 2000}), format="json")

        assert response.status_code == 413
        assert response.json()["code"] == "payload_too_large"


@pytest.mark.django_db
class TestIdempotency:
    def test_same_key_and_body_replays_the_same_response(
        self, client: APIClient, order_shipped: NotificationType
    ) -> None:
        # given
        first = client.post(URL, send_body(request_id="order-1042"), format="json")

        # when
        again = client.post(URL, send_body(request_id="order-1042"), format="json")

        # then
        assert first.status_code == again.status_code == 202
        assert again.json() == first.json()
        assert again["Idempotent-Replayed"] == "true"
        assert Notification.objects.count() == 1
        assert OutboxMessage.objects.count() == 1

    def test_header_key_is_equivalent_to_request_id(
        self, client: APIClient, order_shipped: NotificationType
    ) -> None:
        first = client.post(URL, send_body(), format="json", HTTP_IDEMPOTENCY_KEY='"k-1"')
        again = client.post(URL, send_body(request_id="k-1"), format="json")

        assert again.json()["notification_id"] == first.json()["notification_id"]
        assert Notification.objects.count() == 1

    def test_header_and_body_keys_that_differ_are_refused(
        self, client: APIClient, order_shipped: NotificationType
    ) -> None:
        response = client.post(
            URL, send_body(request_id="a"), format="json", HTTP_IDEMPOTENCY_KEY="b"
        )

        assert response.status_code == 400

    def test_same_key_different_body_is_422(
        self, client: APIClient, order_shipped: NotificationType
    ) -> None:
        client.post(URL, send_body(request_id="k"), format="json")

        response = client.post(URL, send_body(request_id="k", user_ids=["other"]), format="json")

        assert response.status_code == 422
        assert response.json()["code"] == "idempotency_key_reused"
        assert Notification.objects.count() == 1

    def test_keys_are_per_tenant(self, client: APIClient, order_shipped: NotificationType) -> None:
        # given another tenant with the same type, using the same key
        other = TenantFactory.create()
        other_type = NotificationType.objects.get(pk=order_shipped.pk)
        other_type.pk = None
        other_type.tenant = other
        other_type.save()
        published_template(
            other_type, subject="{{ order_id }}", body="{{ order_id }}", variables=("order_id",)
        )
        first = client.post(URL, send_body(request_id="shared"), format="json")

        # when
        second = client_for(other).post(URL, send_body(request_id="shared"), format="json")

        # then
        assert second.status_code == 202
        assert second.json()["notification_id"] != first.json()["notification_id"]

    def test_expired_key_creates_a_new_notification(
        self, client: APIClient, order_shipped: NotificationType
    ) -> None:
        first = client.post(URL, send_body(request_id="old"), format="json")
        IdempotencyRecord.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

        again = client.post(URL, send_body(request_id="old"), format="json")

        assert again.status_code == 202
        assert again.json()["notification_id"] != first.json()["notification_id"]

    def test_failed_validation_is_not_remembered(
        self, client: APIClient, order_shipped: NotificationType
    ) -> None:
        bad = client.post(URL, send_body(request_id="k", template_vars={}), format="json")
        good = client.post(URL, send_body(request_id="k"), format="json")

        assert bad.status_code == 422
        assert good.status_code == 202


@pytest.mark.django_db(transaction=True)
def test_twenty_identical_concurrent_requests_create_one_notification(
    live_server, tenant: Tenant, order_shipped: NotificationType
) -> None:
    # given twenty clients released at once with the same key and body
    raw_key = issue_api_key(tenant=tenant, scopes=["send"]).raw_key
    payload = json.dumps(send_body(request_id="burst-1")).encode()
    barrier = threading.Barrier(20)

    def post() -> tuple[int, dict]:
        request = urllib.request.Request(
            live_server.url + URL,
            data=payload,
            method="POST",
            headers={"Authorization": f"Bearer {raw_key}", "Content-Type": "application/json"},
        )
        barrier.wait()
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    # when
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda _: post(), range(20)))

    # then exactly one notification exists; every 202 names it, every other answer is a 409
    assert Notification.objects.count() == 1
    notification_id = str(Notification.objects.get().pk)
    statuses = sorted(status for status, _ in results)
    assert set(statuses) <= {202, 409}
    assert all(body["notification_id"] == notification_id for s, body in results if s == 202)
    assert all(body["code"] == "idempotency_in_flight" for s, body in results if s == 409)
    assert OutboxMessage.objects.count() == 1


@pytest.mark.django_db
def test_a_named_channel_without_a_template_is_refused_not_dropped(
    client: APIClient, order_shipped: NotificationType
) -> None:
    # given order_shipped has email and push templates but none for SMS

    # when the caller asks for email and SMS explicitly
    response = client.post(URL, send_body(channels=["email", "sms"]), format="json")

    # then nothing is accepted, and the answer names the channel
    assert response.status_code == 422
    assert response.json()["code"] == "unknown_template"
    assert "sms" in response.json()["detail"]
    assert not Notification.objects.exists()
