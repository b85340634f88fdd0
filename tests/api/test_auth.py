"""Authentication, scopes and the request contract every endpoint shares.

Every endpoint: no key 401, a bad or revoked key 401, a key without the endpoint's scope 403,
and bodies that name server-owned or unknown fields 400 naming them, always in the documented
``{"code", "detail"}`` shape.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from rest_framework.test import APIClient

from notifier.content.models import NotificationType, Template
from notifier.recipients.models import Device, Recipient
from notifier.tenancy.models import ApiKey, Scope, Tenant
from notifier.tenancy.services import issue_api_key, revoke_api_key
from tests.api.contract import assert_error, assert_invalid_field
from tests.factories import RecipientFactory, client_for

NOTIFICATION = "00000000-0000-4000-8000-000000000000"

# (method, path, scope required): every operation of API v1.
ENDPOINTS = [
    ("POST", "/api/v1/notifications", Scope.SEND),
    ("GET", f"/api/v1/notifications/{NOTIFICATION}", Scope.READ),
    ("GET", "/api/v1/users/ada", Scope.READ),
    ("PUT", "/api/v1/users/ada", Scope.SEND),
    ("GET", "/api/v1/users/ada/notifications", Scope.READ),
    ("GET", "/api/v1/users/ada/notification-preferences", Scope.READ),
    ("PUT", "/api/v1/users/ada/notification-preferences", Scope.SEND),
    ("GET", "/api/v1/users/ada/devices", Scope.READ),
    ("POST", "/api/v1/users/ada/devices", Scope.SEND),
    ("DELETE", "/api/v1/users/ada/devices", Scope.SEND),
    ("GET", "/api/v1/suppressions", Scope.MANAGE),
    ("POST", "/api/v1/suppressions", Scope.MANAGE),
    ("GET", "/api/v1/suppressions/1", Scope.MANAGE),
    ("DELETE", "/api/v1/suppressions/1", Scope.MANAGE),
    ("GET", "/api/v1/notification-types", Scope.MANAGE),
    ("POST", "/api/v1/notification-types", Scope.MANAGE),
    ("GET", "/api/v1/notification-types/order_shipped", Scope.MANAGE),
    ("PUT", "/api/v1/notification-types/order_shipped", Scope.MANAGE),
    ("GET", "/api/v1/templates", Scope.MANAGE),
    ("POST", "/api/v1/templates", Scope.MANAGE),
    ("GET", "/api/v1/templates/1", Scope.MANAGE),
    ("PATCH", "/api/v1/templates/1", Scope.MANAGE),
    ("DELETE", "/api/v1/templates/1", Scope.MANAGE),
    ("POST", "/api/v1/templates/1/publish", Scope.MANAGE),
    ("POST", "/api/v1/templates/1/preview", Scope.MANAGE),
    ("GET", "/api/v1/templates/1/versions", Scope.MANAGE),
]
ENDPOINT_IDS = [f"{method} {path}" for method, path, _ in ENDPOINTS]
ONE_PER_SCOPE = [
    ("GET", f"/api/v1/notifications/{NOTIFICATION}"),
    ("POST", "/api/v1/notifications"),
    ("GET", "/api/v1/suppressions"),
]


def call(client: APIClient, method: str, path: str, body: Any = None) -> Any:
    return client.generic(
        method,
        path,
        json.dumps({} if body is None else body),
        content_type="application/json",
    )


def keyed_client(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


def test_the_endpoint_table_covers_every_operation_of_the_schema(client: APIClient) -> None:
    # given the published schema
    paths = client.get("/api/schema/?format=json").json()["paths"]

    # when each documented operation is looked up in the table above
    documented = {
        (method.upper(), path)
        for path, operations in paths.items()
        for method in operations
        if method in {"get", "put", "post", "patch", "delete"}
    }
    tabled = {
        (method, re.sub(r"/(ada|1|order_shipped|[0-9a-f-]{36})(?=/|$)", "/{id}", path))
        for method, path, _ in ENDPOINTS
    }

    # then every operation has its scope row, so no endpoint escapes these tests
    assert {(m, re.sub(r"\{[a-z_]+\}", "{id}", p)) for m, p in documented} == tabled


@pytest.mark.django_db
class TestMissingKey:
    @pytest.mark.parametrize(("method", "path", "scope"), ENDPOINTS, ids=ENDPOINT_IDS)
    def test_answers_401_not_authenticated_with_a_challenge(
        self, method: str, path: str, scope: str
    ) -> None:
        # when
        response = call(APIClient(), method, path)

        # then
        assert_error(response, 401, "not_authenticated")
        assert response["WWW-Authenticate"] == 'Bearer realm="notifier"'


@pytest.mark.django_db
class TestInvalidKey:
    @pytest.mark.parametrize(
        "header",
        [
            "Bearer",
            "Bearer ",
            "Basic dXNlcjpwYXNz",
            "Token ntf_abc_def",
            "Bearer not-a-notifier-key",
            "Bearer ntf_",
            "Bearer ntf_nosecret",
            "Bearer ntf_unknown0000_secret",
        ],
    )
    @pytest.mark.parametrize(("method", "path"), ONE_PER_SCOPE)
    def test_malformed_or_unknown_key_answers_401_invalid_api_key(
        self, tenant: Tenant, header: str, method: str, path: str
    ) -> None:
        # given
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=header)

        # when
        response = call(client, method, path)

        # then
        assert_error(response, 401, "invalid_api_key")
        assert "WWW-Authenticate" in response

    def test_known_prefix_with_a_wrong_secret_answers_401(self, tenant: Tenant) -> None:
        # given a real key's prefix with another secret
        issued = issue_api_key(tenant=tenant, scopes=[Scope.READ])
        forged = issued.raw_key[:-4] + ("AAAA" if not issued.raw_key.endswith("AAAA") else "BBBB")

        # when
        response = keyed_client(forged).get("/api/v1/users/ada/notifications")

        # then
        assert_error(response, 401, "invalid_api_key")

    @pytest.mark.parametrize(("method", "path", "scope"), ENDPOINTS, ids=ENDPOINT_IDS)
    def test_revoked_key_answers_401_invalid_api_key(
        self, tenant: Tenant, method: str, path: str, scope: str
    ) -> None:
        # given a key that worked, then was revoked
        issued = issue_api_key(tenant=tenant, scopes=Scope.values)
        revoke_api_key(api_key=issued.api_key)

        # when
        response = call(keyed_client(issued.raw_key), method, path)

        # then
        assert_error(response, 401, "invalid_api_key")

    def test_a_key_works_until_it_is_revoked(self, tenant: Tenant) -> None:
        # given
        issued = issue_api_key(tenant=tenant, scopes=[Scope.READ])
        client = keyed_client(issued.raw_key)
        before = client.get("/api/v1/users/ada/notifications")

        # when
        revoke_api_key(api_key=issued.api_key)
        after = client.get("/api/v1/users/ada/notifications")

        # then
        assert before.status_code == 200
        assert_error(after, 401, "invalid_api_key")

    def test_using_a_key_records_when_it_was_last_used(self, tenant: Tenant) -> None:
        # given
        issued = issue_api_key(tenant=tenant, scopes=[Scope.READ])

        # when
        keyed_client(issued.raw_key).get("/api/v1/users/ada/notifications")

        # then
        assert ApiKey.objects.get(pk=issued.api_key.pk).last_used_at is not None


@pytest.mark.django_db
class TestScopes:
    @pytest.mark.parametrize(("method", "path", "scope"), ENDPOINTS, ids=ENDPOINT_IDS)
    def test_a_key_without_the_scope_answers_403_insufficient_scope(
        self, tenant: Tenant, method: str, path: str, scope: str
    ) -> None:
        # given a key with every scope but the one this endpoint requires
        others = [s for s in Scope.values if s != scope]

        # when
        response = call(client_for(tenant, *others), method, path)

        # then
        body = assert_error(response, 403, "insufficient_scope")
        assert f"'{scope}'" in body["detail"]

    @pytest.mark.parametrize(("method", "path", "scope"), ENDPOINTS, ids=ENDPOINT_IDS)
    def test_a_key_with_only_that_scope_gets_past_authorization(
        self, tenant: Tenant, method: str, path: str, scope: str
    ) -> None:
        # when
        response = call(client_for(tenant, scope), method, path)

        # then the request reaches the endpoint (which may still refuse the empty body)
        assert response.status_code not in (401, 403), response.content

    def test_head_needs_what_get_needs(self, tenant: Tenant) -> None:
        # when
        allowed = client_for(tenant, Scope.READ).head("/api/v1/users/ada/notifications")
        refused = client_for(tenant, Scope.SEND).head("/api/v1/users/ada/notifications")

        # then
        assert allowed.status_code == 200
        assert refused.status_code == 403

    @pytest.mark.parametrize(
        ("method", "path", "allowed"),
        [
            ("DELETE", "/api/v1/users/ada", "GET, PUT"),
            ("GET", "/api/v1/notifications", "POST"),
            ("PUT", "/api/v1/notification-types", "GET, POST"),
            ("PATCH", "/api/v1/suppressions/1", "GET, DELETE"),
        ],
    )
    def test_an_undeclared_method_answers_405_with_allow_not_403(
        self, client: APIClient, method: str, path: str, allowed: str
    ) -> None:
        # when a key with every scope uses a method the endpoint does not have
        response = call(client, method, path)

        # then
        assert_error(response, 405, "method_not_allowed")
        methods = {m.strip() for m in response["Allow"].split(",")}
        assert {m.strip() for m in allowed.split(",")} <= methods


@pytest.fixture
def ada(tenant: Tenant) -> Recipient:
    return RecipientFactory.create(tenant=tenant, user_id="ada")


@pytest.fixture
def template(order_shipped: NotificationType) -> Template:
    return Template.objects.get(notification_type=order_shipped, channel="email")


# Every endpoint that takes a body, with a valid body for it.
BODY_ENDPOINTS: list[tuple[str, str, dict[str, Any]]] = [
    ("PUT", "/api/v1/users/ada", {"email": "ada@example.com"}),
    ("PUT", "/api/v1/users/ada/notification-preferences", {"channels": {"sms": False}}),
    ("POST", "/api/v1/users/ada/devices", {"token": "a" * 64, "platform": "ios"}),
    ("DELETE", "/api/v1/users/ada/devices", {"token": "a" * 64}),
    (
        "POST",
        "/api/v1/suppressions",
        {"channel": "email", "address": "x@example.com", "reason": "manual"},
    ),
    (
        "POST",
        "/api/v1/notification-types",
        {"key": "new_type", "category": "social", "default_channels": ["push"]},
    ),
    (
        "PUT",
        "/api/v1/notification-types/order_shipped",
        {"key": "order_shipped", "category": "social", "default_channels": ["push"]},
    ),
    (
        "POST",
        "/api/v1/templates",
        {"notification_type": "order_shipped", "channel": "sms", "body": "Hi"},
    ),
    ("PATCH", "/api/v1/templates/{template}", {"body": "Order {{ order_id }}!"}),
    ("POST", "/api/v1/templates/{template}/preview", {"template_vars": {"order_id": 1}}),
]
BODY_IDS = [f"{method} {path}" for method, path, _ in BODY_ENDPOINTS]


@pytest.mark.django_db
class TestRequestBodies:
    @pytest.mark.parametrize(
        ("method", "path", "field"),
        [
            ("PUT", "/api/v1/users/ada", "user_id"),
            ("PUT", "/api/v1/users/ada", "created_at"),
            ("PUT", "/api/v1/users/ada", "updated_at"),
            ("POST", "/api/v1/users/ada/devices", "active"),
            ("POST", "/api/v1/users/ada/devices", "last_seen_at"),
            ("POST", "/api/v1/users/ada/devices", "created_at"),
            ("POST", "/api/v1/suppressions", "id"),
            ("POST", "/api/v1/suppressions", "created_at"),
            ("POST", "/api/v1/notification-types", "created_at"),
            ("PUT", "/api/v1/notification-types/order_shipped", "updated_at"),
            ("POST", "/api/v1/templates", "id"),
            ("POST", "/api/v1/templates", "published_version"),
            ("POST", "/api/v1/templates", "created_at"),
            ("PATCH", "/api/v1/templates/{template}", "published_version"),
            ("PATCH", "/api/v1/templates/{template}", "id"),
            ("PATCH", "/api/v1/templates/{template}", "channel"),
            ("PATCH", "/api/v1/templates/{template}", "notification_type"),
            ("PATCH", "/api/v1/templates/{template}", "locale"),
            ("PATCH", "/api/v1/templates/{template}", "variant"),
        ],
    )
    def test_server_owned_fields_answer_400_naming_the_field(
        self,
        client: APIClient,
        ada: Recipient,
        template: Template,
        method: str,
        path: str,
        field: str,
    ) -> None:
        # given a valid body for the endpoint, plus a field the server owns
        valid = next(b for m, p, b in BODY_ENDPOINTS if (m, p) == (method, path))
        value: Any = {"active": False, "id": 5, "published_version": 9}.get(field, "x")

        # when
        response = call(client, method, path.format(template=template.pk), {**valid, field: value})

        # then
        error = assert_invalid_field(response, field)
        assert error["fields"][field] == ["This field is read-only."]

    def test_a_server_owned_field_changes_nothing(
        self, client: APIClient, template: Template
    ) -> None:
        # given a published template (version 1)
        path = f"/api/v1/templates/{template.pk}"

        # when
        response = call(client, "PATCH", path, {"body": "Changed", "published_version": 7})

        # then
        assert response.status_code == 400
        template.refresh_from_db()
        assert template.body != "Changed"
        assert client.get(path).json()["published_version"] == 1

    def test_devices_cannot_be_registered_inactive(self, client: APIClient, ada: Recipient) -> None:
        # when
        response = call(
            client,
            "POST",
            "/api/v1/users/ada/devices",
            {"token": "a" * 64, "platform": "ios", "active": False},
        )

        # then
        assert_invalid_field(response, "active")
        assert not Device.objects.exists()

    @pytest.mark.parametrize(("method", "path", "valid"), BODY_ENDPOINTS, ids=BODY_IDS)
    def test_unknown_fields_answer_400_naming_the_field(
        self,
        client: APIClient,
        ada: Recipient,
        template: Template,
        method: str,
        path: str,
        valid: dict[str, Any],
    ) -> None:
        # when a valid body carries a typo'd field
        response = call(
            client, method, path.format(template=template.pk), {**valid, "colour": "blue"}
        )

        # then
        error = assert_invalid_field(response, "colour")
        assert error["fields"]["colour"] == ["Unknown field."]

    @pytest.mark.parametrize(("method", "path", "valid"), BODY_ENDPOINTS, ids=BODY_IDS)
    def test_the_valid_bodies_used_above_are_accepted(
        self,
        client: APIClient,
        ada: Recipient,
        template: Template,
        method: str,
        path: str,
        valid: dict[str, Any],
    ) -> None:
        # given (so the 400s above come from the extra field, not from the rest of the body)
        path = path.format(template=template.pk)
        if method == "DELETE":
            call(client, "POST", path, {**valid, "platform": "ios"})

        # when
        response = call(client, method, path, valid)

        # then
        assert 200 <= response.status_code < 300, response.content

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            (
                {"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "UTC", "x": 1}},
                "quiet_hours",
            ),
            ({"channels": {"fax": True}}, "channels"),
        ],
    )
    def test_unknown_nested_fields_answer_400_naming_the_top_field(
        self, client: APIClient, ada: Recipient, body: dict[str, Any], field: str
    ) -> None:
        # when
        response = call(client, "PUT", "/api/v1/users/ada/notification-preferences", body)

        # then
        error = assert_invalid_field(response, field)
        assert any("Unknown field" in message for message in error["fields"][field])

    @pytest.mark.parametrize(("method", "path", "valid"), BODY_ENDPOINTS, ids=BODY_IDS)
    def test_malformed_json_answers_400_malformed_json(
        self,
        client: APIClient,
        ada: Recipient,
        template: Template,
        method: str,
        path: str,
        valid: dict[str, Any],
    ) -> None:
        # when
        response = client.generic(
            method, path.format(template=template.pk), '{"email": ', content_type="application/json"
        )

        # then
        assert_error(response, 400, "malformed_json")

    @pytest.mark.parametrize("payload", ["[]", '"text"', "42", "null"])
    def test_a_body_that_is_not_an_object_answers_400(
        self, client: APIClient, payload: str
    ) -> None:
        # when
        response = client.generic(
            "POST", "/api/v1/suppressions", payload, content_type="application/json"
        )

        # then
        assert_error(response, 400, "invalid_fields")

    def test_a_form_body_answers_415(self, client: APIClient) -> None:
        # when
        response = client.post(
            "/api/v1/suppressions",
            "channel=email&address=x%40example.com&reason=manual",
            content_type="application/x-www-form-urlencoded",
        )

        # then
        assert_error(response, 415, "unsupported_media_type")

    def test_an_unknown_route_answers_404_in_the_error_shape(self, client: APIClient) -> None:
        # when
        response = client.get("/api/v1/no-such-thing")

        # then
        assert_error(response, 404, "not_found")
