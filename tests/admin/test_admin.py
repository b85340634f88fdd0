"""The Django admin as support staff use it: every page loads, searches find the right rows,
a notification's timeline reads in order, templates are previewed, checked and published,
suppressions are normalized and API keys are shown once."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import time, timedelta
from typing import Any

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.messages import get_messages
from django.db import connection
from django.db.models import Model
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from notifier.content.models import NotificationType, Template, TemplateVersion
from notifier.core.enums import Channel, Priority
from notifier.notifications.admin import CappedCountPaginator
from notifier.notifications.models import (
    Delivery,
    DeliveryEvent,
    DeliveryState,
    IdempotencyRecord,
    Notification,
    NotificationRecipient,
    OutboxMessage,
)
from notifier.recipients import services as recipient_services
from notifier.recipients.models import (
    ChannelPreference,
    Device,
    Platform,
    QuietHours,
    Recipient,
    Suppression,
    SuppressionReason,
    TypePreference,
)
from notifier.tenancy.models import ApiKey, Tenant
from notifier.tenancy.services import issue_api_key
from tests.factories import (
    NotificationTypeFactory,
    RecipientFactory,
    TenantFactory,
    published_template,
)

OUR_APPS = ("tenancy", "recipients", "content", "notifications")
REGISTERED = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)


def _made_by(factory: Any, **fields: Any) -> Any:
    """Call a factory_boy factory, whose classes mypy sees as untyped."""
    return factory(**fields)


def a_tenant() -> Tenant:
    tenant: Tenant = _made_by(TenantFactory)
    return tenant


def a_recipient(tenant: Tenant, **fields: Any) -> Recipient:
    recipient: Recipient = _made_by(RecipientFactory, tenant=tenant, **fields)
    return recipient


def a_notification_type(tenant: Tenant, **fields: Any) -> NotificationType:
    notification_type: NotificationType = _made_by(NotificationTypeFactory, tenant=tenant, **fields)
    return notification_type


def url(model: type[Model], view: str, *args: object) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def changelist_rows(client: Client, model: type[Model], query: str) -> list[Any]:
    response = client.get(url(model, "changelist"), {"q": query})
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def no_inline_forms(*prefixes: str) -> dict[str, str]:
    """Management-form data for inlines the POST leaves untouched."""
    data = {}
    for prefix in prefixes:
        data.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"})
    return data


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def make_notification(
    notification_type: NotificationType, *user_ids: str, **fields: Any
) -> Notification:
    notification = Notification.objects.create(
        tenant=notification_type.tenant,
        notification_type=notification_type,
        priority=Priority.NORMAL,
        channels=[Channel.EMAIL],
        recipient_count=len(user_ids),
        **fields,
    )
    NotificationRecipient.objects.bulk_create(
        NotificationRecipient(
            notification=notification,
            tenant=notification.tenant,
            user_id=user_id,
            position=position,
            created_at=notification.created_at,
        )
        for position, user_id in enumerate(user_ids)
    )
    return notification


def make_delivery(notification: Notification, recipient: Recipient, **fields: Any) -> Delivery:
    values: dict[str, Any] = {
        "channel": Channel.EMAIL,
        "destination": recipient.email,
        "state": DeliveryState.SENT,
    }
    values.update(fields)
    return Delivery.objects.create(
        tenant=notification.tenant,
        notification=notification,
        recipient=recipient,
        user_id=recipient.user_id,
        **values,
    )


@dataclass
class World:
    """One row of every model of our apps, all in one tenant."""

    tenant: Tenant
    recipient: Recipient
    notification_type: NotificationType
    template: Template
    notification: Notification
    delivery: Delivery


def build_world(tenant: Tenant) -> World:
    issue_api_key(tenant=tenant, scopes=["send"], name="backend")
    recipient = a_recipient(tenant)
    notification_type = a_notification_type(tenant)
    template = published_template(notification_type)
    device, _ = recipient_services.register_device(
        recipient=recipient, token=f"token-{recipient.user_id}", platform=Platform.IOS
    )
    ChannelPreference.objects.create(recipient=recipient, channel=Channel.SMS, enabled=False)
    TypePreference.objects.create(
        recipient=recipient,
        notification_type=notification_type,
        channel=Channel.PUSH,
        enabled=False,
    )
    QuietHours.objects.create(
        recipient=recipient, start=time(22), end=time(7), timezone="Europe/Paris"
    )
    recipient_services.upsert_suppression(
        tenant=tenant,
        channel=Channel.EMAIL,
        address=f"bounced-{recipient.user_id}@example.com",
        reason=SuppressionReason.HARD_BOUNCE,
    )
    notification = make_notification(notification_type, recipient.user_id)
    delivery = make_delivery(
        notification, recipient, template_version=template.published_version, device=None
    )
    DeliveryEvent.objects.create(
        delivery=delivery, state=DeliveryState.SENT, provider="ses", occurred_at=timezone.now()
    )
    OutboxMessage.objects.create(
        topic="notification.accepted",
        payload={"notification_id": str(notification.pk)},
        available_at=timezone.now(),
    )
    IdempotencyRecord.objects.create(
        tenant=tenant,
        key=f"request-{notification.pk}",
        fingerprint="0" * 64,
        response_status=202,
        response_body={"notification_id": str(notification.pk)},
        notification=notification,
        created_at=timezone.now(),
        expires_at=timezone.now() + timedelta(days=1),
    )
    assert device.pk is not None
    return World(tenant, recipient, notification_type, template, notification, delivery)


@pytest.fixture
def world(tenant: Tenant) -> World:
    return build_world(tenant)


def test_every_model_of_our_apps_is_registered() -> None:
    # given
    ours = {model for label in OUR_APPS for model in apps.get_app_config(label).get_models()}

    # then
    assert ours - set(admin.site._registry) == set()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("model", "model_admin"),
    REGISTERED,
    ids=[model._meta.label for model, _ in REGISTERED],
)
class TestEveryPageLoads:
    def test_changelist_and_its_search(
        self, admin_client: Client, world: World, model: type[Model], model_admin: Any
    ) -> None:
        # when
        listed = admin_client.get(url(model, "changelist"))
        searched = admin_client.get(url(model, "changelist"), {"q": "no-such-thing"})

        # then
        assert listed.status_code == 200
        assert searched.status_code == 200

    def test_add_page(
        self, admin_client: Client, world: World, model: type[Model], model_admin: Any
    ) -> None:
        # when
        response = admin_client.get(url(model, "add"))

        # then
        can_add = model_admin.has_add_permission(response.wsgi_request)
        assert response.status_code == (200 if can_add else 403)

    def test_change_page(
        self, admin_client: Client, world: World, model: type[Model], model_admin: Any
    ) -> None:
        # given
        row = model._default_manager.order_by("pk").first()
        if row is None:
            assert model._meta.app_label not in OUR_APPS, "the world must hold one of each"
            pytest.skip(f"no {model._meta.label} rows")

        # when
        response = admin_client.get(url(model, "change", row.pk))

        # then
        assert response.status_code == 200

    def test_changelist_queries_do_not_grow_with_rows(
        self, admin_client: Client, world: World, model: type[Model], model_admin: Any
    ) -> None:
        # given
        with CaptureQueriesContext(connection) as one_world:
            admin_client.get(url(model, "changelist"))
        build_world(a_tenant())
        build_world(a_tenant())

        # when
        with CaptureQueriesContext(connection) as three_worlds:
            response = admin_client.get(url(model, "changelist"))

        # then
        assert response.status_code == 200
        assert len(three_worlds) == len(one_world)


@pytest.mark.django_db
class TestSearch:
    @pytest.fixture
    def ada(self, tenant: Tenant) -> Recipient:
        a_recipient(tenant, user_id="grace", email="grace@example.com")
        return a_recipient(tenant, user_id="ada", email="Ada@example.com", phone="+14155550100")

    @pytest.mark.parametrize(
        "query", ["ada", "ada@EXAMPLE.com", "+14155550100", "+1 (415) 555-0100", " ada "]
    )
    def test_recipients_by_user_id_email_or_phone(
        self, admin_client: Client, ada: Recipient, query: str
    ) -> None:
        # when
        rows = changelist_rows(admin_client, Recipient, query)

        # then
        assert rows == [ada]

    def test_recipient_search_matches_whole_values_only(
        self, admin_client: Client, ada: Recipient
    ) -> None:
        # when
        rows = changelist_rows(admin_client, Recipient, "ad")

        # then
        assert rows == []

    def test_deliveries_by_user_id_or_destination(
        self, admin_client: Client, ada: Recipient
    ) -> None:
        # given
        notification_type = a_notification_type(ada.tenant)
        grace = Recipient.objects.get(user_id="grace")
        notification = make_notification(notification_type, "ada", "grace")
        email = make_delivery(notification, ada)
        sms = make_delivery(notification, ada, channel=Channel.SMS, destination=ada.phone)
        make_delivery(notification, grace)

        # then
        assert set(changelist_rows(admin_client, Delivery, "ada")) == {email, sms}
        assert changelist_rows(admin_client, Delivery, "Ada@example.com") == [email]
        assert changelist_rows(admin_client, Delivery, "+1 415 555 0100") == [sms]

    def test_notifications_by_id_or_user_id(self, admin_client: Client, ada: Recipient) -> None:
        # given
        notification_type = a_notification_type(ada.tenant)
        to_ada = make_notification(notification_type, "ada", "grace")
        to_grace = make_notification(notification_type, "grace")

        # then
        assert changelist_rows(admin_client, Notification, "ada") == [to_ada]
        assert changelist_rows(admin_client, Notification, str(to_grace.pk)) == [to_grace]
        assert set(changelist_rows(admin_client, Notification, "grace")) == {to_ada, to_grace}

    def test_devices_by_token_or_owner(self, admin_client: Client, ada: Recipient) -> None:
        # given
        grace = Recipient.objects.get(user_id="grace")
        adas, _ = recipient_services.register_device(
            recipient=ada, token="a" * 64, platform=Platform.IOS
        )
        recipient_services.register_device(recipient=grace, token="b" * 64, platform=Platform.IOS)

        # then
        assert changelist_rows(admin_client, Device, "a" * 64) == [adas]
        assert changelist_rows(admin_client, Device, "ada") == [adas]
        assert changelist_rows(admin_client, Device, "+14155550100") == [adas]

    def test_preferences_by_user_id(self, admin_client: Client, ada: Recipient) -> None:
        # given
        grace = Recipient.objects.get(user_id="grace")
        adas = ChannelPreference.objects.create(recipient=ada, channel=Channel.SMS, enabled=False)
        ChannelPreference.objects.create(recipient=grace, channel=Channel.SMS, enabled=False)

        # then
        assert changelist_rows(admin_client, ChannelPreference, "ada") == [adas]

    def test_suppressions_by_address_in_any_notation(
        self, admin_client: Client, tenant: Tenant
    ) -> None:
        # given
        email, _ = recipient_services.upsert_suppression(
            tenant=tenant,
            channel=Channel.EMAIL,
            address="ada@example.com",
            reason=SuppressionReason.COMPLAINT,
        )
        sms, _ = recipient_services.upsert_suppression(
            tenant=tenant,
            channel=Channel.SMS,
            address="+14155550100",
            reason=SuppressionReason.STOP,
        )

        # then
        assert changelist_rows(admin_client, Suppression, " Ada@Example.COM ") == [email]
        assert changelist_rows(admin_client, Suppression, "+1 415 555 0100") == [sms]


@pytest.mark.django_db
class TestNotificationTimeline:
    def test_lists_recipients_deliveries_and_events_in_time_order(
        self, admin_client: Client, tenant: Tenant
    ) -> None:
        # given
        ada = a_recipient(tenant, user_id="ada", email="ada@example.com")
        grace = a_recipient(tenant, user_id="grace", email="grace@example.com")
        notification = make_notification(a_notification_type(tenant), "ada", "grace")
        to_ada = make_delivery(notification, ada, state=DeliveryState.DELIVERED)
        to_grace = make_delivery(notification, grace, state=DeliveryState.BOUNCED)
        start = timezone.now()
        # Inserted out of time order, interleaving the two deliveries.
        for delivery, seconds, reason in [
            (to_grace, 3, "reason-4-mailbox-unknown"),
            (to_ada, 0, "reason-1-queued"),
            (to_ada, 2, "reason-3-delivered"),
            (to_grace, 1, "reason-2-sent"),
        ]:
            DeliveryEvent.objects.create(
                delivery=delivery,
                state=DeliveryState.SENT,
                provider="ses",
                code="550" if delivery == to_grace else "",
                reason=reason,
                occurred_at=start + timedelta(seconds=seconds),
            )

        # when
        response = admin_client.get(url(Notification, "change", notification.pk))

        # then
        assert response.status_code == 200
        html = response.content.decode()
        assert "ada@example.com" in html
        assert "grace@example.com" in html
        timeline = html[html.index('class="notification-timeline"') :]
        positions = [timeline.index(f"reason-{n}-") for n in (1, 2, 3, 4)]
        assert positions == sorted(positions)
        assert url(Delivery, "change", to_grace.pk) in timeline
        inline_rows = [
            form.original
            for formset in response.context["inline_admin_formsets"]
            for form in formset
        ]
        assert [row.user_id for row in inline_rows if isinstance(row, NotificationRecipient)] == [
            "ada",
            "grace",
        ]
        assert [row for row in inline_rows if isinstance(row, Delivery)] == [to_ada, to_grace]

    def test_delivery_page_lists_its_events_in_time_order(
        self, admin_client: Client, world: World
    ) -> None:
        # given
        later = timezone.now() + timedelta(minutes=5)
        DeliveryEvent.objects.create(
            delivery=world.delivery,
            state=DeliveryState.DELIVERED,
            reason="reason-last",
            occurred_at=later,
        )
        DeliveryEvent.objects.create(
            delivery=world.delivery,
            state=DeliveryState.QUEUED,
            reason="reason-first",
            occurred_at=later - timedelta(hours=1),
        )

        # when
        response = admin_client.get(url(Delivery, "change", world.delivery.pk))

        # then
        assert response.status_code == 200
        (events,) = response.context["inline_admin_formsets"]
        occurred = [form.original.occurred_at for form in events]
        assert occurred == sorted(occurred)
        assert len(occurred) == 3

    def test_pipeline_rows_cannot_be_added_changed_or_deleted(
        self, admin_client: Client, world: World
    ) -> None:
        # when
        post = admin_client.post(
            url(Delivery, "change", world.delivery.pk), {"state": DeliveryState.DELIVERED}
        )
        delete = admin_client.post(url(Notification, "delete", world.notification.pk))

        # then
        assert post.status_code == 403
        assert delete.status_code == 403
        world.delivery.refresh_from_db()
        assert world.delivery.state == DeliveryState.SENT

    def test_list_count_stops_at_the_cap(
        self, admin_client: Client, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # given
        monkeypatch.setattr(CappedCountPaginator, "cap", 2)
        OutboxMessage.objects.bulk_create(
            OutboxMessage(topic="t", payload={}, available_at=timezone.now()) for _ in range(3)
        )

        # when
        response = admin_client.get(url(OutboxMessage, "changelist"))

        # then
        assert response.status_code == 200
        assert "More than 2 outbox messages" in response.content.decode()


@pytest.fixture
def notification_type(tenant: Tenant) -> NotificationType:
    return a_notification_type(tenant, key="welcome")


def template_form(**overrides: str) -> dict[str, str]:
    data = {
        "subject": "Welcome {{ name }}",
        "body": "Hi {{ name }}, welcome aboard.",
        "html": "<p>Hi <b>{{ name }}</b></p>",
        "variables": "name",
        "sample_vars": '{"name": "Ada"}',
        **no_inline_forms("versions"),
    }
    data.update(overrides)
    return data


@pytest.mark.django_db
class TestTemplates:
    def test_change_page_previews_the_draft_with_html_escaped(
        self, admin_client: Client, notification_type: NotificationType
    ) -> None:
        # given
        template = published_template(
            notification_type,
            subject="Welcome {{ name }}",
            body="Hi {{ name }}, welcome aboard.",
            html="<p>Hi <b>{{ name }}</b><script>alert(1)</script></p>",
            sample_vars={"name": "Ada"},
        )

        # when
        response = admin_client.get(url(Template, "change", template.pk))

        # then
        html = response.content.decode()
        assert "Welcome Ada" in html
        assert "Hi Ada, welcome aboard." in html
        assert 'srcdoc="&lt;p&gt;Hi &lt;b&gt;Ada&lt;/b&gt;&lt;script&gt;' in html
        assert "<script>alert(1)</script>" not in html
        assert re.search(r"<iframe[^>]*\bsandbox=\"\"", html)

    def test_preview_shows_why_the_draft_does_not_render(
        self, admin_client: Client, notification_type: NotificationType
    ) -> None:
        # given
        template = published_template(notification_type)
        Template.objects.filter(pk=template.pk).update(sample_vars={})

        # when
        response = admin_client.get(url(Template, "change", template.pk))

        # then
        html = response.content.decode()
        assert re.search(r"This draft does not render: subject: .*name", html)

    def test_add_creates_the_template_in_the_types_tenant(
        self, admin_client: Client, notification_type: NotificationType
    ) -> None:
        # given
        data = template_form(
            notification_type=str(notification_type.pk),
            channel=Channel.EMAIL,
            locale="en",
            variant="default",
        )

        # when
        response = admin_client.post(url(Template, "add"), data)

        # then
        assert response.status_code == 302, response.context["adminform"].form.errors
        template = Template.objects.get()
        assert template.tenant == notification_type.tenant
        assert template.variables == ["name"]
        assert template.sample_vars == {"name": "Ada"}
        assert template.published_version is None

    def test_saving_a_sandbox_escape_is_refused_with_the_problem(
        self, admin_client: Client, notification_type: NotificationType
    ) -> None:
        # given
        template = published_template(notification_type, body="Hi {{ name }}")

        # when
        response = admin_client.post(
            url(Template, "change", template.pk),
            template_form(body="{{ x.__class__ }}", variables="name,x"),
        )

        # then
        assert response.status_code == 200
        errors = response.context["adminform"].form.errors
        assert "__class__" in " ".join(errors["body"])
        template.refresh_from_db()
        assert template.body == "Hi {{ name }}"

    def test_add_refuses_problems_per_field_and_a_taken_slot(
        self, admin_client: Client, notification_type: NotificationType
    ) -> None:
        # given
        published_template(notification_type, channel=Channel.SMS)
        data = template_form(
            notification_type=str(notification_type.pk),
            channel=Channel.SMS,
            locale="en",
            variant="default",
            body="Hi {{ nme }}",
        )

        # when
        response = admin_client.post(url(Template, "add"), data)

        # then
        errors = response.context["adminform"].form.errors
        assert errors["subject"] == ["an SMS template has only a body; leave this empty"]
        assert "nme" in " ".join(errors["body"])
        assert "A live template for this type" in errors["__all__"][0]
        assert Template.objects.count() == 1

    def test_change_saves_the_draft_only(
        self, admin_client: Client, notification_type: NotificationType
    ) -> None:
        # given
        template = published_template(notification_type, sample_vars={"name": "Ada"})

        # when
        response = admin_client.post(
            url(Template, "change", template.pk), template_form(body="Hello {{ name }}")
        )

        # then
        assert response.status_code == 302
        template.refresh_from_db()
        assert template.body == "Hello {{ name }}"
        assert template.published_version is not None
        assert template.published_version.body == "Hi {{ name }}"

    def test_publish_action_creates_a_version_and_reports_failures(
        self, admin_client: Client, notification_type: NotificationType
    ) -> None:
        # given
        good = published_template(notification_type, sample_vars={"name": "Ada"})
        Template.objects.filter(pk=good.pk).update(body="Hello {{ name }}")
        bad = published_template(notification_type, channel=Channel.PUSH)
        Template.objects.filter(pk=bad.pk).update(sample_vars={})

        # when
        response = admin_client.post(
            url(Template, "changelist"),
            {"action": "publish", "_selected_action": [good.pk, bad.pk]},
        )

        # then
        assert response.status_code == 302
        good.refresh_from_db()
        assert good.published_version is not None
        assert (good.published_version.version, good.published_version.body) == (
            2,
            "Hello {{ name }}",
        )
        assert TemplateVersion.objects.filter(template=bad).count() == 1
        assert messages_of(response) == [
            f"{bad} was not published: sample_vars must give a value for every declared "
            "variable; missing: name",
            f"Published {good} v2.",
        ]

    def test_archive_action_takes_templates_out_of_use(
        self, admin_client: Client, notification_type: NotificationType
    ) -> None:
        # given
        template = published_template(notification_type)

        # when
        admin_client.post(
            url(Template, "changelist"), {"action": "archive", "_selected_action": [template.pk]}
        )

        # then
        template.refresh_from_db()
        assert template.archived_at is not None


@pytest.mark.django_db
class TestSuppressions:
    def add(self, client: Client, tenant: Tenant, channel: str, address: str) -> Any:
        return client.post(
            url(Suppression, "add"),
            {
                "tenant": str(tenant.pk),
                "channel": channel,
                "address": address,
                "reason": SuppressionReason.MANUAL,
                "note": "asked by phone",
            },
        )

    def test_email_address_is_stored_casefolded(self, admin_client: Client, tenant: Tenant) -> None:
        # when
        response = self.add(admin_client, tenant, Channel.EMAIL, " Ada@Example.COM ")

        # then
        assert response.status_code == 302
        assert Suppression.objects.get().address == "ada@example.com"

    def test_phone_number_is_stored_in_e164(self, admin_client: Client, tenant: Tenant) -> None:
        # when
        self.add(admin_client, tenant, Channel.SMS, "+1 (415) 555-0100")

        # then
        assert Suppression.objects.get().address == "+14155550100"

    def test_invalid_phone_number_is_refused(self, admin_client: Client, tenant: Tenant) -> None:
        # when
        response = self.add(admin_client, tenant, Channel.SMS, "4155550100")

        # then
        assert response.status_code == 200
        assert response.context["adminform"].form.errors["address"] == [
            "phone number must be in E.164 format, starting with '+'"
        ]
        assert not Suppression.objects.exists()

    def test_same_address_in_another_notation_is_a_duplicate(
        self, admin_client: Client, tenant: Tenant
    ) -> None:
        # given
        self.add(admin_client, tenant, Channel.EMAIL, "ada@example.com")

        # when
        response = self.add(admin_client, tenant, Channel.EMAIL, "ADA@example.com")

        # then
        assert response.status_code == 200
        assert response.context["adminform"].form.errors["__all__"]
        assert Suppression.objects.count() == 1


@pytest.mark.django_db
class TestRecipients:
    def test_contact_points_are_normalized_and_checked(
        self, admin_client: Client, tenant: Tenant
    ) -> None:
        # given
        recipient = a_recipient(tenant)
        form = {
            "email": "Ada@EXAMPLE.com",
            "phone": "+1 415 555 0100",
            "timezone": "Europe/Paris",
            "locale": "fr",
            "attributes": '{"plan": "pro"}',
            **no_inline_forms("devices", "channel_preferences", "type_preferences", "quiet_hours"),
        }

        # when
        saved = admin_client.post(url(Recipient, "change", recipient.pk), form)
        refused = admin_client.post(
            url(Recipient, "change", recipient.pk), {**form, "timezone": "Mars/Olympus"}
        )

        # then
        assert saved.status_code == 302
        recipient.refresh_from_db()
        assert (recipient.email, recipient.phone) == ("Ada@example.com", "+14155550100")
        assert refused.status_code == 200
        assert "timezone" in refused.context["adminform"].form.errors

    def test_inlines_show_devices_and_preferences(self, admin_client: Client, world: World) -> None:
        # when
        response = admin_client.get(url(Recipient, "change", world.recipient.pk))

        # then
        shown = {
            formset.opts.model: [form.original for form in formset if form.original is not None]
            for formset in response.context["inline_admin_formsets"]
        }
        assert {model: len(rows) for model, rows in shown.items()} == {
            Device: 1,
            ChannelPreference: 1,
            TypePreference: 1,
            QuietHours: 1,
        }


@pytest.mark.django_db
class TestPreferences:
    def test_type_preference_of_another_tenants_type_is_refused(
        self, admin_client: Client, tenant: Tenant
    ) -> None:
        # given
        recipient = a_recipient(tenant)
        foreign_type = a_notification_type(a_tenant())

        # when
        response = admin_client.post(
            url(TypePreference, "add"),
            {
                "recipient": str(recipient.pk),
                "notification_type": str(foreign_type.pk),
                "channel": Channel.EMAIL,
                "enabled": "on",
            },
        )

        # then
        assert response.context["adminform"].form.errors["notification_type"] == [
            "This type belongs to another tenant."
        ]
        assert not TypePreference.objects.exists()


@pytest.mark.django_db
class TestApiKeys:
    def test_created_key_is_shown_once_and_stored_hashed(
        self, admin_client: Client, tenant: Tenant
    ) -> None:
        # when
        response = admin_client.post(
            url(ApiKey, "add"), {"tenant": str(tenant.pk), "name": "backend", "scopes": ["send"]}
        )

        # then
        assert response.status_code == 200
        api_key = ApiKey.objects.get()
        match = re.search(rf"ntf_{api_key.prefix}_[A-Za-z0-9_-]+", response.content.decode())
        assert match is not None
        raw_key = match.group()
        assert api_key.key_hash == hashlib.sha256(raw_key.encode()).hexdigest()
        assert (api_key.tenant, api_key.name, api_key.scopes) == (tenant, "backend", ["send"])
        for later in (
            admin_client.get(url(ApiKey, "change", api_key.pk)),
            admin_client.get(url(ApiKey, "changelist")),
        ):
            assert raw_key not in later.content.decode()
            assert api_key.key_hash not in later.content.decode()

    def test_revoke_action_revokes_through_the_service(
        self, admin_client: Client, tenant: Tenant
    ) -> None:
        # given
        issued = issue_api_key(tenant=tenant, scopes=["read"])

        # when
        response = admin_client.post(
            url(ApiKey, "changelist"), {"action": "revoke", "_selected_action": [issued.api_key.pk]}
        )

        # then
        issued.api_key.refresh_from_db()
        assert issued.api_key.revoked_at is not None
        assert messages_of(response) == ["Revoked 1 API key(s)."]
