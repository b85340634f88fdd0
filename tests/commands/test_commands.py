"""Management commands: API keys, the demo tenant, the schema and service checks."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.test import APIClient

from notifier.content.models import NotificationType, Template, TemplateVersion
from notifier.core.enums import Channel
from notifier.recipients.models import Device, Recipient
from notifier.tenancy.models import ApiKey, Tenant
from notifier.tenancy.services import hash_key

DEMO_TYPES = {"order_shipped", "security_alert", "friend_request", "weekly_digest"}


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
class TestCreateApiKey:
    def test_prints_the_raw_key_last_and_stores_only_its_hash(self) -> None:
        # when
        output = run("create_api_key", "--tenant", "acme", "--scope", "send", "--scope", "read")

        # then
        raw_key = output.strip().splitlines()[-1]
        key = ApiKey.objects.get(tenant__name="acme")
        assert raw_key.startswith(f"ntf_{key.prefix}_")
        assert key.key_hash == hash_key(raw_key)
        assert raw_key not in key.key_hash
        assert sorted(key.scopes) == ["read", "send"]

    def test_printed_key_authenticates_with_its_scopes_only(self) -> None:
        raw_key = run("create_api_key", "--tenant", "acme", "--scope", "read").split()[-1]
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")

        assert client.get("/api/v1/users/nobody/notifications").status_code == 200
        assert client.post("/api/v1/notifications", {}, format="json").status_code == 403

    def test_reuses_an_existing_tenant(self) -> None:
        run("create_api_key", "--tenant", "acme", "--scope", "send")
        run("create_api_key", "--tenant", "acme", "--scope", "manage")

        assert Tenant.objects.filter(name="acme").count() == 1
        assert ApiKey.objects.filter(tenant__name="acme").count() == 2


@pytest.mark.django_db
class TestLoadDemo:
    def test_loads_users_devices_types_and_a_published_template_per_channel(self) -> None:
        # when
        run("load_demo")

        # then
        demo = Tenant.objects.get(name="demo")
        assert set(NotificationType.objects.filter(tenant=demo).values_list("key", flat=True)) == (
            DEMO_TYPES
        )
        for key in DEMO_TYPES:
            published = Template.objects.filter(
                notification_type__key=key, published_version__isnull=False
            )
            assert set(published.values_list("channel", flat=True)) == set(Channel.values)
        recipients = Recipient.objects.filter(tenant=demo)
        assert recipients.count() >= 3
        assert all(r.email and r.phone for r in recipients)
        assert Device.objects.filter(tenant=demo, active=True).exists()
        assert get_user_model().objects.filter(username="admin", is_superuser=True).exists()

    def test_is_idempotent(self) -> None:
        run("load_demo")
        counts = (
            Recipient.objects.count(),
            Template.objects.count(),
            TemplateVersion.objects.count(),
        )

        output = run("load_demo")

        assert (
            Recipient.objects.count(),
            Template.objects.count(),
            TemplateVersion.objects.count(),
        ) == counts
        assert "created with password" not in output

    def test_demo_send_from_the_readme_is_accepted(self) -> None:
        # given the demo and a key, as `make run` prints them
        run("load_demo")
        raw_key = run("create_api_key", "--tenant", "demo", "--scope", "send").split()[-1]
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")

        # when
        response = client.post(
            "/api/v1/notifications",
            {
                "user_ids": ["user-1"],
                "notification_type": "order_shipped",
                "template_vars": {"order_id": "1042", "carrier": "UPS", "eta": "Tuesday"},
            },
            format="json",
        )

        # then
        assert response.status_code == 202, response.json()
        assert response.json()["channels_targeted"] == ["push", "email"]


def test_openapi_schema_validates_without_warnings(tmp_path) -> None:
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml")
    )
    schema = (tmp_path / "schema.yml").read_text()
    for path in (
        "/api/v1/notifications:",
        "/api/v1/notifications/{notification_id}:",
        "/api/v1/users/{user_id}/notifications:",
        "/api/v1/users/{user_id}/notification-preferences:",
        "/api/v1/users/{user_id}:",
        "/api/v1/users/{user_id}/devices:",
        "/api/v1/templates/{template_id}/publish:",
        "/api/v1/templates/{template_id}/preview:",
        "/api/v1/suppressions:",
    ):
        assert path in schema


@pytest.mark.django_db
def test_check_services_reports_each_service() -> None:
    output = run("check_services")

    assert {"postgresql: ok", "rabbitmq: ok", "redis: ok"} <= set(output.splitlines())
