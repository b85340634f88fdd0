"""What a web process keeps of API keys, notification types and published templates.

A change made through this process applies to the next request; one made by another process
(here: a queryset ``update`` or ``bulk_create``, which send no model signals, as a change in
another process sends none here) within ``NOTIFIER_API_CACHE_SECONDS``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from notifier.content import services as content_services
from notifier.content.models import NotificationType, Template
from notifier.core.enums import Channel
from notifier.tenancy.models import ApiKey, Scope, Tenant
from notifier.tenancy.services import issue_api_key, revoke_api_key
from tests.api.contract import assert_error
from tests.factories import NotificationTypeFactory

URL = "/api/v1/notifications"
TTL = 0.3


def send(client: APIClient, notification_type: str = "order_shipped", **extra: object) -> Any:
    body = {"user_ids": ["ada"], "notification_type": notification_type, **extra}
    body.setdefault("template_vars", {"order_id": "1042"})
    return client.post(URL, body, format="json")


def keyed_client(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


@pytest.fixture(autouse=True)
def short_cache(settings) -> None:
    settings.NOTIFIER_API_CACHE_SECONDS = TTL


@pytest.mark.django_db
class TestApiKeys:
    def test_a_key_revoked_through_this_process_is_refused_at_once(self, tenant: Tenant) -> None:
        # given a key that was just used (and so is cached)
        issued = issue_api_key(tenant=tenant, scopes=[Scope.READ])
        client = keyed_client(issued.raw_key)
        assert client.get("/api/v1/users/ada/notifications").status_code == 200

        # when it is revoked here
        revoke_api_key(api_key=issued.api_key)

        # then the very next request is refused
        assert_error(client.get("/api/v1/users/ada/notifications"), 401, "invalid_api_key")

    def test_a_key_revoked_elsewhere_is_refused_once_the_cache_expires(
        self, tenant: Tenant
    ) -> None:
        # given a key that was just used
        issued = issue_api_key(tenant=tenant, scopes=[Scope.READ])
        client = keyed_client(issued.raw_key)
        assert client.get("/api/v1/users/ada/notifications").status_code == 200

        # when another process revokes it
        ApiKey.objects.filter(pk=issued.api_key.pk).update(revoked_at=timezone.now())

        # then this process accepts it for at most NOTIFIER_API_CACHE_SECONDS more
        assert client.get("/api/v1/users/ada/notifications").status_code == 200
        time.sleep(TTL + 0.05)
        assert_error(client.get("/api/v1/users/ada/notifications"), 401, "invalid_api_key")

    def test_with_caching_off_a_revocation_elsewhere_applies_at_once(
        self, tenant: Tenant, settings
    ) -> None:
        settings.NOTIFIER_API_CACHE_SECONDS = 0
        issued = issue_api_key(tenant=tenant, scopes=[Scope.READ])
        client = keyed_client(issued.raw_key)
        assert client.get("/api/v1/users/ada/notifications").status_code == 200

        ApiKey.objects.filter(pk=issued.api_key.pk).update(revoked_at=timezone.now())

        assert_error(client.get("/api/v1/users/ada/notifications"), 401, "invalid_api_key")


@pytest.mark.django_db
class TestContent:
    def test_a_new_version_published_here_is_enforced_at_once(
        self, client: APIClient, order_shipped: NotificationType
    ) -> None:
        # given sends that were accepted with order_id alone
        assert send(client).status_code == 202

        # when the email template is published again, now needing a carrier too
        template = Template.objects.get(notification_type=order_shipped, channel=Channel.EMAIL)
        content_services.update_template(
            template=template,
            changes={
                "body": "Order {{ order_id }} shipped by {{ carrier }}",
                "variables": ["order_id", "carrier"],
                "sample_vars": {"order_id": "1", "carrier": "UPS"},
            },
        )
        content_services.publish_template(template=template)

        # then the next send without it is refused, naming it
        response = send(client)
        assert_error(response, 422, "missing_template_variables")
        assert response.json()["missing"] == ["carrier"]

    def test_a_template_archived_elsewhere_stops_sends_once_the_cache_expires(
        self, client: APIClient, order_shipped: NotificationType
    ) -> None:
        # given sends by email that were accepted
        assert send(client, channels=["email"]).status_code == 202

        # when another process archives the email template
        Template.objects.filter(notification_type=order_shipped, channel=Channel.EMAIL).update(
            archived_at=timezone.now()
        )

        # then this process accepts email sends for at most NOTIFIER_API_CACHE_SECONDS more
        assert send(client, channels=["email"]).status_code == 202
        time.sleep(TTL + 0.05)
        assert_error(send(client, channels=["email"]), 422, "unknown_template")

    def test_an_unknown_type_is_not_remembered(self, client: APIClient, tenant: Tenant) -> None:
        # given a send to a type that does not exist yet
        assert_error(send(client, "price_drop"), 422, "unknown_notification_type")

        # when another process creates it (without templates yet)
        NotificationType.objects.bulk_create(
            [NotificationTypeFactory.build(tenant=tenant, key="price_drop")]
        )

        # then this process finds it at once: the refusal is now about its templates
        assert_error(send(client, "price_drop"), 422, "unknown_template")
