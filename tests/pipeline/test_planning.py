"""Planning rules on the real database: caps, deduplication, locales, idempotence, address
keys, chunks."""

from __future__ import annotations

from collections import Counter
from dataclasses import astuple
from datetime import time
from typing import Any

import pytest
from django.utils import timezone

from notifier.content.models import NotificationType
from notifier.core.enums import Category, Channel, Priority
from notifier.notifications import planning, services
from notifier.notifications.models import (
    Delivery,
    DeliveryEvent,
    DeliveryState,
    Notification,
    OutboxMessage,
)
from notifier.recipients.models import (
    ChannelPreference,
    Device,
    QuietHours,
    Recipient,
    Suppression,
    TypePreference,
)
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


def plan(
    tenant: Tenant, key: str, n: object = 1, user_ids: tuple[str, ...] = ("ada",), **request: Any
) -> list[Delivery]:
    """Accept a notification (to ada unless told) and plan it; return its deliveries in order."""
    outcome = services.accept_notification(
        tenant=tenant,
        request=services.SendRequest(
            user_ids=user_ids, notification_type=key, template_vars={"n": n}, **request
        ),
    )
    notification_id = outcome.body["notification_id"]
    planning.plan_notification(notification_id=notification_id, now=timezone.now(), batch_size=50)
    return list(Delivery.objects.filter(notification_id=notification_id).order_by("id"))


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


def test_each_user_gets_what_their_preferences_devices_and_quiet_hours_say(
    tenant: Tenant, ada: Recipient
) -> None:
    # given
    notification_type = make_type(tenant, "t", default_channels=[Channel.PUSH, Channel.EMAIL])
    # ada: email on as a channel, off for this type (the type's choice wins)
    ChannelPreference.objects.create(recipient=ada, channel=Channel.EMAIL, enabled=True)
    TypePreference.objects.create(
        recipient=ada, notification_type=notification_type, channel=Channel.EMAIL, enabled=False
    )
    # bob: push off as a channel, on for this type; two active devices and a dead one
    bob = RecipientFactory.create(tenant=tenant, user_id="bob", email="bob@example.com")
    ChannelPreference.objects.create(recipient=bob, channel=Channel.PUSH, enabled=False)
    TypePreference.objects.create(
        recipient=bob, notification_type=notification_type, channel=Channel.PUSH, enabled=True
    )
    for token in ("token-bob-1", "token-bob-dead", "token-bob-2"):
        register_device(recipient=bob, token=token, platform="android")
    Device.objects.filter(token="token-bob-dead").update(active=False)
    # cy: in her quiet hours now, no device
    cy = RecipientFactory.create(tenant=tenant, user_id="cy", email="cy@example.com")
    hour = timezone.now().hour
    QuietHours.objects.create(
        recipient=cy, start=time((hour + 23) % 24), end=time((hour + 1) % 24), timezone="UTC"
    )

    # when
    deliveries = plan(tenant, "t", user_ids=("ada", "bob", "cy", "ghost"))

    # then
    assert [(d.user_id, d.channel, d.destination, d.state, d.reason) for d in deliveries] == [
        ("ada", "push", "token-ada", "queued", ""),
        ("ada", "email", "", "suppressed", "opted out of email for t"),
        ("bob", "push", "token-bob-1", "queued", ""),
        ("bob", "push", "token-bob-2", "queued", ""),
        ("bob", "email", "bob@example.com", "queued", ""),
        ("cy", "push", "", "failed", "no active device"),
        ("cy", "email", "cy@example.com", "deferred", "quiet hours"),
        ("ghost", "push", "", "failed", "unknown user"),
        ("ghost", "email", "", "failed", "unknown user"),
    ]
    assert deliveries[6].next_attempt_at is not None
    assert {d.state: d.failed_at is not None for d in deliveries} == {
        "queued": False,
        "deferred": False,
        "suppressed": True,
        "failed": True,
    }


