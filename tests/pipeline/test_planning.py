"""Planning rules on the real database: caps, deduplication, locales, idempotence."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from notifier.content.models import NotificationType
from notifier.core.enums import Category, Channel, Priority
from notifier.notifications import planning, services
from notifier.notifications.models import Delivery, DeliveryState, Notification
from notifier.recipients.models import Recipient
from notifier.recipients.services import register_device
from notifier.tenancy.models import Tenant
from tests.factories import NotificationTypeFactory, RecipientFactory, published_template

pytestmark = pytest.mark.django_db


@pytest.fixture
def ada(tenant: Tenant) -> Recipient:
    recipient = RecipientFactory.create(tenant=tenant, user_id="ada", email="ada@example.com")
    register_device(recipient=recipient, token="token-ada", platform="ios")
    return recipient


def make_type(tenant: Tenant, key: str, **fields: Any) -> NotificationType:
    notification_type = NotificationTypeFactory.create(tenant=tenant, key=key, **fields)
    for channel in (Channel.EMAIL, Channel.PUSH):
        published_template(
            notification_type, channel=channel, subject="{{ n }}", body="{{ n }}", variables=("n",)
        )
    return notification_type


def plan(tenant: Tenant, key: str, n: object = 1, **request: Any) -> list[Delivery]:
    """Accept a notification to ada and plan it; return its deliveries."""
    outcome = services.accept_notification(
        tenant=tenant,
        request=services.SendRequest(
            user_ids=["ada"], notification_type=key, template_vars={"n": n}, **request
        ),
    )
    notification_id = outcome.body["notification_id"]
    planning.plan_notification(notification_id=notification_id, now=timezone.now(), batch_size=50)
    return list(Delivery.objects.filter(notification_id=notification_id))


def states(deliveries: list[Delivery]) -> list[str]:
    return [d.state for d in deliveries]


def test_category_cap_stops_the_fourth_marketing_message_of_the_day(
    tenant: Tenant, ada: Recipient
) -> None:
    make_type(tenant, "promo", category=Category.MARKETING, default_channels=[Channel.EMAIL])

    results = [states(plan(tenant, "promo", n=i)) for i in range(4)]

    assert results[:3] == [["queued"]] * 3
    fourth = Delivery.objects.order_by("-id").first()
    assert fourth is not None
    assert fourth.state == DeliveryState.SUPPRESSED
    assert fourth.reason == "cap reached: 3 marketing per day"


def test_channel_cap_applies_across_types_and_critical_bypasses_it(
    tenant: Tenant, ada: Recipient, settings: Any
) -> None:
    settings.NOTIFIER_CHANNEL_CAPS = {"push": {"limit": 2, "period": 3600}}
    make_type(tenant, "a", default_channels=[Channel.PUSH])
    make_type(tenant, "b", default_channels=[Channel.PUSH])

    first, second = plan(tenant, "a"), plan(tenant, "b", n=2)
    third = plan(tenant, "a", n=3)
    critical = plan(tenant, "b", n=4, priority=Priority.CRITICAL)

    assert states(first) == states(second) == ["queued"]
    assert states(third) == ["suppressed"]
    assert third[0].reason == "cap reached: 2 push per hour"
    assert states(critical) == ["queued"]


def test_type_cap_and_failed_deliveries_do_not_count(tenant: Tenant, ada: Recipient) -> None:
    make_type(tenant, "digest", default_channels=[Channel.EMAIL], cap_limit=1, cap_period=600)
    first = plan(tenant, "digest")
    Delivery.objects.filter(pk=first[0].pk).update(state=DeliveryState.FAILED)

    second = plan(tenant, "digest", n=2)
    third = plan(tenant, "digest", n=3)

    assert states(second) == ["queued"]
    assert states(third) == ["suppressed"]
    assert third[0].reason == "cap reached: 1 digest per 10 minutes"


def test_same_content_within_the_window_is_deduplicated(tenant: Tenant, ada: Recipient) -> None:
    make_type(tenant, "otp", default_channels=[Channel.EMAIL], dedup_window=300)

    first = plan(tenant, "otp", n="123456")
    repeat = plan(tenant, "otp", n="123456")
    other = plan(tenant, "otp", n="654321")

    assert states(first) == ["queued"]
    assert states(repeat) == ["deduplicated"]
    assert repeat[0].reason == "same content sent within 300 s"
    assert states(other) == ["queued"]


def test_planning_twice_creates_nothing_more(tenant: Tenant, ada: Recipient) -> None:
    make_type(tenant, "t", default_channels=[Channel.EMAIL, Channel.PUSH])
    deliveries = plan(tenant, "t")
    notification_id = deliveries[0].notification_id

    again = planning.plan_notification(
        notification_id=notification_id, now=timezone.now(), batch_size=50
    )

    assert again == []
    assert Delivery.objects.filter(notification_id=notification_id).count() == 2
    assert Notification.objects.get(pk=notification_id).status == "planned"


@pytest.mark.parametrize(("locale", "expected"), [("fr", "fr"), ("fr-CA", "fr"), ("pt-BR", "en")])
def test_template_locale_falls_back_to_language_then_english(
    tenant: Tenant, ada: Recipient, locale: str, expected: str
) -> None:
    notification_type = make_type(tenant, "hello", default_channels=[Channel.EMAIL])
    published_template(
        notification_type, channel=Channel.EMAIL, locale="fr", subject="Bonjour {{ n }}",
        body="Bonjour {{ n }}", variables=("n",),
    )  # fmt: skip
    Recipient.objects.filter(pk=ada.pk).update(locale=locale)

    (delivery,) = plan(tenant, "hello")

    assert delivery.template_version is not None
    assert delivery.template_version.template.locale == expected
