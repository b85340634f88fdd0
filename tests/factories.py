"""factory_boy factories for the domain models, and helpers that go through the services."""

from __future__ import annotations

from typing import Any

import factory
from rest_framework.test import APIClient

from notifier.content import services as content_services
from notifier.content.models import NotificationType, Template
from notifier.core.enums import Category, Channel, Priority
from notifier.recipients.models import Recipient
from notifier.tenancy.models import Scope, Tenant
from notifier.tenancy.services import issue_api_key


class TenantFactory(factory.django.DjangoModelFactory[Tenant]):
    class Meta:
        model = Tenant

    name = factory.Sequence(lambda n: f"tenant-{n}")


class RecipientFactory(factory.django.DjangoModelFactory[Recipient]):
    class Meta:
        model = Recipient

    tenant = factory.SubFactory(TenantFactory)
    user_id = factory.Sequence(lambda n: f"user-{n}")
    email = factory.Sequence(lambda n: f"user{n}@example.com")
    phone = "+14155550123"
    timezone = "UTC"
    locale = "en"


class NotificationTypeFactory(factory.django.DjangoModelFactory[NotificationType]):
    class Meta:
        model = NotificationType

    tenant = factory.SubFactory(TenantFactory)
    key = factory.Sequence(lambda n: f"type_{n}")
    category = Category.TRANSACTIONAL
    default_priority = Priority.NORMAL
    default_channels = factory.LazyFunction(lambda: [Channel.EMAIL])


def client_for(tenant: Tenant, *scopes: str) -> APIClient:
    """An API client authenticated with a new key of ``tenant`` holding ``scopes``."""
    issued = issue_api_key(tenant=tenant, scopes=scopes or tuple(Scope.values))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.raw_key}")
    return client


def published_template(
    notification_type: NotificationType,
    *,
    channel: str = Channel.EMAIL,
    variant: str = "default",
    locale: str = "en",
    subject: str = "Hello {{ name }}",
    body: str = "Hi {{ name }}",
    html: str = "",
    variables: tuple[str, ...] = ("name",),
    sample_vars: dict[str, Any] | None = None,
) -> Template:
    if channel == Channel.SMS:
        subject = ""
    template = content_services.create_template(
        tenant=notification_type.tenant,
        notification_type=notification_type,
        channel=channel,
        locale=locale,
        variant=variant,
        subject=subject,
        body=body,
        html=html,
        variables=variables,
        sample_vars=sample_vars if sample_vars is not None else dict.fromkeys(variables, "x"),
    )
    content_services.publish_template(template=template)
    return template
