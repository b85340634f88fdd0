"""Users: upsert, push devices, and notification preferences."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from notifier.recipients.models import Device, QuietHours, Recipient
from notifier.tenancy.models import Tenant
from tests.api.contract import assert_error, assert_invalid_field
from tests.factories import NotificationTypeFactory, RecipientFactory

USER = "/api/v1/users/ada"
DEVICES = "/api/v1/users/ada/devices"
PREFERENCES = "/api/v1/users/ada/notification-preferences"
TOKEN = "a1b2c3d4" * 8


@pytest.fixture
def ada(tenant: Tenant) -> Recipient:
    return RecipientFactory.create(tenant=tenant, user_id="ada", locale="en")


@pytest.mark.django_db
class TestUpsertUser:
    def test_put_creates_the_user_with_201(self, client: APIClient) -> None:
        # when
        response = client.put(
            USER,
            {
                "email": "ada@example.com",
                "phone": "+14155550123",
                "timezone": "Europe/London",
                "locale": "en-GB",
                "attributes": {"plan": "pro", "seats": 3},
            },
            format="json",
        )

        # then
        assert response.status_code == 201
        body = response.json()
        assert body["user_id"] == "ada"
        assert body["email"] == "ada@example.com"
        assert body["phone"] == "+14155550123"
        assert body["timezone"] == "Europe/London"
        assert body["locale"] == "en-GB"
        assert body["attributes"] == {"plan": "pro", "seats": 3}
        assert body["created_at"]
        assert body["updated_at"]
        assert client.get(USER).json() == body

    def test_a_new_user_gets_utc_and_english_by_default(self, client: APIClient) -> None:
        # when
        response = client.put(USER, {}, format="json")

        # then
        assert response.status_code == 201
        assert response.json()["timezone"] == "UTC"
        assert response.json()["locale"] == "en"

    def test_put_again_updates_with_200_and_keeps_fields_not_sent(self, client: APIClient) -> None:
        # given
        created = client.put(
            USER, {"email": "ada@example.com", "timezone": "Europe/Paris"}, format="json"
        )

        # when
        updated = client.put(USER, {"phone": "+33612345678"}, format="json")

        # then
        assert created.status_code == 201
        assert updated.status_code == 200
        assert updated.json()["phone"] == "+33612345678"
        assert updated.json()["email"] == "ada@example.com"
        assert updated.json()["timezone"] == "Europe/Paris"
        assert updated.json()["created_at"] == created.json()["created_at"]
        assert Recipient.objects.filter(user_id="ada").count() == 1

    @pytest.mark.parametrize(
        ("given", "stored"),
        [
            ("+1 (415) 555-0123", "+14155550123"),
            ("+44 20 7946 0958", "+442079460958"),
            ("+33 6 12 34 56 78", "+33612345678"),
        ],
    )
    def test_phone_numbers_are_stored_in_e164(
        self, client: APIClient, given: str, stored: str
    ) -> None:
        # when
        response = client.put(USER, {"phone": given}, format="json")

        # then
        assert response.status_code == 201
        assert response.json()["phone"] == stored
        assert Recipient.objects.get(user_id="ada").phone == stored

    def test_email_domain_is_normalized(self, client: APIClient) -> None:
        # when
        response = client.put(USER, {"email": "Ada.Lovelace@Example.COM"}, format="json")

        # then
        assert response.json()["email"] == "Ada.Lovelace@example.com"

    @pytest.mark.parametrize("field", ["email", "phone"])
    @pytest.mark.parametrize("empty", ["", None])
    def test_contact_points_can_be_removed(
        self, client: APIClient, ada: Recipient, field: str, empty: str | None
    ) -> None:
        # when
        response = client.put(USER, {field: empty}, format="json")

        # then
        assert response.status_code == 200
        assert response.json()[field] == ""

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("phone", "4155550123"),
            ("phone", "+1 555"),
            ("phone", "+999 1234567"),
            ("phone", "+1415555012345678901"),
            ("phone", "+14155550123\n"),
            ("email", "not-an-email"),
            ("email", "ada@"),
            ("email", "ada@example.com\r\nBcc: eve@example.com"),
            ("timezone", "Mars/Olympus_Mons"),
            ("timezone", "utc+2"),
            ("timezone", ""),
            ("locale", "english"),
            ("locale", "e"),
            ("locale", "pt_BR"),
            ("attributes", ["not", "an", "object"]),
            ("attributes", "plan=pro"),
            ("attributes", {"x" * 10: "y" * 20_000}),
            ("email", 42),
        ],
    )
    def test_invalid_fields_answer_400_naming_the_field(
        self, client: APIClient, ada: Recipient, field: str, value: Any
    ) -> None:
        # when
        response = client.put(USER, {field: value}, format="json")

        # then
        assert_invalid_field(response, field)
        ada.refresh_from_db()
        assert getattr(ada, field) != value

    @pytest.mark.parametrize(
        "user_id", ["%20ada", "ada%20", "a%0Ada", "x" * 256], ids=["lead", "trail", "lf", "long"]
    )
    def test_an_invalid_user_id_in_the_path_answers_400(
        self, client: APIClient, user_id: str
    ) -> None:
        # when
        response = client.put(f"/api/v1/users/{user_id}", {}, format="json")

        # then
        assert_error(response, 400, "invalid_user_id")
        assert not Recipient.objects.exists()

    def test_get_of_an_unknown_user_answers_404(self, client: APIClient) -> None:
        assert_error(client.get("/api/v1/users/nobody"), 404, "not_found")


@pytest.mark.django_db
class TestDevices:
    def test_register_answers_201_and_lists_the_device(
        self, client: APIClient, ada: Recipient
    ) -> None:
        # when
        response = client.post(
            DEVICES, {"token": TOKEN, "platform": "ios", "app": "com.example"}, format="json"
        )

        # then
        assert response.status_code == 201
        body = response.json()
        assert body["token"] == TOKEN
        assert body["platform"] == "ios"
        assert body["app"] == "com.example"
        assert body["active"] is True
        assert client.get(DEVICES).json() == [body]

    def test_surrounding_whitespace_of_a_token_is_dropped(
        self, client: APIClient, ada: Recipient
    ) -> None:
        # when
        response = client.post(DEVICES, {"token": f"  {TOKEN} ", "platform": "ios"}, format="json")

        # then
        assert response.json()["token"] == TOKEN
        assert Device.objects.get().token == TOKEN

    def test_registering_again_answers_200_and_reactivates_the_device(
        self, client: APIClient, ada: Recipient
    ) -> None:
        # given a device the provider reported dead
        client.post(DEVICES, {"token": TOKEN, "platform": "android"}, format="json")
        Device.objects.update(
            active=False,
            deactivated_at=timezone.now(),
            deactivation_reason="unregistered",
            last_seen_at=timezone.now() - timedelta(days=30),
        )

        # when the app registers its token again
        response = client.post(DEVICES, {"token": TOKEN, "platform": "android"}, format="json")

        # then
        assert response.status_code == 200
        assert response.json()["active"] is True
        device = Device.objects.get()
        assert device.active is True
        assert device.deactivated_at is None
        assert device.deactivation_reason == ""
        assert device.last_seen_at > timezone.now() - timedelta(minutes=1)

    def test_a_token_registered_by_another_user_moves_to_this_one(
        self, client: APIClient, tenant: Tenant, ada: Recipient
    ) -> None:
        # given the install was signed in as bob
        RecipientFactory.create(tenant=tenant, user_id="bob")
        client.post("/api/v1/users/bob/devices", {"token": TOKEN, "platform": "ios"}, format="json")

        # when ada signs in on it
        response = client.post(DEVICES, {"token": TOKEN, "platform": "ios"}, format="json")

        # then
        assert response.status_code == 200
        assert client.get("/api/v1/users/bob/devices").json() == []
        assert [d["token"] for d in client.get(DEVICES).json()] == [TOKEN]

    def test_devices_are_listed_most_recently_seen_first(
        self, client: APIClient, ada: Recipient
    ) -> None:
        # given
        for token in ("old" * 10, "new" * 10):
            client.post(DEVICES, {"token": token, "platform": "web"}, format="json")

        # when
        listed = client.get(DEVICES).json()

        # then
        assert [d["token"] for d in listed] == ["new" * 10, "old" * 10]

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"token": "has space", "platform": "ios"}, "token"),
            ({"token": "", "platform": "ios"}, "token"),
            ({"token": "   ", "platform": "ios"}, "token"),
            ({"token": "x" * 4097, "platform": "ios"}, "token"),
            ({"token": "tök", "platform": "ios"}, "token"),
            ({"token": 12345, "platform": "ios"}, "token"),
            ({"token": TOKEN, "platform": "blackberry"}, "platform"),
            ({"token": TOKEN}, "platform"),
            ({"platform": "ios"}, "token"),
            ({"token": TOKEN, "platform": "ios", "app": "a\nb"}, "app"),
        ],
    )
    def test_invalid_devices_answer_400_naming_the_field(
        self, client: APIClient, ada: Recipient, body: dict[str, Any], field: str
    ) -> None:
        # when
        response = client.post(DEVICES, body, format="json")

        # then
        assert_invalid_field(response, field)
        assert not Device.objects.exists()

    def test_unregister_answers_204_and_removes_the_device(
        self, client: APIClient, ada: Recipient
    ) -> None:
        # given
        client.post(DEVICES, {"token": TOKEN, "platform": "ios"}, format="json")

        # when
        response = client.delete(DEVICES, {"token": TOKEN}, format="json")

        # then
        assert response.status_code == 204
        assert response.content == b""
        assert client.get(DEVICES).json() == []
        assert_error(client.delete(DEVICES, {"token": TOKEN}, format="json"), 404, "not_found")

    def test_unregistering_an_unknown_token_answers_404(
        self, client: APIClient, ada: Recipient
    ) -> None:
        # given
        client.post(DEVICES, {"token": TOKEN, "platform": "ios"}, format="json")

        # when
        response = client.delete(DEVICES, {"token": "b" * 64}, format="json")

        # then
        assert_error(response, 404, "not_found")
        assert Device.objects.count() == 1

    def test_another_users_token_cannot_be_unregistered(
        self, client: APIClient, tenant: Tenant, ada: Recipient
    ) -> None:
        # given bob's device
        RecipientFactory.create(tenant=tenant, user_id="bob")
        client.post("/api/v1/users/bob/devices", {"token": TOKEN, "platform": "ios"}, format="json")

        # when ada's endpoint is asked to remove it
        response = client.delete(DEVICES, {"token": TOKEN}, format="json")

        # then
        assert_error(response, 404, "not_found")
        assert len(client.get("/api/v1/users/bob/devices").json()) == 1

    def test_unregister_needs_a_token(self, client: APIClient, ada: Recipient) -> None:
        assert_invalid_field(client.delete(DEVICES, {}, format="json"), "token")

    @pytest.mark.parametrize("method", ["get", "post", "delete"])
    def test_devices_of_an_unknown_user_answer_404(self, client: APIClient, method: str) -> None:
        # when
        response = getattr(client, method)(
            DEVICES, {"token": TOKEN, "platform": "ios"}, format="json"
        )

        # then
        assert_error(response, 404, "not_found")
        assert not Device.objects.exists()


FULL_DOCUMENT = {
    "channels": {"push": True, "email": True, "sms": False},
    "quiet_hours": {"start": "22:00", "end": "07:30", "timezone": "Europe/Paris"},
    "notification_types": {
        "weekly_digest": {"email": False},
        "order_shipped": {"push": True, "sms": False},
    },
    "language": "fr",
}


@pytest.fixture
def types(tenant: Tenant) -> None:
    NotificationTypeFactory.create(tenant=tenant, key="weekly_digest")
    NotificationTypeFactory.create(tenant=tenant, key="order_shipped")


@pytest.mark.django_db
class TestPreferences:
    def test_a_new_user_has_an_empty_document(self, client: APIClient, ada: Recipient) -> None:
        # when
        response = client.get(PREFERENCES)

        # then
        assert response.status_code == 200
        assert response.json() == {
            "channels": {},
            "quiet_hours": None,
            "notification_types": {},
            "language": "en",
        }

    def test_put_then_get_returns_the_same_document(
        self, client: APIClient, ada: Recipient, types: None
    ) -> None:
        # when
        put = client.put(PREFERENCES, FULL_DOCUMENT, format="json")

        # then
        assert put.status_code == 200
        assert put.json() == FULL_DOCUMENT
        assert client.get(PREFERENCES).json() == FULL_DOCUMENT

    def test_language_is_the_users_locale(
        self, client: APIClient, ada: Recipient, types: None
    ) -> None:
        # when
        client.put(PREFERENCES, FULL_DOCUMENT, format="json")

        # then
        assert client.get(USER).json()["locale"] == "fr"

    def test_put_replaces_the_whole_document(
        self, client: APIClient, ada: Recipient, types: None
    ) -> None:
        # given
        client.put(PREFERENCES, FULL_DOCUMENT, format="json")

        # when the next document leaves out what it does not set
        response = client.put(PREFERENCES, {"channels": {"email": False}}, format="json")

        # then channels and types left out follow the defaults again, and quiet hours are gone
        assert response.json() == {
            "channels": {"email": False},
            "quiet_hours": None,
            "notification_types": {},
            "language": "fr",
        }
        assert client.get(PREFERENCES).json() == response.json()

    def test_channels_left_out_follow_the_defaults(
        self, client: APIClient, ada: Recipient, types: None
    ) -> None:
        # when only sms is switched off, for the whole channel and for one type
        response = client.put(
            PREFERENCES,
            {"channels": {"sms": False}, "notification_types": {"order_shipped": {"sms": False}}},
            format="json",
        )

        # then push and email carry no explicit choice: they stay allowed by default
        assert response.json()["channels"] == {"sms": False}
        assert response.json()["notification_types"] == {"order_shipped": {"sms": False}}
        assert ada.channel_preferences.count() == 1

    def test_quiet_hours_null_removes_them(
        self, client: APIClient, ada: Recipient, types: None
    ) -> None:
        # given
        client.put(PREFERENCES, FULL_DOCUMENT, format="json")

        # when
        response = client.put(PREFERENCES, {**FULL_DOCUMENT, "quiet_hours": None}, format="json")

        # then
        assert response.status_code == 200
        assert client.get(PREFERENCES).json()["quiet_hours"] is None
        assert not QuietHours.objects.exists()

    def test_quiet_hours_may_span_midnight_or_not(self, client: APIClient, ada: Recipient) -> None:
        # when
        response = client.put(
            PREFERENCES,
            {"quiet_hours": {"start": "09:00", "end": "17:00", "timezone": "Asia/Tokyo"}},
            format="json",
        )

        # then
        assert response.json()["quiet_hours"] == {
            "start": "09:00",
            "end": "17:00",
            "timezone": "Asia/Tokyo",
        }

    def test_an_unknown_notification_type_answers_422_and_changes_nothing(
        self, client: APIClient, ada: Recipient, types: None
    ) -> None:
        # given
        client.put(PREFERENCES, FULL_DOCUMENT, format="json")

        # when
        response = client.put(
            PREFERENCES,
            {"channels": {"push": False}, "notification_types": {"no_such_type": {"push": False}}},
            format="json",
        )

        # then
        body = assert_error(response, 422, "unknown_notification_type")
        assert "no_such_type" in body["detail"]
        assert client.get(PREFERENCES).json() == FULL_DOCUMENT

    @pytest.mark.parametrize(
        ("document", "field"),
        [
            (
                {"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Mars/Base"}},
                "quiet_hours",
            ),
            ({"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": ""}}, "quiet_hours"),
            ({"quiet_hours": {"start": "22:00", "end": "22:00", "timezone": "UTC"}}, "quiet_hours"),
            ({"quiet_hours": {"start": "24:00", "end": "07:00", "timezone": "UTC"}}, "quiet_hours"),
            ({"quiet_hours": {"start": "10pm", "end": "07:00", "timezone": "UTC"}}, "quiet_hours"),
            # seconds would be shown back truncated, an offset silently dropped
            (
                {"quiet_hours": {"start": "22:00:30", "end": "07:00", "timezone": "UTC"}},
                "quiet_hours",
            ),
            (
                {"quiet_hours": {"start": "22:00+02:00", "end": "07:00", "timezone": "UTC"}},
                "quiet_hours",
            ),
            ({"quiet_hours": {"start": "22:00"}}, "quiet_hours"),
            ({"quiet_hours": "22:00-07:00"}, "quiet_hours"),
            ({"channels": {"push": "yes"}}, "channels"),
            ({"channels": {"push": 1}}, "channels"),
            ({"channels": {"push": "true"}}, "channels"),
            ({"channels": {"push": None}}, "channels"),
            ({"channels": ["push"]}, "channels"),
            ({"notification_types": {"weekly_digest": {"email": "no"}}}, "notification_types"),
            ({"notification_types": {"weekly_digest": {"email": 0}}}, "notification_types"),
            ({"notification_types": {"weekly_digest": {"fax": True}}}, "notification_types"),
            ({"notification_types": {"weekly_digest": False}}, "notification_types"),
            ({"language": "français"}, "language"),
        ],
    )
    def test_invalid_documents_answer_400_naming_the_field(
        self, client: APIClient, ada: Recipient, types: None, document: dict[str, Any], field: str
    ) -> None:
        # when
        response = client.put(PREFERENCES, document, format="json")

        # then
        assert_invalid_field(response, field)
        assert client.get(PREFERENCES).json()["channels"] == {}

    @pytest.mark.parametrize("method", ["get", "put"])
    def test_preferences_of_an_unknown_user_answer_404(
        self, client: APIClient, method: str
    ) -> None:
        # when
        response = getattr(client, method)(
            "/api/v1/users/nobody/notification-preferences", {}, format="json"
        )

        # then
        assert_error(response, 404, "not_found")
