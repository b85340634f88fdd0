"""The webhook endpoints over real HTTP (the app in ``live_server``), with requests signed the
way Twilio and SNS sign them: state changes, replays, order, suppressions and refusals."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
import requests
from twilio.request_validator import RequestValidator

from notifier.notifications.models import Delivery, DeliveryEvent, DeliveryState
from notifier.recipients.models import Suppression, SuppressionReason
from notifier.tenancy.models import Tenant
from notifier.webhooks.models import ProviderEvent
from tests.factories import RecipientFactory, TenantFactory
from tests.pipeline.conftest import accept_and_plan
from tests.webhooks.conftest import (
    SES_TOPIC,
    CertificateServer,
    post_twilio,
    ses_notification,
    sns_timestamp,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("alerts", "twilio_settings"),
]

PHONE = "+14155550123"
EMAIL = "ada@example.com"


def sent_delivery(tenant: Tenant, channel: str, *, state: str = DeliveryState.SENT) -> Delivery:
    RecipientFactory.create(tenant=tenant, user_id="ada", email=EMAIL, phone=PHONE)
    notification_id = accept_and_plan(tenant, user_ids=["ada"], channels=[channel])
    delivery = Delivery.objects.get(notification_id=notification_id)
    provider, message_id = ("twilio", "SM1") if channel == "sms" else ("ses", "0100-abc")
    Delivery.objects.filter(pk=delivery.pk).update(
        state=state,
        provider=provider,
        provider_message_id="" if state == DeliveryState.UNKNOWN else message_id,
    )
    return delivery


def status_callback(live_server: Any, delivery: Delivery, status: str, **extra: str) -> Any:
    url = f"{live_server.url}/webhooks/twilio/status?delivery_id={delivery.pk}"
    params = {"MessageSid": "SM1", "MessageStatus": status, "To": PHONE, **extra}
    return post_twilio(url, params)


def reports(delivery: Delivery) -> list[DeliveryEvent]:
    return list(delivery.events.filter(code="provider_report"))


def test_a_signed_delivered_callback_delivers(live_server: Any, tenant: Tenant) -> None:
    delivery = sent_delivery(tenant, "sms")

    response = status_callback(live_server, delivery, "delivered")

    assert response.status_code == 200
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.DELIVERED
    assert delivery.delivered_at is not None
    (event,) = reports(delivery)
    assert event.detail["status"] == "delivered"
    assert event.detail["applied"] is True


@pytest.mark.parametrize("signature", ["", "forged"])
def test_a_forged_twilio_signature_is_refused_and_changes_nothing(
    live_server: Any, tenant: Tenant, signature: str
) -> None:
    delivery = sent_delivery(tenant, "sms")
    url = f"{live_server.url}/webhooks/twilio/status?delivery_id={delivery.pk}"

    response = post_twilio(
        url, {"MessageSid": "SM1", "MessageStatus": "failed"}, signature=signature
    )

    assert response.status_code == 403
    assert response.json()["code"] == "invalid_signature"
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.SENT
    assert reports(delivery) == []
    assert not ProviderEvent.objects.exists()


def test_a_callback_signed_with_another_token_or_for_another_url_is_refused(
    live_server: Any, tenant: Tenant
) -> None:
    delivery = sent_delivery(tenant, "sms")
    url = f"{live_server.url}/webhooks/twilio/status?delivery_id={delivery.pk}"
    params = {"MessageSid": "SM1", "MessageStatus": "delivered"}

    other_token = post_twilio(url, params, token="f" * 32)
    other_url = requests.post(
        url,
        data=params,
        headers={
            "X-Twilio-Signature": RequestValidator(
                "0123456789abcdef0123456789abcdef"
            ).compute_signature(url.replace(str(delivery.pk), "999"), params)
        },
        timeout=10,
    )

    assert (other_token.status_code, other_url.status_code) == (403, 403)
    assert Delivery.objects.get(pk=delivery.pk).state == DeliveryState.SENT


def test_a_replayed_callback_is_applied_once(live_server: Any, tenant: Tenant) -> None:
    delivery = sent_delivery(tenant, "sms")

    first = status_callback(live_server, delivery, "delivered")
    second = status_callback(live_server, delivery, "delivered")

    assert (first.status_code, second.status_code) == (200, 200)
    assert len(reports(delivery)) == 1
    assert ProviderEvent.objects.filter(event_id="SM1:delivered").count() == 1


def test_a_late_sent_never_moves_a_delivered_delivery_back(
    live_server: Any, tenant: Tenant
) -> None:
    delivery = sent_delivery(tenant, "sms")

    status_callback(live_server, delivery, "delivered")
    status_callback(live_server, delivery, "sent")

    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.DELIVERED
    assert [(e.detail["status"], e.detail["applied"]) for e in reports(delivery)] == [
        ("delivered", True),
        ("sent", False),
    ]


def test_an_unknown_outcome_is_resolved_by_a_report(live_server: Any, tenant: Tenant) -> None:
    delivery = sent_delivery(tenant, "sms", state=DeliveryState.UNKNOWN)

    status_callback(live_server, delivery, "delivered")

    delivery.refresh_from_db()
    assert (delivery.state, delivery.provider_message_id) == (DeliveryState.DELIVERED, "SM1")
    assert delivery.sent_at is not None


def test_undelivered_fails_with_the_error_code_and_21610_suppresses(
    live_server: Any, tenant: Tenant
) -> None:
    delivery = sent_delivery(tenant, "sms")

    status_callback(live_server, delivery, "undelivered", ErrorCode="21610")

    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.FAILED
    assert "21610" in delivery.reason
    assert delivery.failed_at is not None
    suppression = Suppression.objects.get(tenant=tenant, channel="sms", address=PHONE)
    assert suppression.reason == SuppressionReason.STOP


def test_a_callback_for_an_unknown_delivery_answers_200(live_server: Any) -> None:
    url = f"{live_server.url}/webhooks/twilio/status?delivery_id=987654"

    response = post_twilio(url, {"MessageSid": "SM404", "MessageStatus": "delivered"})

    assert response.status_code == 200
    assert ProviderEvent.objects.get(event_id="SM404:delivered").outcome == "unknown_delivery"


def inbound(live_server: Any, body: str, sid: str, sender: str = PHONE) -> requests.Response:
    url = f"{live_server.url}/webhooks/twilio/inbound"
    return post_twilio(url, {"MessageSid": sid, "From": sender, "To": "+15005550006", "Body": body})


def test_inbound_stop_suppresses_the_number_for_every_tenant_that_knows_it(
    live_server: Any, tenant: Tenant
) -> None:
    other = TenantFactory.create()
    stranger = TenantFactory.create()
    RecipientFactory.create(tenant=tenant, user_id="ada", phone=PHONE)
    RecipientFactory.create(tenant=other, user_id="ada-elsewhere", phone=PHONE)
    RecipientFactory.create(tenant=stranger, user_id="bob", phone="+14155550999")

    response = inbound(live_server, "  stop ", "SMin1")

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/xml")
    assert re.search(r"<Response\s*/>", response.text)
    suppressed = Suppression.objects.filter(channel="sms", address=PHONE, reason="stop")
    assert sorted(s.tenant_id for s in suppressed) == sorted([tenant.pk, other.pk])

    inbound(live_server, "HELP", "SMin2")
    assert suppressed.count() == 2
    assert ProviderEvent.objects.get(event_id="inbound:SMin2").detail["keyword"] == "HELP"

    inbound(live_server, "Start", "SMin3")
    assert not Suppression.objects.filter(channel="sms", address=PHONE).exists()


def test_inbound_start_keeps_a_suppression_that_is_not_a_stop(
    live_server: Any, tenant: Tenant
) -> None:
    RecipientFactory.create(tenant=tenant, user_id="ada", phone=PHONE)
    Suppression.objects.create(tenant=tenant, channel="sms", address=PHONE, reason="manual")

    inbound(live_server, "STOP", "SMin4")
    inbound(live_server, "UNSTOP", "SMin5")

    assert Suppression.objects.get(tenant=tenant, channel="sms").reason == "manual"


def test_a_forged_inbound_stop_is_refused(live_server: Any, tenant: Tenant) -> None:
    RecipientFactory.create(tenant=tenant, user_id="ada", phone=PHONE)
    url = f"{live_server.url}/webhooks/twilio/inbound"

    response = post_twilio(url, {"MessageSid": "SMx", "From": PHONE, "Body": "STOP"}, signature="x")

    assert response.status_code == 403
    assert not Suppression.objects.exists()


# -- SNS ----------------------------------------------------------------------------------------


@pytest.fixture
def sns_allowed(settings: Any, cert_server: CertificateServer) -> CertificateServer:
    settings.NOTIFIER_SNS_CERT_URL_PATTERN = "^" + re.escape(cert_server.url) + "$"
    settings.NOTIFIER_SNS_TOPIC_ARNS = [SES_TOPIC]
    return cert_server


def ses_event(kind: str, delivery: Delivery, **extra: Any) -> dict[str, Any]:
    return {
        "eventType": kind,
        "mail": {
            "messageId": "0100-abc",
            "destination": [EMAIL],
            "tags": {"notifier_delivery_id": [str(delivery.pk)]},
        },
        **extra,
    }


def post_sns(live_server: Any, message: dict[str, Any]) -> requests.Response:
    return requests.post(
        f"{live_server.url}/webhooks/sns",
        json=message,
        headers={"x-amz-sns-message-type": message.get("Type", "")},
        timeout=10,
    )


def test_a_permanent_bounce_bounces_and_suppresses(
    live_server: Any, tenant: Tenant, sns_allowed: CertificateServer
) -> None:
    delivery = sent_delivery(tenant, "email")
    bounce = {"bounceType": "Permanent", "bounceSubType": "General"}
    message = sns_allowed.sign(ses_notification(ses_event("Bounce", delivery, bounce=bounce)))

    response = post_sns(live_server, message)
    replay = post_sns(live_server, message)

    assert (response.status_code, replay.status_code) == (200, 200)
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.BOUNCED
    assert Suppression.objects.get(tenant=tenant, channel="email").reason == "hard_bounce"
    assert len(reports(delivery)) == 1


def test_a_transient_bounce_is_only_recorded(
    live_server: Any, tenant: Tenant, sns_allowed: CertificateServer
) -> None:
    delivery = sent_delivery(tenant, "email")
    bounce = {"bounceType": "Transient", "bounceSubType": "MailboxFull"}

    post_sns(
        live_server,
        sns_allowed.sign(ses_notification(ses_event("Bounce", delivery, bounce=bounce))),
    )

    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.SENT
    assert not Suppression.objects.exists()
    assert reports(delivery)[0].detail["bounce_type"] == "Transient"


def test_a_complaint_suppresses_and_leaves_the_delivery_as_it_was(
    live_server: Any, tenant: Tenant, sns_allowed: CertificateServer
) -> None:
    delivery = sent_delivery(tenant, "email", state=DeliveryState.DELIVERED)

    post_sns(live_server, sns_allowed.sign(ses_notification(ses_event("Complaint", delivery))))

    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.DELIVERED
    assert Suppression.objects.get(tenant=tenant, channel="email").reason == "complaint"


def test_a_tampered_sns_message_is_refused(
    live_server: Any, tenant: Tenant, sns_allowed: CertificateServer
) -> None:
    delivery = sent_delivery(tenant, "email")
    message = sns_allowed.sign(ses_notification(ses_event("Delivery", delivery)))
    message["Message"] = message["Message"].replace("Delivery", "Bounce")

    response = post_sns(live_server, message)

    assert response.status_code == 403
    assert Delivery.objects.get(pk=delivery.pk).state == DeliveryState.SENT
    assert not ProviderEvent.objects.exists()


def test_a_certificate_url_outside_the_allowlist_is_refused_and_never_fetched(
    live_server: Any, tenant: Tenant, cert_server: CertificateServer
) -> None:
    # given the default allowlist (SNS' hosts only) and a message validly signed by a key whose
    # certificate a local server would hand out
    delivery = sent_delivery(tenant, "email")
    message = cert_server.sign(ses_notification(ses_event("Delivery", delivery)))

    response = post_sns(live_server, message)

    assert response.status_code == 403
    assert cert_server.requests == []
    assert Delivery.objects.get(pk=delivery.pk).state == DeliveryState.SENT


@pytest.mark.parametrize(
    ("change", "topics"),
    [
        ({"TopicArn": "arn:aws:sns:us-east-1:666:theirs"}, [SES_TOPIC]),
        ({}, []),  # no topic configured: nothing is accepted
        ({"Timestamp": sns_timestamp(timedelta(hours=2))}, [SES_TOPIC]),
        ({"Timestamp": sns_timestamp(-timedelta(hours=1))}, [SES_TOPIC]),
    ],
    ids=["foreign-topic", "no-topics", "too-old", "future"],
)
def test_a_validly_signed_message_from_a_foreign_topic_or_another_time_changes_nothing(
    live_server: Any,
    tenant: Tenant,
    settings: Any,
    sns_allowed: CertificateServer,
    change: dict[str, str],
    topics: list[str],
) -> None:
    # given a bounce SNS really signed, for a topic that is not ours or sent at another time
    settings.NOTIFIER_SNS_TOPIC_ARNS = topics
    delivery = sent_delivery(tenant, "email")
    bounce = {"bounceType": "Permanent", "bounceSubType": "General"}
    event = ses_notification(ses_event("Bounce", delivery, bounce=bounce))
    message = sns_allowed.sign({**event, **change})

    response = post_sns(live_server, message)

    assert response.status_code == 403
    assert Delivery.objects.get(pk=delivery.pk).state == DeliveryState.SENT
    assert not Suppression.objects.exists()
    assert not ProviderEvent.objects.exists()


def test_topics_may_be_given_as_patterns(
    live_server: Any, tenant: Tenant, settings: Any, sns_allowed: CertificateServer
) -> None:
    settings.NOTIFIER_SNS_TOPIC_ARNS = ["arn:aws:sns:*:1:*"]
    delivery = sent_delivery(tenant, "email")

    response = post_sns(
        live_server, sns_allowed.sign(ses_notification(ses_event("Delivery", delivery)))
    )

    assert response.status_code == 200
    assert Delivery.objects.get(pk=delivery.pk).state == DeliveryState.DELIVERED


def subscription(cert_server: CertificateServer, subscribe_url: str) -> dict[str, Any]:
    return cert_server.sign(
        {
            "Type": "SubscriptionConfirmation",
            "MessageId": "sub-1",
            "Token": "token",
            "TopicArn": SES_TOPIC,
            "Message": "You have chosen to subscribe.",
            "SubscribeURL": subscribe_url,
            "Timestamp": sns_timestamp(),
        }
    )


def test_a_subscription_is_confirmed_only_at_an_allowed_url(
    live_server: Any, settings: Any, sns_allowed: CertificateServer
) -> None:
    subscribe_url = sns_allowed.url.replace("cert.pem", "confirm?Token=token")

    refused = post_sns(live_server, subscription(sns_allowed, subscribe_url))
    assert refused.status_code == 403
    assert sns_allowed.requests == ["/cert.pem"]

    settings.NOTIFIER_SNS_SUBSCRIBE_URL_PATTERN = "^" + re.escape(subscribe_url) + "$"
    confirmed = post_sns(live_server, subscription(sns_allowed, subscribe_url))
    assert confirmed.status_code == 200
    assert sns_allowed.requests == ["/cert.pem", "/confirm?Token=token"]
