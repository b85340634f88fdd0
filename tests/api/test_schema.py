"""Schemathesis over /api/schema/: every operation answers what the schema says it does.

Three tests:

- ``test_api``: every operation, the examples, coverage and fuzzing phases, every check
  (no 5xx, status codes, content types, headers, response bodies, valid data accepted, invalid
  data refused, auth enforced, undeclared methods answer 405).
- ``test_stateful``: sequences linked by schemathesis' dependency analysis (create a type, a
  suppression or a template, then read, edit, publish or delete it), with the same checks,
  including ``use_after_free`` and ``ensure_resource_availability``.
- ``test_success_responses_with_real_data_match_the_schema``: generated ids rarely exist, so
  the success bodies with deliveries, quiet hours, versions... are checked on seeded rows.

Requests go through the WSGI application in-process, inside the test's transaction; every
example and every stateful scenario runs in a savepoint that is rolled back, so each starts
from the same seeded data and a failure replays the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import time
from typing import Any

import hypothesis
import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck

from notifier.content import services as content_services
from notifier.content.models import Template
from notifier.core.enums import Category, Channel
from notifier.notifications import services as notification_services
from notifier.notifications.models import Delivery, DeliveryState, Notification
from notifier.recipients import services as recipient_services
from notifier.recipients.models import Platform, Recipient, Suppression
from notifier.tenancy.models import ApiKey, Scope, Tenant
from notifier.tenancy.services import hash_key, split_key
from notifier.wsgi import application
from tests.factories import NotificationTypeFactory, RecipientFactory, TenantFactory

# A fixed key, so the configuration itself carries the credentials: schemathesis then knows
# the auth is explicit and valid, and its ignored_auth check probes without it and with a
# wrong one. The fixture stores its hash in the test database.
RAW_KEY = "ntf_schemathesis_" + "k" * 40

# Operations whose bodies have rules an OpenAPI 3.0 schema cannot state. For them the
# positive_data_acceptance check ("schema-valid data gets a 2xx") is off; every other check
# still runs, and tests/api/test_*.py assert each of these rules by name.
RULES_THE_SCHEMA_CANNOT_STATE = {
    # The Idempotency-Key header must equal request_id when both are sent; template_vars and
    # metadata keys must be free of control characters (OpenAPI 3.0 has no propertyNames).
    "send_notification": "cross-field key rule; object key rules",
    # Whether an address is valid depends on the channel: an email address, an E.164 number
    # or a push token.
    "create_suppression": "address format depends on channel",
    # Subject, body and html must be valid Jinja2 within the sandbox, use declared variables
    # only, and fit the channel (an SMS has no subject); sample_vars keys as above.
    "create_template": "Jinja2 sandbox and channel rules",
    "update_template": "Jinja2 sandbox and channel rules",
    # template_vars keys must be free of control characters, as for sending.
    "preview_template": "object key rules",
    # timezone is one of the ~600 IANA names of the host's tz database; a phone number must
    # exist in its country's numbering plan (libphonenumber), not just look like E.164.
    "upsert_user": "IANA time zone, real phone number, email, language tag",
    # Quiet hours need an IANA time zone and a start different from the end.
    "replace_preferences": "IANA time zone; start differs from end",
    # The key in the body must equal the key in the path (it cannot be renamed); cap_limit and
    # cap_period are given together or not at all.
    "replace_notification_type": "body key equals path key; cap fields together",
    "create_notification_type": "cap_limit and cap_period together",
}

CONFIG = schemathesis.Config.from_dict(
    {
        "headers": {"Authorization": f"Bearer {RAW_KEY}"},
        "generation": {"max-examples": 50},
        "phases": {
            # Links between operations are inferred from the schema (ids in responses that
            # fill path parameters of other operations); drf-spectacular writes no links.
            "stateful": {"enabled": True, "inference": {"algorithms": ["dependency-analysis"]}},
        },
        "checks": {
            # 413: the body limit applies to every request. 422: the request is valid but a
            # business rule refuses it (unknown type, unpublished template...), which no
            # schema can know in advance.
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "403", "404", "409", "413", "422"]
            },
            "negative_data_rejection": {
                "expected-statuses": ["400", "401", "403", "404", "405", "409", "413", "415", "422"]
            },
        },
        "operations": [
            {
                "include-operation-id": list(RULES_THE_SCHEMA_CANNOT_STATE),
                "checks": {"positive_data_acceptance": {"enabled": False}},
            }
        ],
    }
)
schema = schemathesis.openapi.from_wsgi("/api/schema/", application, config=CONFIG)


@pytest.fixture
def wsgi_in_test_transaction(db: None) -> Iterator[None]:
    """Let WSGI requests share the test's connection and transaction.

    Django's handler closes "old" connections when a request starts and ends, which would end
    the test transaction; Django's own test client disconnects the same receivers.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def seeded(wsgi_in_test_transaction: None) -> dict[str, Any]:
    """The key's tenant with a little of everything, matching the schema's examples."""
    tenant: Tenant = TenantFactory.create()
    parts = split_key(RAW_KEY)
    assert parts is not None
    ApiKey.objects.create(
        tenant=tenant, prefix=parts[0], key_hash=hash_key(RAW_KEY), scopes=Scope.values
    )
    order_shipped = NotificationTypeFactory.create(
        tenant=tenant, key="order_shipped", default_channels=[Channel.PUSH, Channel.EMAIL]
    )
    NotificationTypeFactory.create(
        tenant=tenant, key="weekly_digest", category=Category.MARKETING, default_channels=["email"]
    )
    # A push template only: the email slot stays free for the create_template example.
    push = content_services.create_template(
        tenant=tenant,
        notification_type=order_shipped,
        channel=Channel.PUSH,
        locale="en",
        variant="default",
        subject="Order {{ order_id }}",
        body="On its way with {{ carrier }}",
        variables=["order_id", "carrier"],
        sample_vars={"order_id": "1", "carrier": "UPS"},
    )
    content_services.publish_template(template=push)
    content_services.update_template(template=push, changes={"body": "Shipped with {{ carrier }}"})
    content_services.publish_template(template=push)
    user: Recipient = RecipientFactory.create(tenant=tenant, user_id="user-1")
    recipient_services.register_device(recipient=user, token="a1b2c3" * 10, platform=Platform.IOS)
    recipient_services.replace_preferences(
        recipient=user,
        document=recipient_services.PreferenceDocument(
            channels={"sms": False},
            quiet_hours=recipient_services.QuietHoursWindow(
                start=time(22), end=time(7), timezone="Europe/Paris"
            ),
            notification_types={"weekly_digest": {"email": False}},
            language="fr",
        ),
    )
    suppression, _ = recipient_services.upsert_suppression(
        tenant=tenant, channel=Channel.EMAIL, address="gone@example.com", reason="hard_bounce"
    )
    outcome = notification_services.accept_notification(
        tenant=tenant,
        request=notification_services.SendRequest(
            user_ids=["user-1", "user-2"],
            notification_type="order_shipped",
            template_vars={"order_id": "1042", "carrier": "UPS"},
            metadata={"order": {"id": 1042}},
        ),
    )
    notification = Notification.objects.get(pk=outcome.body["notification_id"])
    for channel, state, destination in [
        (Channel.PUSH, DeliveryState.DELIVERED, "a1b2c3" * 10),
        (Channel.EMAIL, DeliveryState.FAILED, user.email),
    ]:
        Delivery.objects.create(
            tenant=tenant,
            notification=notification,
            recipient=user,
            user_id="user-1",
            channel=channel,
            destination=destination,
            state=state,
            reason="provider rejected" if state == DeliveryState.FAILED else "",
        )
    return {
        "tenant": tenant,
        "template": push,
        "notification": notification,
        "suppression": suppression,
    }


