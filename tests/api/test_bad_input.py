"""Bad input: every refusal is the documented 4xx with a useful message, and writes nothing.

Each test takes a snapshot of every row the API can write (types, templates and versions;
notifications, their recipients, deliveries, events, outbox rows and idempotency records;
users, devices, preferences and suppressions), sends one bad request, and compares. A
refusal that left a row behind, or changed one, fails here even when its status is right.

Strings that can end up in a mail or provider header get their own tables: an email
template's subject, the values ``template_vars`` put into it, the user's email address, the
phone number and the idempotency key. Each is tried with every kind of line break: raw,
Unicode separators, NUL and the encoded forms some later layer might decode (only the raw
ones for the idempotency key and push tokens: opaque, never decoded, so ``%0A`` in them is
three characters).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.apps import apps
from django.utils import timezone
from rest_framework.test import APIClient

from notifier.content.models import NotificationType, Template
from notifier.notifications.models import IdempotencyRecord, Notification, OutboxMessage
from notifier.recipients.models import Device, Recipient, Suppression
from notifier.tenancy.models import Tenant
from tests.api.contract import assert_error, assert_invalid_field
from tests.factories import RecipientFactory

SEND = "/api/v1/notifications"
USER = "/api/v1/users/ada"
DEVICES = "/api/v1/users/ada/devices"
PREFERENCES = "/api/v1/users/ada/notification-preferences"
SUPPRESSIONS = "/api/v1/suppressions"
TYPES = "/api/v1/notification-types"
TEMPLATES = "/api/v1/templates"
TOKEN = "a1b2c3d4" * 8
MAX_BODY_BYTES = 1_048_576

# The apps whose tables the API writes. Tenants and API keys are left out: authenticating
# a request records when its key was last used.
WRITTEN_APPS = ("content", "notifications", "recipients")

# Every endpoint that takes a body, with a valid body for it ("{template}": an email template).
WRITES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "POST",
        SEND,
        {
            "user_ids": ["ada"],
            "notification_type": "order_shipped",
            "template_vars": {"order_id": "7"},
        },
    ),
    ("PUT", USER, {"email": "ada@example.com"}),
    ("PUT", PREFERENCES, {"channels": {"sms": False}}),
    ("POST", DEVICES, {"token": "f" * 64, "platform": "ios"}),
    ("DELETE", DEVICES, {"token": TOKEN}),
    ("POST", SUPPRESSIONS, {"channel": "email", "address": "x@example.com", "reason": "manual"}),
    ("POST", TYPES, {"key": "new_type", "category": "social", "default_channels": ["push"]}),
    (
        "PUT",
        f"{TYPES}/order_shipped",
        {"key": "order_shipped", "category": "social", "default_channels": ["push"]},
    ),
    ("POST", TEMPLATES, {"notification_type": "order_shipped", "channel": "sms", "body": "Hi"}),
    ("PATCH", TEMPLATES + "/{template}", {"body": "Order {{ order_id }}!"}),
    ("POST", TEMPLATES + "/{template}/preview", {"template_vars": {"order_id": "1"}}),
]
WRITE_IDS = [f"{method} {path}" for method, path, _ in WRITES]

# Line breaks in every form that reaches, or may be decoded into, a header.
LINE_BREAKS = {
    "cr": "\r",
    "lf": "\n",
    "crlf-bcc": "\r\nBcc: eve@example.com",
    "nul": "\x00",
    "tab": "\t",
    "nel": "\x85",
    "line-separator": "\u2028",
    "paragraph-separator": "\u2029",
    "url-encoded": "%0d%0a",
    "url-encoded-upper": "%0D%0A",
    "quoted-printable": "=0D=0A",
    "backslash-escape": "\\r\\n",
    "unicode-escape": "\\u000a",
    "html-reference": "&#10;",
    "encoded-word": "=?utf-8?q?=0D=0ABcc:_eve@example.com?=",
}
# The ones that are not printable ASCII: the encoded forms are valid characters in some
# values (a push token), which never pass through a decoder.
RAW_LINE_BREAKS = {
    name: value for name, value in LINE_BREAKS.items() if any(not " " <= ch <= "~" for ch in value)
}


def database_state() -> dict[str, list[dict[str, Any]]]:
    """Every row of every table the API writes, in primary-key order."""
    return {
        model._meta.label: list(model._default_manager.order_by("pk").values())
        for label in WRITTEN_APPS
        for model in apps.get_app_config(label).get_models()
    }


def call(client: APIClient, method: str, path: str, body: Any, **extra: Any) -> Any:
    return client.generic(method, path, json.dumps(body), content_type="application/json", **extra)


def raw(client: APIClient, method: str, path: str, payload: bytes, **extra: Any) -> Any:
    """Send ``payload`` byte for byte (the stubs say ``str``; Django passes bytes through)."""
    return client.generic(
        method,
        path,
        payload,  # type: ignore[arg-type]
        content_type="application/json",
        **extra,
    )


@pytest.fixture
def template(order_shipped: NotificationType) -> Template:
    """The published email template of ``order_shipped``: subject ``Order {{ order_id }}``."""
    return Template.objects.get(notification_type=order_shipped, channel="email")


@pytest.fixture
def world(
    client: APIClient, tenant: Tenant, order_shipped: NotificationType, template: Template
) -> dict[str, Any]:
    """Rows in every table a bad request could touch, so "unchanged" means something."""
    ada = RecipientFactory.create(tenant=tenant, user_id="ada", email="ada@example.com")
    assert call(client, "POST", DEVICES, {"token": TOKEN, "platform": "ios"}).status_code == 201
    assert call(client, "PUT", PREFERENCES, {"channels": {"sms": False}}).status_code == 200
    assert (
        call(
            client,
            "POST",
            SUPPRESSIONS,
            {"channel": "email", "address": "gone@example.com", "reason": "hard_bounce"},
        ).status_code
        == 201
    )
    accepted = call(
        client,
        "POST",
        SEND,
        {
            "request_id": "order-1",
            "user_ids": ["ada", "bob"],
            "notification_type": "order_shipped",
            "template_vars": {"order_id": "1"},
        },
    )
    assert accepted.status_code == 202
    for model in (Notification, OutboxMessage, IdempotencyRecord, Recipient, Device, Suppression):
        assert model.objects.exists(), model
    return {"ada": ada, "template": template}


def send_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "user_ids": ["ada"],
        "notification_type": "order_shipped",
        "template_vars": {"order_id": "1042"},
    }
    body.update(overrides)
    return body


@pytest.mark.django_db
class TestMalformedBodies:
    @pytest.mark.parametrize(("method", "path", "valid"), WRITES, ids=WRITE_IDS)
    @pytest.mark.parametrize(
        ("payload", "reason"),
        [
            (b'{"a": 1} {"b": 2}', "Extra data"),
            (b"{'a': 1}", "double quotes"),
            (b'{"a": NaN}', "NaN"),
            (b'{"a": Infinity}', "Infinity"),
            (b'{"a": "\xff"}', "utf-8"),
            (b'{"a": 1,}', "trailing comma"),
            (b'{"a": 1, "a": 2}', "'a' appears more than once"),
            (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        ],
        ids=[
            "trailing-data",
            "single-quotes",
            "nan",
            "infinity",
            "invalid-utf8",
            "trailing-comma",
            "duplicate-key",
            "deep-nesting",
        ],
    )
    def test_malformed_json_answers_400_malformed_json_and_writes_nothing(
        self,
        client: APIClient,
        world: dict[str, Any],
        method: str,
        path: str,
        valid: dict[str, Any],
        payload: bytes,
        reason: str,
    ) -> None:
        # given
        before = database_state()

        # when
        response = raw(client, method, path.format(template=world["template"].pk), payload)

        # then
        body = assert_error(response, 400, "malformed_json")
        assert reason in body["detail"]
        assert database_state() == before

    def test_a_duplicate_key_is_refused_even_where_both_values_are_valid(
        self, client: APIClient, world: dict[str, Any]
    ) -> None:
        # given a send whose user_ids appear twice: which one a parser keeps is anyone's guess
        before = database_state()
        payload = (
            b'{"user_ids": ["ada"], "user_ids": ["bob"], "notification_type": "order_shipped",'
            b' "template_vars": {"order_id": "1"}}'
        )

        # when
        response = raw(client, "POST", SEND, payload)

        # then
        body = assert_error(response, 400, "malformed_json")
        assert "user_ids" in body["detail"]
        assert database_state() == before

    @pytest.mark.parametrize(("method", "path", "valid"), WRITES, ids=WRITE_IDS)
    @pytest.mark.parametrize("payload", [b"[]", b'"text"', b"42", b"true", b"null"])
    def test_a_body_that_is_not_an_object_answers_400_and_writes_nothing(
        self,
        client: APIClient,
        world: dict[str, Any],
        method: str,
        path: str,
        valid: dict[str, Any],
        payload: bytes,
    ) -> None:
        # given
        before = database_state()

        # when
        response = raw(client, method, path.format(template=world["template"].pk), payload)

        # then
        assert_error(response, 400, "invalid_fields")
        assert database_state() == before

    @pytest.mark.parametrize(("method", "path", "valid"), WRITES, ids=WRITE_IDS)
    def test_a_body_over_one_mib_answers_413_and_writes_nothing(
        self,
        client: APIClient,
        world: dict[str, Any],
        method: str,
        path: str,
        valid: dict[str, Any],
    ) -> None:
        # given a valid body padded past the default limit
        before = database_state()
        padded = json.dumps({**valid, "padding": "x" * MAX_BODY_BYTES})

        # when
        response = client.generic(
            method,
            path.format(template=world["template"].pk),
            padded,
            content_type="application/json",
        )

        # then
        body = assert_error(response, 413, "payload_too_large")
        assert str(MAX_BODY_BYTES) in body["detail"]
        assert database_state() == before

    def test_the_limit_is_judged_by_content_length_before_the_body_is_read(
        self, client: APIClient, world: dict[str, Any]
    ) -> None:
        # given a small valid body announced as 2 MiB
        before = database_state()

        # when
        response = call(client, "POST", SEND, send_body(), CONTENT_LENGTH=str(2 * MAX_BODY_BYTES))

        # then
        assert_error(response, 413, "payload_too_large")
        assert database_state() == before

    @pytest.mark.parametrize("length", ["abc", "-", "1e3", "0x10"])
    def test_a_content_length_that_is_not_a_number_answers_400(
        self, client: APIClient, world: dict[str, Any], length: str
    ) -> None:
        # given
        before = database_state()

        # when
        response = call(client, "POST", SEND, send_body(), CONTENT_LENGTH=length)

        # then
        assert_error(response, 400, "invalid_content_length")
        assert database_state() == before

    @pytest.mark.parametrize(
        "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
    )
    def test_a_body_that_is_not_json_answers_415(
        self, client: APIClient, world: dict[str, Any], content_type: str
    ) -> None:
        # given
        before = database_state()

        # when
        response = client.post(SEND, json.dumps(send_body()), content_type=content_type)

        # then
        assert_error(response, 415, "unsupported_media_type")
        assert database_state() == before

    def test_a_charset_that_would_decompress_the_body_answers_400(
        self, client: APIClient, world: dict[str, Any]
    ) -> None:
        # given
        before = database_state()

        # when
        response = client.post(
            SEND, json.dumps(send_body()), content_type="application/json; charset=bz2_codec"
        )

        # then
        body = assert_error(response, 400, "malformed_json")
        assert "charset" in body["detail"]
        assert database_state() == before


@pytest.mark.django_db
class TestWrongTypes:
    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("user_ids", "ada"),
            ("user_ids", {"ada": True}),
            ("user_ids", None),
            ("user_ids", [["ada"]]),
            ("user_ids", [None]),
            ("notification_type", ["order_shipped"]),
            ("notification_type", 42),
            ("notification_type", None),
            ("priority", 1),
            ("priority", True),
            ("channels", "email"),
            ("channels", {"email": True}),
            ("channels", [1]),
            ("template_id", 1),
            ("template_id", None),
            ("template_vars", "order_id=1"),
            ("template_vars", None),
            ("metadata", ["x"]),
            ("metadata", 7),
            ("scheduled_at", 1_767_225_600),
            ("scheduled_at", True),
            ("expires_at", {"at": "2030-01-01T00:00:00Z"}),
            ("request_id", 123),
            ("request_id", ["k"]),
        ],
    )
    def test_a_send_field_of_the_wrong_type_answers_400_naming_it(
        self, client: APIClient, world: dict[str, Any], field: str, value: Any
    ) -> None:
        # given
        before = database_state()

        # when
        response = call(client, "POST", SEND, send_body(**{field: value}))

        # then
        assert_invalid_field(response, field)
        assert database_state() == before

    @pytest.mark.parametrize(
        ("method", "path", "body", "field"),
        [
            ("PUT", USER, {"phone": 14155550123}, "phone"),
            ("PUT", USER, {"timezone": 0}, "timezone"),
            ("PUT", USER, {"locale": ["en"]}, "locale"),
            ("PUT", USER, {"email": ["ada@example.com"]}, "email"),
            ("POST", DEVICES, {"token": TOKEN, "platform": 1}, "platform"),
            ("POST", DEVICES, {"token": TOKEN, "platform": "ios", "app": 5}, "app"),
            ("DELETE", DEVICES, {"token": None}, "token"),
            ("PUT", PREFERENCES, {"quiet_hours": ["22:00", "07:00"]}, "quiet_hours"),
            ("PUT", PREFERENCES, {"notification_types": ["order_shipped"]}, "notification_types"),
            ("PUT", PREFERENCES, {"language": 1}, "language"),
            (
                "POST",
                SUPPRESSIONS,
                {"channel": "email", "address": 5, "reason": "manual"},
                "address",
            ),
            (
                "POST",
                SUPPRESSIONS,
                {"channel": ["email"], "address": "x@example.com", "reason": "manual"},
                "channel",
            ),
            (
                "POST",
                SUPPRESSIONS,
                {"channel": "email", "address": "x@example.com", "reason": "manual", "note": 1},
                "note",
            ),
            (
                "POST",
                TYPES,
                {"key": "t", "category": "social", "default_channels": ["push"], "cap_limit": "x"},
                "cap_limit",
            ),
            (
                "POST",
                TYPES,
                {"key": "t", "category": "social", "default_channels": ["push"], "name": 1},
                "name",
            ),
            (
                "POST",
                TEMPLATES,
                {"notification_type": "order_shipped", "channel": "sms", "body": ["Hi"]},
                "body",
            ),
            ("PATCH", TEMPLATES + "/{template}", {"subject": 1042}, "subject"),
            ("PATCH", TEMPLATES + "/{template}", {"variables": [1]}, "variables"),
            ("POST", TEMPLATES + "/{template}/preview", {"template_vars": "x"}, "template_vars"),
        ],
    )
    def test_other_fields_of_the_wrong_type_answer_400_naming_them(
        self,
        client: APIClient,
        world: dict[str, Any],
        method: str,
        path: str,
        body: dict[str, Any],
        field: str,
    ) -> None:
        # given
        before = database_state()

        # when
        response = call(client, method, path.format(template=world["template"].pk), body)

        # then
        assert_invalid_field(response, field)
        assert database_state() == before


@pytest.mark.django_db
class TestUnstorableStrings:
    """PostgreSQL's jsonb cannot hold NUL, and a lone surrogate has no UTF-8 form: both used
    to pass validation and fail the insert with a 500."""

    @pytest.mark.parametrize(
        ("method", "path", "payload", "field"),
        [
            ("POST", SEND, send_body(template_vars={"order_id": "1\x00"}), "template_vars"),
            ("POST", SEND, send_body(metadata={"note": ["a\x00"]}), "metadata"),
            ("PUT", USER, {"attributes": {"plan": {"tier": "\x00"}}}, "attributes"),
            (
                "PUT",
                PREFERENCES,
                {"notification_types": {"order\x00shipped": {"push": False}}},
                "notification_types",
            ),
            (
                "PATCH",
                TEMPLATES + "/{template}",
                {"sample_vars": {"order_id": "\x00"}},
                "sample_vars",
            ),
            (
                "POST",
                TEMPLATES + "/{template}/preview",
                {"template_vars": {"order_id": "\x00"}},
                "template_vars",
            ),
        ],
        ids=[
            "template_vars",
            "metadata",
            "attributes",
            "preference-type",
            "sample_vars",
            "preview",
        ],
    )
    def test_nul_inside_a_json_document_answers_400(
        self,
        client: APIClient,
        world: dict[str, Any],
        method: str,
        path: str,
        payload: dict[str, Any],
        field: str,
    ) -> None:
        # given
        before = database_state()

        # when
        response = call(client, method, path.format(template=world["template"].pk), payload)

        # then
        assert_invalid_field(response, field)
        assert database_state() == before

    @pytest.mark.parametrize(
        ("method", "path", "payload", "field"),
        [
            (
                "POST",
                SEND,
                b'{"user_ids": ["ada"], "notification_type": "order_shipped",'
                b' "template_vars": {"order_id": "\\ud800"}}',
                "template_vars",
            ),
            (
                "POST",
                SEND,
                b'{"user_ids": ["ada"], "notification_type": "order_shipped",'
                b' "template_vars": {"order_id": "1"}, "metadata": {"\\udfff": 1}}',
                "metadata",
            ),
            ("POST", SEND, b'{"user_ids": ["\\ud800"], "notification_type": "x"}', "user_ids"),
            ("PUT", USER, b'{"attributes": {"k": ["\\ud800"]}}', "attributes"),
            (
                "PUT",
                PREFERENCES,
                b'{"notification_types": {"\\ud800": {"push": true}}}',
                "notification_types",
            ),
        ],
        ids=["template_vars", "metadata-key", "user_ids", "attributes", "preference-type"],
    )
    def test_an_unpaired_surrogate_answers_400(
        self,
        client: APIClient,
        world: dict[str, Any],
        method: str,
        path: str,
        payload: bytes,
        field: str,
    ) -> None:
        # given
        before = database_state()

        # when
        response = raw(client, method, path, payload)

        # then
        assert_invalid_field(response, field)
        assert database_state() == before


@pytest.mark.django_db
class TestRecipientLists:
    def test_ten_thousand_user_ids_answer_400_naming_the_limit(
        self, client: APIClient, world: dict[str, Any]
    ) -> None:
        # given
        before = database_state()
        user_ids = [f"user-{i}" for i in range(10_000)]

        # when
        response = call(client, "POST", SEND, send_body(user_ids=user_ids))

        # then
        body = assert_invalid_field(response, "user_ids")
        assert "1000" in body["detail"]
        assert database_state() == before

    @pytest.mark.parametrize(
        "user_id",
        ["", " ada", "ada ", "a\tb", "a\x00b", "a\x7fb", "x" * 256],
        ids=["empty", "leading-space", "trailing-space", "tab", "nul", "del", "too-long"],
    )
    def test_one_bad_user_id_among_many_refuses_the_whole_send(
        self, client: APIClient, world: dict[str, Any], user_id: str
    ) -> None:
        # given 999 good ids and one bad one at the end
        before = database_state()
        user_ids = [f"user-{i}" for i in range(999)] + [user_id]

        # when
        response = call(client, "POST", SEND, send_body(user_ids=user_ids))

        # then the error points at the bad item, and none of the 999 was accepted
        body = assert_invalid_field(response, "user_ids")
        assert any(message.startswith("999: ") for message in body["fields"]["user_ids"])
        assert database_state() == before


@pytest.mark.django_db
class TestHeaderInjection:
    """CR/LF and friends in every string the API takes that can reach a header."""

    @pytest.mark.parametrize("line_break", LINE_BREAKS.values(), ids=LINE_BREAKS.keys())
    def test_an_email_subject_with_a_line_break_is_refused_on_create(
        self, client: APIClient, world: dict[str, Any], line_break: str
    ) -> None:
        # given
        before = database_state()

        # when
        response = call(
            client,
            "POST",
            TEMPLATES,
            {
                "notification_type": "order_shipped",
                "channel": "email",
                "variant": "injected",
                "subject": f"Order {{{{ order_id }}}}{line_break}shipped",
                "body": "Order {{ order_id }} shipped",
                "variables": ["order_id"],
            },
        )

        # then
        assert_invalid_field(response, "subject")
        assert database_state() == before

    @pytest.mark.parametrize("line_break", LINE_BREAKS.values(), ids=LINE_BREAKS.keys())
    def test_an_email_subject_with_a_line_break_is_refused_on_edit(
        self, client: APIClient, world: dict[str, Any], line_break: str
    ) -> None:
        # given
        before = database_state()
        path = f"{TEMPLATES}/{world['template'].pk}"

        # when
        response = call(client, "PATCH", path, {"subject": f"Order{line_break}{{{{ order_id }}}}"})

        # then
        assert_invalid_field(response, "subject")
        assert database_state() == before
        assert client.get(path).json()["subject"] == "Order {{ order_id }}"

    def test_a_push_title_may_span_lines_it_is_not_a_header(
        self, client: APIClient, world: dict[str, Any]
    ) -> None:
        # when
        response = call(
            client,
            "POST",
            TEMPLATES,
            {
                "notification_type": "order_shipped",
                "channel": "push",
                "variant": "two_lines",
                "subject": "Order shipped\nTap to track",
                "body": "On its way",
            },
        )

        # then
        assert response.status_code == 201, response.content

    @pytest.mark.parametrize(
        "line_break",
        [value for value in LINE_BREAKS.values() if value != "\x00"],
        ids=[name for name, value in LINE_BREAKS.items() if value != "\x00"],
    )
    def test_template_vars_that_would_put_a_line_break_into_the_subject_answer_422(
        self, client: APIClient, world: dict[str, Any], line_break: str
    ) -> None:
        # given the email subject is "Order {{ order_id }}"
        before = database_state()

        # when
        response = call(
            client,
            "POST",
            SEND,
            send_body(template_vars={"order_id": f"1042{line_break}Bcc: eve@example.com"}),
        )

        # then the caller learns which subject and which variable, before anything is accepted
        body = assert_error(response, 422, "template_render_failed")
        assert "email subject" in body["detail"]
        assert "order_id" in body["detail"]
        assert database_state() == before

    def test_a_line_break_in_a_variable_the_subject_does_not_use_is_fine(
        self, client: APIClient, world: dict[str, Any], order_shipped: NotificationType
    ) -> None:
        # given an email template whose body, not subject, shows an address over two lines
        call(
            client,
            "POST",
            TEMPLATES,
            {
                "notification_type": "order_shipped",
                "channel": "email",
                "variant": "with_address",
                "subject": "Order {{ order_id }}",
                "body": "Shipping to:\n{{ address }}",
                "variables": ["order_id", "address"],
                "sample_vars": {"order_id": "1", "address": "1 Main St\nSpringfield"},
            },
        )
        created = Template.objects.get(variant="with_address")
        assert client.post(f"{TEMPLATES}/{created.pk}/publish").status_code == 201

        # when
        response = call(
            client,
            "POST",
            SEND,
            send_body(
                template_id="with_address",
                channels=["email"],
                template_vars={"order_id": "7", "address": "1 Main St\r\nSpringfield"},
            ),
        )

        # then
        assert response.status_code == 202, response.content

    @pytest.mark.parametrize("line_break", LINE_BREAKS.values(), ids=LINE_BREAKS.keys())
    def test_a_user_email_with_a_line_break_is_refused(
        self, client: APIClient, world: dict[str, Any], line_break: str
    ) -> None:
        # given
        before = database_state()

        # when
        response = call(client, "PUT", USER, {"email": f"ada{line_break}@example.com"})

        # then
        assert_invalid_field(response, "email")
        assert database_state() == before
        assert client.get(USER).json()["email"] == "ada@example.com"

    @pytest.mark.parametrize("line_break", LINE_BREAKS.values(), ids=LINE_BREAKS.keys())
    def test_an_email_suppression_with_a_line_break_is_refused(
        self, client: APIClient, world: dict[str, Any], line_break: str
    ) -> None:
        # given
        before = database_state()

        # when
        response = call(
            client,
            "POST",
            SUPPRESSIONS,
            {"channel": "email", "address": f"eve{line_break}@example.com", "reason": "manual"},
        )

        # then
        assert_invalid_field(response, "address")
        assert database_state() == before

    @pytest.mark.parametrize("line_break", LINE_BREAKS.values(), ids=LINE_BREAKS.keys())
    def test_a_phone_number_with_a_line_break_is_refused(
        self, client: APIClient, world: dict[str, Any], line_break: str
    ) -> None:
        # given
        before = database_state()

        # when
        response = call(client, "PUT", USER, {"phone": f"+1 415 555{line_break}0123"})

        # then
        assert_invalid_field(response, "phone")
        assert database_state() == before

    @pytest.mark.parametrize("line_break", RAW_LINE_BREAKS.values(), ids=RAW_LINE_BREAKS.keys())
    def test_an_idempotency_key_with_a_line_break_is_refused_in_the_body(
        self, client: APIClient, world: dict[str, Any], line_break: str
    ) -> None:
        # given
        before = database_state()

        # when
        response = call(client, "POST", SEND, send_body(request_id=f"order{line_break}2"))

        # then
        assert_invalid_field(response, "request_id")
        assert database_state() == before

    @pytest.mark.parametrize("line_break", RAW_LINE_BREAKS.values(), ids=RAW_LINE_BREAKS.keys())
    def test_an_idempotency_key_with_a_line_break_is_refused_in_the_header(
        self, client: APIClient, world: dict[str, Any], line_break: str
    ) -> None:
        # given
        before = database_state()

        # when
        response = call(
            client, "POST", SEND, send_body(), HTTP_IDEMPOTENCY_KEY=f"order{line_break}2"
        )

        # then the header obeys the same rule as request_id
        body = assert_error(response, 400, "invalid_fields")
        assert "idempotency key" in body["detail"]
        assert database_state() == before

    @pytest.mark.parametrize("line_break", RAW_LINE_BREAKS.values(), ids=RAW_LINE_BREAKS.keys())
    def test_a_push_token_with_a_line_break_is_refused(
        self, client: APIClient, world: dict[str, Any], line_break: str
    ) -> None:
        # given
        before = database_state()

        # when
        response = call(
            client, "POST", DEVICES, {"token": f"{TOKEN}{line_break}x", "platform": "ios"}
        )

        # then
        assert_invalid_field(response, "token")
        assert database_state() == before


@pytest.mark.django_db
class TestAddresses:
    @pytest.mark.parametrize(
        "email",
        [
            "ada",
            "ada@",
            "@example.com",
            "ada@@example.com",
            "ada@example",
            ".ada@example.com",
            "ada..lovelace@example.com",
            "ada lovelace@example.com",
            "Ada <ada@example.com>",
            "<ada@example.com>",
            "ada@example.com, eve@example.com",
            '"ada"@example.com',
            "ada@exa_mple.com",
            "ada@example..com",
            "ada@" + "x" * 250 + ".com",
            "ada@-example.com",
            "ada@\u200bexample.com",
        ],
    )
    def test_an_invalid_email_answers_400_and_keeps_the_old_one(
        self, client: APIClient, world: dict[str, Any], email: str
    ) -> None:
        # given
        before = database_state()

        # when
        response = call(client, "PUT", USER, {"email": email})

        # then
        assert_invalid_field(response, "email")
        assert database_state() == before

    @pytest.mark.parametrize(
        "phone",
        [
            "+",
            "+1",
            "+12",
            "0044 20 7946 0958",
            "001 415 555 0123",
            "+1 415 555 0123 ext. 5",
            "+1 415 555 0123;ext=5",
            "+4420794609581234567",
            "+1 415 555 01a3",
            "+1 000 000 0000",
            "+0 123 456 789",
            "phone",
            "+1\u00a0415\u00a0555\u00a00123\u200b",
        ],
    )
    def test_an_invalid_phone_answers_400_and_keeps_the_old_one(
        self, client: APIClient, world: dict[str, Any], phone: str
    ) -> None:
        # given
        before = database_state()

        # when
        response = call(client, "PUT", USER, {"phone": phone})

        # then
        assert_invalid_field(response, "phone")
        assert database_state() == before

    @pytest.mark.parametrize(
        ("channel", "address"),
        [
            ("email", "not-an-email"),
            ("email", "Eve <eve@example.com>"),
            ("sms", "4155550123"),
            ("sms", "+1 415 555 0123 ext. 5"),
            ("sms", "eve@example.com"),
            ("push", "has space"),
            ("push", "tök"),
            ("push", ""),
        ],
    )
    def test_an_invalid_suppression_address_answers_400(
        self, client: APIClient, world: dict[str, Any], channel: str, address: str
    ) -> None:
        # given
        before = database_state()

        # when
        response = call(
            client,
            "POST",
            SUPPRESSIONS,
            {"channel": channel, "address": address, "reason": "manual"},
        )

        # then
        assert_invalid_field(response, "address")
        assert database_state() == before


@pytest.mark.django_db
class TestTemplateVariables:
    def test_a_missing_variable_answers_422_listing_it(
        self, client: APIClient, world: dict[str, Any]
    ) -> None:
        # given
        before = database_state()

        # when
        response = call(client, "POST", SEND, send_body(template_vars={"carrier": "UPS"}))

        # then
        body = assert_error(response, 422, "missing_template_variables")
        assert body["missing"] == ["order_id"]
        assert "order_id" in body["detail"]
        assert database_state() == before

    def test_every_missing_variable_of_every_targeted_template_is_listed(
        self, client: APIClient, world: dict[str, Any], order_shipped: NotificationType
    ) -> None:
        # given a French email template that also needs a carrier and an eta
        created = call(
            client,
            "POST",
            TEMPLATES,
            {
                "notification_type": "order_shipped",
                "channel": "email",
                "locale": "fr",
                "subject": "Commande {{ order_id }}",
                "body": "Avec {{ carrier }}, le {{ eta }}",
                "variables": ["order_id", "carrier", "eta"],
                "sample_vars": {"order_id": "1", "carrier": "UPS", "eta": "mardi"},
            },
        ).json()
        assert client.post(f"{TEMPLATES}/{created['id']}/publish").status_code == 201
        before = database_state()

        # when
        response = call(client, "POST", SEND, send_body(template_vars={"order_id": "1"}))

        # then
        body = assert_error(response, 422, "missing_template_variables")
        assert body["missing"] == ["carrier", "eta"]
        assert database_state() == before

    def test_a_variable_of_the_wrong_kind_for_the_subject_answers_422(
        self, client: APIClient, world: dict[str, Any]
    ) -> None:
        # given an email template whose subject does arithmetic on a variable
        created = call(
            client,
            "POST",
            TEMPLATES,
            {
                "notification_type": "order_shipped",
                "channel": "email",
                "variant": "count",
                "subject": "{{ count + 1 }} items shipped",
                "body": "Shipped",
                "variables": ["count"],
                "sample_vars": {"count": 2},
            },
        ).json()
        assert client.post(f"{TEMPLATES}/{created['id']}/publish").status_code == 201
        before = database_state()

        # when the send gives it text
        response = call(
            client,
            "POST",
            SEND,
            send_body(template_id="count", channels=["email"], template_vars={"count": "two"}),
        )

        # then
        body = assert_error(response, 422, "template_render_failed")
        assert "count" in body["detail"]
        assert database_state() == before

    def test_preview_without_a_declared_variable_answers_422_naming_it(
        self, client: APIClient, world: dict[str, Any]
    ) -> None:
        # given
        before = database_state()

        # when
        response = call(
            client,
            "POST",
            f"{TEMPLATES}/{world['template'].pk}/preview",
            {"template_vars": {"carrier": "UPS"}},
        )

        # then
        body = assert_error(response, 422, "template_render_failed")
        assert "order_id" in body["detail"]
        assert database_state() == before

    def test_an_unknown_template_variant_answers_422(
        self, client: APIClient, world: dict[str, Any]
    ) -> None:
        # given
        before = database_state()

        # when
        response = call(client, "POST", SEND, send_body(template_id="holiday_special"))

        # then
        body = assert_error(response, 422, "unknown_template")
        assert "holiday_special" in body["detail"]
        assert database_state() == before


@pytest.mark.django_db
class TestTimestamps:
    @pytest.mark.parametrize(
        ("times", "code", "words"),
        [
            ({"scheduled_at": timedelta(minutes=-6)}, "scheduled_at_in_past", "past"),
            ({"scheduled_at": timedelta(days=-3650)}, "scheduled_at_in_past", "past"),
            ({"scheduled_at": timedelta(days=366)}, "scheduled_at_too_far", "365 days"),
            ({"expires_at": timedelta(seconds=-1)}, "expires_at_in_past", "past"),
            ({"expires_at": timedelta(days=-3650)}, "expires_at_in_past", "past"),
            ({"expires_at": timedelta(days=367)}, "expires_at_too_far", "366 days"),
            (
                {"scheduled_at": timedelta(hours=2), "expires_at": timedelta(hours=1)},
                "expires_before_scheduled",
                "later than scheduled_at",
            ),
            (
                {"scheduled_at": timedelta(hours=2), "expires_at": timedelta(hours=2)},
                "expires_before_scheduled",
                "later than scheduled_at",
            ),
            (
                {"scheduled_at": timedelta(days=-1), "expires_at": timedelta(hours=1)},
                "scheduled_at_in_past",
                "past",
            ),
        ],
        ids=[
            "scheduled-6-minutes-ago",
            "scheduled-10-years-ago",
            "scheduled-366-days-ahead",
            "expired-a-second-ago",
            "expired-10-years-ago",
            "expires-367-days-ahead",
            "expires-before-scheduled",
            "expires-when-scheduled",
            "scheduled-yesterday-expires-soon",
        ],
    )
    def test_times_out_of_range_answer_422_and_write_nothing(
        self,
        client: APIClient,
        world: dict[str, Any],
        times: dict[str, timedelta],
        code: str,
        words: str,
    ) -> None:
        # given
        before = database_state()
        now = timezone.now()
        stamps = {name: (now + offset).isoformat() for name, offset in times.items()}

        # when
        response = call(client, "POST", SEND, send_body(**stamps))

        # then
        body = assert_error(response, 422, code)
        assert words in body["detail"]
        assert database_state() == before

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("scheduled_at", "0001-01-01T00:00:00Z"),
            ("scheduled_at", "9999-12-31T23:59:59Z"),
            ("expires_at", "9999-12-31T23:59:59+14:00"),
        ],
    )
    def test_extreme_years_answer_422_not_an_overflow(
        self, client: APIClient, world: dict[str, Any], field: str, value: str
    ) -> None:
        # given
        before = database_state()

        # when
        response = call(client, "POST", SEND, send_body(**{field: value}))

        # then
        assert response.status_code == 422, response.content
        assert response.json()["code"].startswith(field)
        assert database_state() == before

    @pytest.mark.parametrize(
        "value",
        [
            "2030-02-30T09:00:00Z",
            "2030-13-01T09:00:00Z",
            "2030-01-01T25:00:00Z",
            "2030-01-01T09:00:00+25:00",
            "2030-01-01",
            "2030-01-01 09:00",
            "10000-01-01T00:00:00Z",
            "9999-12-31T23:59:59-14:00",
            "0001-01-01T00:00:00+14:00",
            "-2030-01-01T00:00:00Z",
            "now",
            "",
        ],
    )
    @pytest.mark.parametrize("field", ["scheduled_at", "expires_at"])
    def test_unparseable_timestamps_answer_400_naming_the_field(
        self, client: APIClient, world: dict[str, Any], field: str, value: str
    ) -> None:
        # given
        before = database_state()

        # when
        response = call(client, "POST", SEND, send_body(**{field: value}))

        # then
        assert_invalid_field(response, field)
        assert database_state() == before

    def test_scheduled_at_a_minute_ago_means_now(
        self, client: APIClient, world: dict[str, Any]
    ) -> None:
        # given the clock-skew allowance the "past" refusals above lie outside of
        at = timezone.now() - timedelta(minutes=1)

        # when
        response = call(client, "POST", SEND, send_body(scheduled_at=at.isoformat()))

        # then
        assert response.status_code == 202, response.content
        assert response.json()["status"] == "queued"