def test_saving_an_address_saves_its_suppression_key(tenant: Tenant) -> None:
    # given
    bob = RecipientFactory.create(tenant=tenant, email="Bob@Example.COM", phone="+1 415 555 0199")
    # then
    assert (bob.email_key, bob.phone_key) == ("bob@example.com", "+14155550199")

    # when: only the email is saved, as update_or_create saves what changed
    bob.email = "Robert@Example.com"
    bob.save(update_fields=["email"])
    # then
    bob.refresh_from_db()
    assert (bob.email_key, bob.phone_key) == ("robert@example.com", "+14155550199")

    # when: no address, or an invalid one
    bob.email, bob.phone = "", "not a number"
    bob.save()
    # then
    bob.refresh_from_db()
    assert (bob.email_key, bob.phone_key) == ("", "")


def test_an_address_changed_without_its_key_is_checked_as_it_is_now(
    tenant: Tenant, ada: Recipient
) -> None:
    # given: ada's address changes behind save()'s back, to a suppressed one
    make_type(tenant, "t", default_channels=[Channel.EMAIL])
    Suppression.objects.create(
        tenant=tenant, channel=Channel.EMAIL, address="ada.new@example.com", reason="manual"
    )
    Recipient.objects.filter(pk=ada.pk).update(email="Ada.New@Example.com")
    ada.refresh_from_db()
    assert ada.email_key is None  # forgotten by the database, not left stale

    # when
    (delivery,) = plan(tenant, "t")

    # then
    assert delivery.state == DeliveryState.SUPPRESSED
    assert delivery.reason == "address is on the suppression list"
    assert delivery.address_key == "ada.new@example.com"


@pytest.mark.parametrize("written", ["saved", "updated"])
def test_an_invalid_address_fails_whether_its_key_is_stored_or_not(
    tenant: Tenant, ada: Recipient, written: str
) -> None:
    # given
    make_type(tenant, "t", default_channels=[Channel.EMAIL])
    if written == "saved":
        ada.email = "ada@@example.com"
        ada.save()
    else:
        Recipient.objects.filter(pk=ada.pk).update(email="ada@@example.com")

    # when
    (delivery,) = plan(tenant, "t")

    # then
    assert (delivery.state, delivery.reason) == ("failed", "invalid email address")
    assert delivery.address_key == ""


def test_a_large_notification_is_planned_in_chunks_everyone_once(tenant: Tenant) -> None:
    # given: 23 users (every third without a device, one unknown), planned 4 at a time
    make_type(tenant, "t", default_channels=[Channel.PUSH, Channel.EMAIL])
    user_ids = [f"user-{n}" for n in range(23)]
    for n, user_id in enumerate(user_ids[:-1]):
        recipient = RecipientFactory.create(tenant=tenant, user_id=user_id)
        if n % 3:
            register_device(recipient=recipient, token=f"token-{n}", platform="android")
    outcome = services.accept_notification(
        tenant=tenant,
        request=services.SendRequest(
            user_ids=user_ids, notification_type="t", template_vars={"n": 1}
        ),
    )
    notification_id = outcome.body["notification_id"]

    # when
    batches = planning.plan_notification(
        notification_id=notification_id, now=timezone.now(), batch_size=5, chunk_size=4
    )

    # then: one delivery per user and channel, in request order, each with its event
    deliveries = list(Delivery.objects.filter(notification_id=notification_id).order_by("id"))
    assert [(d.user_id, d.channel) for d in deliveries] == [
        (user_id, channel) for user_id in user_ids for channel in ("push", "email")
    ]
    assert Counter(d.state for d in deliveries) == {"queued": 14 + 22, "failed": 8 + 1 + 1}
    events = DeliveryEvent.objects.filter(delivery__notification_id=notification_id)
    assert sorted((e.delivery_id, e.state, e.reason) for e in events) == [
        (d.pk, d.state, d.reason) for d in deliveries
    ]
    # the batches are those of the whole notification at once, each staged once
    queued = [(d.lane, d.channel, d.pk) for d in deliveries if d.state == DeliveryState.QUEUED]
    expected = planning.split_batches(queued, batch_size=5)
    assert sorted(map(astuple, batches)) == sorted(map(astuple, expected))
    staged = OutboxMessage.objects.filter(topic="deliveries.queued")
    assert sorted(tuple(m.payload["delivery_ids"]) for m in staged) == sorted(
        tuple(b.delivery_ids) for b in expected
    )