@schema.parametrize()
# One seeded fixture serves all examples of an operation: each example rolls back its writes.
@hypothesis.settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_api(case: schemathesis.Case, seeded: dict[str, Any]) -> None:
    with transaction.atomic():
        case.call_and_validate()
        transaction.set_rollback(True)


def test_stateful(seeded: dict[str, Any]) -> None:
    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        savepoint: str

        def setup(self) -> None:
            self.savepoint = transaction.savepoint()

        def teardown(self) -> None:
            transaction.savepoint_rollback(self.savepoint)

    Workflow.run(
        settings=hypothesis.settings(
            max_examples=50,
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )


def test_success_responses_with_real_data_match_the_schema(seeded: dict[str, Any]) -> None:
    # given the seeded rows, and one call of every operation that should succeed on them
    template: Template = seeded["template"]
    notification: Notification = seeded["notification"]
    suppression: Suppression = seeded["suppression"]
    user = {"user_id": "user-1"}
    calls: list[tuple[str, str, dict[str, Any], dict[str, Any] | None, int]] = [
        (
            "GET",
            "/notifications/{notification_id}",
            {"notification_id": notification.pk},
            None,
            200,
        ),
        ("GET", "/users/{user_id}/notifications", user, None, 200),
        ("GET", "/users/{user_id}", user, None, 200),
        ("GET", "/users/{user_id}/devices", user, None, 200),
        ("GET", "/users/{user_id}/notification-preferences", user, None, 200),
        ("GET", "/suppressions", {}, None, 200),
        ("GET", "/suppressions/{suppression_id}", {"suppression_id": suppression.pk}, None, 200),
        ("GET", "/notification-types", {}, None, 200),
        ("GET", "/notification-types/{key}", {"key": "order_shipped"}, None, 200),
        ("GET", "/templates", {}, None, 200),
        ("GET", "/templates/{template_id}", {"template_id": template.pk}, None, 200),
        ("GET", "/templates/{template_id}/versions", {"template_id": template.pk}, None, 200),
        ("POST", "/templates/{template_id}/preview", {"template_id": template.pk}, {}, 200),
        ("PATCH", "/templates/{template_id}", {"template_id": template.pk}, {"body": "Hi"}, 200),
        ("POST", "/templates/{template_id}/publish", {"template_id": template.pk}, None, 201),
        (
            "PUT",
            "/users/{user_id}",
            {"user_id": "user-3"},
            {"phone": "+14155550123", "timezone": "Asia/Tokyo"},
            201,
        ),
        (
            "POST",
            "/users/{user_id}/devices",
            user,
            {"token": "f" * 64, "platform": "android"},
            201,
        ),
        (
            "PUT",
            "/users/{user_id}/notification-preferences",
            user,
            {
                "channels": {"push": True},
                "quiet_hours": {"start": "23:00", "end": "06:30", "timezone": "Asia/Tokyo"},
                "notification_types": {"order_shipped": {"sms": False}},
            },
            200,
        ),
        (
            "POST",
            "/suppressions",
            {},
            {"channel": "sms", "address": "+14155550199", "reason": "stop"},
            201,
        ),
        (
            "POST",
            "/notifications",
            {},
            {
                "user_ids": ["user-1"],
                "notification_type": "order_shipped",
                "template_vars": {"order_id": "7", "carrier": "DHL"},
            },
            202,
        ),
    ]
    for method, path, path_parameters, body, expected in calls:
        operation = schema[f"/api/v1{path}"][method]
        headers = {"Authorization": f"Bearer {RAW_KEY}"}
        case = (
            operation.Case(path_parameters=path_parameters, headers=headers)
            if body is None
            else operation.Case(path_parameters=path_parameters, headers=headers, body=body)
        )

        # when
        response = case.call_and_validate()

        # then
        assert response.status_code == expected, (method, path, response.text)
