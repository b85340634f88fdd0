"""Notification types and templates: create, edit, publish versions, preview, archive."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from notifier.content.models import NotificationType, Template, TemplateVersion
from notifier.tenancy.models import Tenant
from tests.api.contract import assert_error, assert_invalid_field
from tests.factories import NotificationTypeFactory

TYPES = "/api/v1/notification-types"
TEMPLATES = "/api/v1/templates"
ORDER_SHIPPED = {
    "key": "order_shipped",
    "name": "Order shipped",
    "category": "transactional",
    "default_priority": "high",
    "default_channels": ["push", "email"],
}
EMAIL = {
    "notification_type": "order_shipped",
    "channel": "email",
    "subject": "Order {{ order_id }} has shipped",
    "body": "Order {{ order_id }} is on its way with {{ carrier }}.",
    "html": "<p>Order <b>{{ order_id }}</b> is on its way with {{ carrier }}.</p>",
    "variables": ["order_id", "carrier"],
    "sample_vars": {"order_id": "1042", "carrier": "UPS"},
}


@pytest.fixture
def shipped_type(client: APIClient) -> dict[str, Any]:
    response = client.post(TYPES, ORDER_SHIPPED, format="json")
    assert response.status_code == 201
    return dict(response.json())


@pytest.fixture
def template(client: APIClient, shipped_type: dict[str, Any]) -> dict[str, Any]:
    response = client.post(TEMPLATES, EMAIL, format="json")
    assert response.status_code == 201
    return dict(response.json())


def url(template: dict[str, Any], action: str = "") -> str:
    return f"{TEMPLATES}/{template['id']}" + (f"/{action}" if action else "")


@pytest.mark.django_db
class TestNotificationTypes:
    def test_create_answers_201_and_the_type_can_be_read_back(self, client: APIClient) -> None:
        # when
        response = client.post(TYPES, ORDER_SHIPPED, format="json")

        # then
        assert response.status_code == 201
        body = response.json()
        assert {k: body[k] for k in ORDER_SHIPPED} == ORDER_SHIPPED
        assert client.get(f"{TYPES}/order_shipped").json() == body

    def test_name_and_priority_have_defaults(self, client: APIClient) -> None:
        # when
        response = client.post(
            TYPES,
            {"key": "friend_request", "category": "social", "default_channels": ["push"]},
            format="json",
        )

        # then
        assert response.json()["name"] == ""
        assert response.json()["default_priority"] == "normal"

    def test_types_are_listed_by_key(self, client: APIClient) -> None:
        # given
        for key in ("weekly_digest", "account_locked", "order_shipped"):
            client.post(
                TYPES,
                {"key": key, "category": "social", "default_channels": ["email"]},
                format="json",
            )

        # when
        listed = client.get(TYPES).json()

        # then
        assert [t["key"] for t in listed] == ["account_locked", "order_shipped", "weekly_digest"]

    def test_a_second_type_with_the_same_key_answers_409(
        self, client: APIClient, shipped_type: dict[str, Any]
    ) -> None:
        # when
        response = client.post(TYPES, {**ORDER_SHIPPED, "category": "social"}, format="json")

        # then
        assert_error(response, 409, "already_exists")
        assert client.get(f"{TYPES}/order_shipped").json()["category"] == "transactional"

    def test_put_replaces_the_settings(
        self, client: APIClient, shipped_type: dict[str, Any]
    ) -> None:
        # when
        response = client.put(
            f"{TYPES}/order_shipped",
            {"key": "order_shipped", "category": "marketing", "default_channels": ["sms"]},
            format="json",
        )

        # then
        assert response.status_code == 200
        body = client.get(f"{TYPES}/order_shipped").json()
        assert body["category"] == "marketing"
        assert body["default_channels"] == ["sms"]
        assert body["default_priority"] == "normal"
        assert body["name"] == ""
        assert body["created_at"] == shipped_type["created_at"]

    def test_the_key_cannot_be_changed(
        self, client: APIClient, shipped_type: dict[str, Any]
    ) -> None:
        # when
        response = client.put(
            f"{TYPES}/order_shipped", {**ORDER_SHIPPED, "key": "renamed"}, format="json"
        )

        # then
        assert_invalid_field(response, "key")
        assert_error(client.get(f"{TYPES}/renamed"), 404, "not_found")

    @pytest.mark.parametrize("method", ["get", "put"])
    def test_an_unknown_type_answers_404(self, client: APIClient, method: str) -> None:
        # when
        response = getattr(client, method)(f"{TYPES}/order_shipped", ORDER_SHIPPED, format="json")

        # then
        assert_error(response, 404, "not_found")
        assert not NotificationType.objects.exists()

    @pytest.mark.parametrize(
        ("overrides", "field"),
        [
            ({"key": "order shipped"}, "key"),
            ({"key": "order.shipped"}, "key"),
            ({"key": 42}, "key"),
            ({"key": ""}, "key"),
            ({"category": "spam"}, "category"),
            ({"default_priority": "urgent"}, "default_priority"),
            ({"default_channels": []}, "default_channels"),
            ({"default_channels": ["fax"]}, "default_channels"),
            ({"default_channels": ["push", "push"]}, "default_channels"),
            ({"default_channels": "push"}, "default_channels"),
            ({"name": "two\nlines"}, "name"),
        ],
    )
    def test_invalid_types_answer_400_naming_the_field(
        self, client: APIClient, overrides: dict[str, Any], field: str
    ) -> None:
        # when
        response = client.post(TYPES, {**ORDER_SHIPPED, **overrides}, format="json")

        # then
        assert_invalid_field(response, field)
        assert not NotificationType.objects.exists()


@pytest.mark.django_db
class TestCreateTemplate:
    def test_create_answers_201_with_a_draft_not_yet_published(
        self, client: APIClient, shipped_type: dict[str, Any]
    ) -> None:
        # when
        response = client.post(TEMPLATES, EMAIL, format="json")

        # then
        assert response.status_code == 201
        body = response.json()
        assert {k: body[k] for k in EMAIL} == EMAIL
        assert body["locale"] == "en"
        assert body["variant"] == "default"
        assert body["published_version"] is None
        assert client.get(url(body)).json() == body
        assert client.get(url(body, "versions")).json() == []

    def test_an_unknown_notification_type_answers_422(self, client: APIClient) -> None:
        # when
        response = client.post(TEMPLATES, EMAIL, format="json")

        # then
        assert_error(response, 422, "unknown_notification_type")
        assert not Template.objects.exists()

    def test_a_second_template_for_the_same_slot_answers_409(
        self, client: APIClient, template: dict[str, Any]
    ) -> None:
        # when
        response = client.post(TEMPLATES, {**EMAIL, "subject": "Other"}, format="json")

        # then
        assert_error(response, 409, "already_exists")
        assert Template.objects.count() == 1

    def test_other_locales_and_variants_are_other_slots(
        self, client: APIClient, template: dict[str, Any]
    ) -> None:
        # when
        french = client.post(TEMPLATES, {**EMAIL, "locale": "fr"}, format="json")
        short = client.post(TEMPLATES, {**EMAIL, "variant": "short"}, format="json")

        # then
        assert french.status_code == short.status_code == 201

    @pytest.mark.parametrize(
        ("overrides", "field"),
        [
            ({"body": "Hi {{ name }}"}, "body"),
            ({"body": "Hi {{ order_id"}, "body"),
            ({"body": "{{ order_id.__class__ }}"}, "body"),
            ({"body": "{% include 'secret.txt' %}"}, "body"),
            ({"subject": ""}, "subject"),
            ({"subject": "{{ password }}"}, "subject"),
            ({"html": "<p>{{ nope }}</p>"}, "html"),
            ({"variables": ["order_id", "order_id", "carrier"]}, "variables"),
            ({"variables": ["order id", "carrier"]}, "variables"),
            ({"variables": "order_id"}, "variables"),
            ({"channel": "fax"}, "channel"),
            ({"locale": "english"}, "locale"),
            ({"variant": "not a slug"}, "variant"),
            ({"sample_vars": ["1042"]}, "sample_vars"),
            ({"notification_type": 7}, "notification_type"),
        ],
    )
    def test_invalid_templates_answer_400_naming_the_field(
        self, client: APIClient, shipped_type: dict[str, Any], overrides: dict[str, Any], field: str
    ) -> None:
        # when
        response = client.post(TEMPLATES, {**EMAIL, **overrides}, format="json")

        # then
        assert_invalid_field(response, field)
        assert not Template.objects.exists()

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"channel": "sms", "subject": "Hi", "body": "Shipped"}, "subject"),
            ({"channel": "sms", "body": "Shipped", "html": "<p>x</p>"}, "html"),
            ({"channel": "push", "body": "Shipped", "html": "<p>x</p>"}, "html"),
            ({"channel": "push", "body": "   "}, "body"),
        ],
    )
    def test_parts_a_channel_does_not_have_are_refused(
        self, client: APIClient, shipped_type: dict[str, Any], body: dict[str, Any], field: str
    ) -> None:
        # when
        response = client.post(
            TEMPLATES, {"notification_type": "order_shipped", **body}, format="json"
        )

        # then
        assert_invalid_field(response, field)


@pytest.mark.django_db
class TestListTemplates:
    def test_filters_by_type_and_channel(self, client: APIClient, tenant: Tenant) -> None:
        # given
        for key in ("order_shipped", "weekly_digest"):
            NotificationTypeFactory.create(tenant=tenant, key=key)
            for channel in ("sms", "push"):
                client.post(
                    TEMPLATES,
                    {"notification_type": key, "channel": channel, "body": "Hi"},
                    format="json",
                )

        # when
        by_type = client.get(TEMPLATES, {"notification_type": "weekly_digest"}).json()
        by_channel = client.get(TEMPLATES, {"channel": "sms"}).json()
        both = client.get(
            TEMPLATES, {"notification_type": "order_shipped", "channel": "push"}
        ).json()

        # then
        assert {(t["notification_type"], t["channel"]) for t in by_type} == {
            ("weekly_digest", "sms"),
            ("weekly_digest", "push"),
        }
        assert {(t["notification_type"], t["channel"]) for t in by_channel} == {
            ("order_shipped", "sms"),
            ("weekly_digest", "sms"),
        }
        assert [(t["notification_type"], t["channel"]) for t in both] == [("order_shipped", "push")]

    def test_pages_in_creation_order(self, client: APIClient, shipped_type: dict[str, Any]) -> None:
        # given
        ids = [
            client.post(
                TEMPLATES,
                {
                    "notification_type": "order_shipped",
                    "channel": "sms",
                    "variant": f"v{i}",
                    "body": "x",
                },
                format="json",
            ).json()["id"]
            for i in range(5)
        ]

        # when
        pages = [client.get(TEMPLATES, {"page": p, "limit": 2}).json() for p in (1, 2, 3)]

        # then
        assert [[t["id"] for t in page] for page in pages] == [ids[0:2], ids[2:4], ids[4:5]]

    @pytest.mark.parametrize(
        ("query", "field"),
        [({"channel": "fax"}, "channel"), ({"limit": 500}, "limit"), ({"sort": "id"}, "sort")],
    )
    def test_invalid_queries_answer_400(
        self, client: APIClient, query: dict[str, Any], field: str
    ) -> None:
        assert_invalid_field(client.get(TEMPLATES, query), field)


@pytest.mark.django_db
class TestPublish:
    def test_publish_creates_version_1_and_makes_it_the_published_one(
        self, client: APIClient, template: dict[str, Any]
    ) -> None:
        # when
        response = client.post(url(template, "publish"))

        # then
        assert response.status_code == 201
        version = response.json()
        assert version["version"] == 1
        assert version["subject"] == EMAIL["subject"]
        assert version["body"] == EMAIL["body"]
        assert version["html"] == EMAIL["html"]
        assert version["variables"] == EMAIL["variables"]
        assert version["published_at"]
        assert client.get(url(template)).json()["published_version"] == 1

    def test_publishing_again_adds_a_version_and_keeps_the_old_ones(
        self, client: APIClient, template: dict[str, Any]
    ) -> None:
        # given
        client.post(url(template, "publish"))
        client.patch(url(template), {"body": "Version two for {{ order_id }}"}, format="json")

        # when
        response = client.post(url(template, "publish"))

        # then
        assert response.json()["version"] == 2
        versions = client.get(url(template, "versions")).json()
        assert [v["version"] for v in versions] == [2, 1]
        assert versions[0]["body"] == "Version two for {{ order_id }}"
        assert versions[1]["body"] == EMAIL["body"]
        assert client.get(url(template)).json()["published_version"] == 2

    def test_a_publish_that_fails_its_test_render_answers_422(
        self, client: APIClient, shipped_type: dict[str, Any]
    ) -> None:
        # given a template that cannot render with its sample values
        created = client.post(
            TEMPLATES,
            {
                "notification_type": "order_shipped",
                "channel": "sms",
                "body": "Total: {{ total + 1 }}",
                "variables": ["total"],
                "sample_vars": {"total": "ten"},
            },
            format="json",
        ).json()

        # when
        response = client.post(url(created, "publish"))

        # then
        body = assert_error(response, 422, "template_render_failed")
        assert "body" in body["detail"]
        assert client.get(url(created)).json()["published_version"] is None
        assert client.get(url(created, "versions")).json() == []

    def test_a_publish_without_sample_values_for_every_variable_answers_422(
        self, client: APIClient, template: dict[str, Any]
    ) -> None:
        # given a published version 1, then a draft whose samples miss a variable
        client.post(url(template, "publish"))
        client.patch(url(template), {"sample_vars": {"order_id": "1"}}, format="json")

        # when
        response = client.post(url(template, "publish"))

        # then
        body = assert_error(response, 422, "template_render_failed")
        assert "carrier" in body["detail"]
        assert client.get(url(template)).json()["published_version"] == 1
        assert TemplateVersion.objects.count() == 1

    def test_editing_the_draft_leaves_the_published_version_alone(
        self, client: APIClient, template: dict[str, Any]
    ) -> None:
        # given
        client.post(url(template, "publish"))

        # when
        edited = client.patch(
            url(template), {"subject": "Changed {{ order_id }}", "body": "New"}, format="json"
        )

        # then the draft changed, version 1 did not, and sends still use it
        assert edited.status_code == 200
        assert edited.json()["subject"] == "Changed {{ order_id }}"
        assert edited.json()["body"] == "New"
        assert edited.json()["html"] == EMAIL["html"]
        assert edited.json()["published_version"] == 1
        [version] = client.get(url(template, "versions")).json()
        assert version["subject"] == EMAIL["subject"]
        assert version["body"] == EMAIL["body"]
        sent = client.post(
            "/api/v1/notifications",
            {
                "user_ids": ["ada"],
                "notification_type": "order_shipped",
                "channels": ["email"],
                "template_vars": {"order_id": "1", "carrier": "UPS"},
            },
            format="json",
        )
        assert sent.status_code == 202

    @pytest.mark.parametrize(
        ("changes", "field"),
        [
            ({"body": "{{ undeclared }}"}, "body"),
            ({"subject": ""}, "subject"),
            ({"variables": ["order_id"]}, "body"),
            ({"sample_vars": None}, "sample_vars"),
            ({"body": None}, "body"),
        ],
    )
    def test_an_invalid_edit_answers_400_and_keeps_the_draft(
        self, client: APIClient, template: dict[str, Any], changes: dict[str, Any], field: str
    ) -> None:
        # when
        response = client.patch(url(template), changes, format="json")

        # then
        assert_invalid_field(response, field)
        assert client.get(url(template)).json() == template


@pytest.mark.django_db
class TestPreview:
    def test_preview_renders_the_draft_with_its_sample_values(
        self, client: APIClient, template: dict[str, Any]
    ) -> None:
        # when
        response = client.post(url(template, "preview"), {}, format="json")

        # then
        assert response.status_code == 200
        assert response.json() == {
            "subject": "Order 1042 has shipped",
            "body": "Order 1042 is on its way with UPS.",
            "html": "<p>Order <b>1042</b> is on its way with UPS.</p>",
        }

    def test_given_variables_replace_the_samples_and_html_is_escaped(
        self, client: APIClient, template: dict[str, Any]
    ) -> None:
        # when
        response = client.post(
            url(template, "preview"),
            {"template_vars": {"order_id": "<script>", "carrier": "DHL"}},
            format="json",
        )

        # then
        assert response.json()["body"] == "Order <script> is on its way with DHL."
        assert "&lt;script&gt;" in response.json()["html"]
        assert "<script>" not in response.json()["html"]

    def test_preview_shows_the_draft_not_the_published_version(
        self, client: APIClient, template: dict[str, Any]
    ) -> None:
        # given
        client.post(url(template, "publish"))
        client.patch(url(template), {"body": "Draft {{ order_id }}"}, format="json")

        # when
        response = client.post(url(template, "preview"), {}, format="json")

        # then
        assert response.json()["body"] == "Draft 1042"

    def test_a_missing_variable_answers_422(
        self, client: APIClient, template: dict[str, Any]
    ) -> None:
        # when
        response = client.post(
            url(template, "preview"), {"template_vars": {"order_id": "1"}}, format="json"
        )

        # then
        body = assert_error(response, 422, "template_render_failed")
        assert "carrier" in body["detail"]

    def test_variables_must_be_an_object(self, client: APIClient, template: dict[str, Any]) -> None:
        response = client.post(url(template, "preview"), {"template_vars": [1]}, format="json")

        assert_invalid_field(response, "template_vars")


@pytest.mark.django_db
class TestArchive:
    def test_archive_answers_204_and_the_template_is_gone_from_the_api(
        self, client: APIClient, template: dict[str, Any]
    ) -> None:
        # given a published template
        client.post(url(template, "publish"))

        # when
        response = client.delete(url(template))

        # then
        assert response.status_code == 204
        for action in ("", "versions"):
            assert_error(client.get(url(template, action)), 404, "not_found")
        assert client.get(TEMPLATES).json() == []
        assert_error(client.delete(url(template)), 404, "not_found")

    def test_archived_versions_are_kept_but_no_longer_sent(
        self, client: APIClient, template: dict[str, Any]
    ) -> None:
        # given
        client.post(url(template, "publish"))

        # when
        client.delete(url(template))

        # then the version deliveries point at stays, but sends find no template
        assert TemplateVersion.objects.filter(template_id=template["id"]).count() == 1
        sent = client.post(
            "/api/v1/notifications",
            {
                "user_ids": ["ada"],
                "notification_type": "order_shipped",
                "channels": ["email"],
                "template_vars": {"order_id": "1", "carrier": "UPS"},
            },
            format="json",
        )
        assert_error(sent, 422, "unknown_template")

    def test_the_slot_of_an_archived_template_can_be_reused(
        self, client: APIClient, template: dict[str, Any]
    ) -> None:
        # given
        client.delete(url(template))

        # when
        response = client.post(TEMPLATES, EMAIL, format="json")

        # then
        assert response.status_code == 201
        assert response.json()["id"] != template["id"]

    @pytest.mark.parametrize(
        ("method", "action"),
        [
            ("get", ""),
            ("patch", ""),
            ("delete", ""),
            ("post", "publish"),
            ("post", "preview"),
            ("get", "versions"),
        ],
    )
    def test_an_unknown_template_answers_404(
        self, client: APIClient, method: str, action: str
    ) -> None:
        # when
        response = getattr(client, method)(url({"id": 999_999}, action), {}, format="json")

        # then
        assert_error(response, 404, "not_found")


@pytest.mark.django_db
class TestNotificationTypeLimits:
    def test_caps_and_dedup_window_round_trip(self, client: APIClient) -> None:
        body = {
            "key": "digest",
            "category": "marketing",
            "default_channels": ["email"],
            "cap_limit": 2,
            "cap_period": 86400,
            "dedup_window": 600,
        }

        created = client.post("/api/v1/notification-types", body, format="json")

        assert created.status_code == 201
        fetched = client.get("/api/v1/notification-types/digest").json()
        assert (fetched["cap_limit"], fetched["cap_period"], fetched["dedup_window"]) == (
            2,
            86400,
            600,
        )

    def test_a_cap_limit_without_its_period_is_refused(self, client: APIClient) -> None:
        body = {"key": "x", "category": "social", "default_channels": ["push"], "cap_limit": 2}

        response = client.post("/api/v1/notification-types", body, format="json")

        assert response.status_code == 400
        assert "cap_period" in response.json()["fields"]
