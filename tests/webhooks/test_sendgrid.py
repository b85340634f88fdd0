"""SendGrid's Event Webhook over real HTTP (the app in ``live_server``), with batches signed the
way SendGrid signs them (ECDSA P-256 over timestamp + body): state changes, suppressions,
replays, order and refusals."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from notifier.notifications.models import Delivery, DeliveryEvent, DeliveryState
from notifier.recipients.models import Suppression
from notifier.tenancy.models import Tenant
from notifier.webhooks import sendgrid
from notifier.webhooks.models import ProviderEvent
from tests.factories import RecipientFactory
from tests.pipeline.conftest import accept_and_plan
from tests.webhooks.conftest import SendGridSigner

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("alerts")]

EMAIL = "ada@example.com"
MESSAGE_ID = "171.42.abc@notifier.example"


def sent_email(tenant: Tenant, *, state: str = DeliveryState.SENT) -> Delivery:
    """An email the SMTP provider (SendGrid's relay) sent; its Message-ID is ours."""
    RecipientFactory.create(tenant=tenant, user_id="ada", email=EMAIL)
    notification_id = accept_and_plan(tenant, user_ids=["ada"], channels=["email"])
    delivery = Delivery.objects.get(notification_id=notification_id)
    Delivery.objects.filter(pk=delivery.pk).update(
        state=state,
        provider="smtp",
        provider_message_id="" if state == DeliveryState.UNKNOWN else MESSAGE_ID,
    )
    return delivery


def sg_event(kind: str, delivery: Delivery | None, **fields: Any) -> dict[str, Any]:
    """One event as SendGrid posts it: our custom argument at the top level."""
    event: dict[str, Any] = {
        "email": EMAIL,
        "event": kind,
        "timestamp": 1_700_000_000,
        "sg_event_id": f"sg-{kind}-{delivery.pk if delivery else 0}",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "smtp-id": f"<{MESSAGE_ID}>",
    }
    if delivery is not None:
        event["notifier_delivery_id"] = str(delivery.pk)
    return {**event, **fields}


def post_events(
    live_server: Any,
    signer: SendGridSigner,
    events: list[dict[str, Any]],
    *,
    age: float = 0,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> requests.Response:
    """POST ``events`` as SendGrid does; ``body`` replaces the signed body when given."""
    signed = (json.dumps(events) + "\r\n").encode()
    return requests.post(
        f"{live_server.url}/webhooks/sendgrid/events",
        data=signed if body is None else body,
        headers={
            "Content-Type": "application/json",
            **signer.headers(signed, age=age),
            **(headers or {}),
        },
        timeout=10,
    )


def reports(delivery: Delivery) -> list[DeliveryEvent]:
    return list(delivery.events.filter(code="provider_report").order_by("id"))


def test_a_signed_delivered_event_delivers(
    live_server: Any, tenant: Tenant, sendgrid_signer: SendGridSigner
) -> None:
    # given
    delivery = sent_email(tenant)

    # when
    response = post_events(live_server, sendgrid_signer, [sg_event("delivered", delivery)])

    # then
    assert response.status_code == 200
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.DELIVERED
    assert delivery.delivered_at is not None
    (event,) = reports(delivery)
    assert (event.detail["status"], event.detail["applied"]) == ("delivered", True)
    recorded = ProviderEvent.objects.get(
        provider="sendgrid", event_id=f"sg-delivered-{delivery.pk}"
    )
    assert (recorded.delivery_id, recorded.outcome) == (delivery.pk, "applied")
    assert EMAIL not in json.dumps([event.detail, recorded.detail])


@pytest.mark.parametrize(
    "refusal",
    [
        "forged",
        "missing-signature",
        "missing-timestamp",
        "another-key",
        "stale",
        "future",
        "tampered-body",
        "no-key-configured",
    ],
)
def test_an_unverified_batch_is_refused_and_changes_nothing(
    live_server: Any,
    tenant: Tenant,
    settings: Any,
    sendgrid_signer: SendGridSigner,
    refusal: str,
) -> None:
    # given a bounce for a sent email
    delivery = sent_email(tenant)
    events = [sg_event("bounce", delivery, type="bounce", status="5.1.1")]
    signed = (json.dumps(events) + "\r\n").encode()
    signer, age, headers, body = sendgrid_signer, 0.0, dict[str, str](), None
    if refusal == "forged":
        headers = {sendgrid.SIGNATURE_HEADER: sendgrid_signer.signature(b"other", "1")}
    elif refusal == "missing-signature":
        headers = {sendgrid.SIGNATURE_HEADER: ""}
    elif refusal == "missing-timestamp":
        headers = {sendgrid.TIMESTAMP_HEADER: ""}
    elif refusal == "another-key":
        signer = SendGridSigner.generate()
    elif refusal == "stale":
        age = 301 + 5
    elif refusal == "future":
        age = -(301 + 5)
    elif refusal == "tampered-body":
        body = signed.replace(b'"bounce"', b'"delivered"')
    elif refusal == "no-key-configured":
        settings.NOTIFIER_SENDGRID_WEBHOOK_PUBLIC_KEY = []

    # when
    response = post_events(live_server, signer, events, age=age, headers=headers, body=body)

    # then
    assert response.status_code == 403
    assert response.json()["code"] == "invalid_signature"
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.SENT
    assert reports(delivery) == []
    assert not Suppression.objects.exists()
    assert not ProviderEvent.objects.exists()


def test_a_batch_is_verified_before_it_is_parsed(
    live_server: Any, sendgrid_signer: SendGridSigner
) -> None:
    # given a body that is not JSON
    url = f"{live_server.url}/webhooks/sendgrid/events"

    # when it is not signed, then signed
    unsigned = requests.post(url, data=b"not json", timeout=10)
    signed = requests.post(
        url, data=b"not json", headers=sendgrid_signer.headers(b"not json"), timeout=10
    )

    # then the unsigned one is refused as such, the signed one as malformed
    assert (unsigned.status_code, unsigned.json()["code"]) == (403, "invalid_signature")
    assert (signed.status_code, signed.json()["code"]) == (400, "malformed_json")


def test_a_replayed_batch_is_applied_once(
    live_server: Any, tenant: Tenant, sendgrid_signer: SendGridSigner
) -> None:
    # given a batch SendGrid posts again (our 200 was lost), freshly signed
    delivery = sent_email(tenant)
    batch = [sg_event("processed", delivery), sg_event("delivered", delivery)]

    # when
    first = post_events(live_server, sendgrid_signer, batch)
    second = post_events(live_server, sendgrid_signer, batch)

    # then
    assert (first.status_code, second.status_code) == (200, 200)
    assert [e.detail["status"] for e in reports(delivery)] == ["processed", "delivered"]
    assert ProviderEvent.objects.filter(provider="sendgrid").count() == 2
    assert Delivery.objects.get(pk=delivery.pk).state == DeliveryState.DELIVERED


def test_out_of_order_events_never_move_a_bounced_delivery_back(
    live_server: Any, tenant: Tenant, sendgrid_signer: SendGridSigner
) -> None:
    # given
    delivery = sent_email(tenant)

    # when the bounce arrives first, then a late processed and delivered
    post_events(
        live_server, sendgrid_signer, [sg_event("bounce", delivery, type="bounce", status="5.1.1")]
    )
    post_events(
        live_server,
        sendgrid_signer,
        [sg_event("processed", delivery), sg_event("delivered", delivery)],
    )

    # then
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.BOUNCED
    assert [(e.detail["status"], e.detail["applied"]) for e in reports(delivery)] == [
        ("bounce", True),
        ("processed", False),
        ("delivered", False),
    ]


def test_a_bounce_bounces_and_suppresses_the_address(
    live_server: Any, tenant: Tenant, sendgrid_signer: SendGridSigner
) -> None:
    # given
    delivery = sent_email(tenant)
    bounce = sg_event(
        "bounce",
        delivery,
        type="bounce",
        status="5.1.1",
        reason=f"550 5.1.1 <{EMAIL}>: Recipient address rejected: User unknown",
    )

    # when
    response = post_events(live_server, sendgrid_signer, [bounce])

    # then
    assert response.status_code == 200
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.BOUNCED
    assert delivery.failed_at is not None
    assert "5.1.1" in delivery.reason
    assert EMAIL not in delivery.reason
    suppression = Suppression.objects.get(tenant=tenant, channel="email")
    assert (suppression.address, suppression.reason) == (EMAIL, "hard_bounce")


def test_blocked_and_deferred_are_only_recorded(
    live_server: Any, tenant: Tenant, sendgrid_signer: SendGridSigner
) -> None:
    # given
    delivery = sent_email(tenant)

    # when
    post_events(
        live_server,
        sendgrid_signer,
        [
            sg_event("bounce", delivery, type="blocked", status="4.0.0", reason="blocked by ISP"),
            sg_event("deferred", delivery, response="451 try again later", attempt="2"),
        ],
    )

    # then
    assert Delivery.objects.get(pk=delivery.pk).state == DeliveryState.SENT
    assert not Suppression.objects.exists()
    assert [(e.detail["status"], e.detail["applied"]) for e in reports(delivery)] == [
        ("bounce", False),
        ("deferred", False),
    ]


def test_dropped_fails_with_the_reason(
    live_server: Any, tenant: Tenant, sendgrid_signer: SendGridSigner
) -> None:
    # given
    delivery = sent_email(tenant)

    # when
    post_events(
        live_server, sendgrid_signer, [sg_event("dropped", delivery, reason="Bounced Address")]
    )

    # then
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.FAILED
    assert delivery.reason == "sendgrid dropped: Bounced Address"
    assert delivery.failed_at is not None


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("spamreport", "complaint"),
        ("unsubscribe", "unsubscribe"),
        ("group_unsubscribe", "unsubscribe"),
    ],
)
def test_a_complaint_or_an_unsubscribe_suppresses_and_leaves_the_delivery(
    live_server: Any, tenant: Tenant, sendgrid_signer: SendGridSigner, kind: str, reason: str
) -> None:
    # given
    delivery = sent_email(tenant, state=DeliveryState.DELIVERED)

    # when
    post_events(live_server, sendgrid_signer, [sg_event(kind, delivery)])

    # then
    assert Delivery.objects.get(pk=delivery.pk).state == DeliveryState.DELIVERED
    assert Suppression.objects.get(tenant=tenant, channel="email", address=EMAIL).reason == reason


def test_events_for_an_unknown_delivery_answer_200_and_are_recorded(
    live_server: Any, sendgrid_signer: SendGridSigner
) -> None:
    # given events of a message we did not send (another app on the same SendGrid account)
    stranger = sg_event("delivered", None, sg_event_id="sg-stranger", **{"smtp-id": "<x@y>"})
    ours_gone = sg_event("delivered", None, sg_event_id="sg-gone", notifier_delivery_id="987654")

    # when
    response = post_events(live_server, sendgrid_signer, [stranger, ours_gone])

    # then
    assert response.status_code == 200
    outcomes = ProviderEvent.objects.filter(provider="sendgrid").values_list("event_id", "outcome")
    assert sorted(outcomes) == [
        ("sg-gone", "unknown_delivery"),
        ("sg-stranger", "unknown_delivery"),
    ]


def test_an_event_naming_our_delivery_id_for_another_message_is_not_applied(
    live_server: Any, tenant: Tenant, sendgrid_signer: SendGridSigner
) -> None:
    # given our email, and a bounce from another deployment on the same SendGrid account whose
    # delivery has the same id but another Message-ID
    delivery = sent_email(tenant)
    bounce = sg_event(
        "bounce", delivery, type="bounce", status="5.1.1", **{"smtp-id": "<1.2@staging.example>"}
    )

    # when
    response = post_events(live_server, sendgrid_signer, [bounce])

    # then
    assert response.status_code == 200
    assert Delivery.objects.get(pk=delivery.pk).state == DeliveryState.SENT
    assert not Suppression.objects.exists()
    assert ProviderEvent.objects.get(provider="sendgrid").outcome == "unknown_delivery"


def test_an_event_without_our_custom_arg_finds_its_delivery_by_message_id(
    live_server: Any, tenant: Tenant, settings: Any, sendgrid_signer: SendGridSigner
) -> None:
    # given an SMTP backend named like the delivery's provider, and an event without our arg
    settings.NOTIFIER_PROVIDERS = {
        **settings.NOTIFIER_PROVIDERS,
        "email": {
            "DEFAULT": "smtp",
            "BACKENDS": {
                "smtp": {
                    "CLASS": "channels.providers.smtp.SMTPProvider",
                    "OPTIONS": {
                        "HOST": "127.0.0.1",
                        "FROM_ADDRESS": "n@notifier.example",
                        "SENDGRID_EVENTS": True,
                    },
                }
            },
        },
    }
    delivery = sent_email(tenant)
    event = sg_event("delivered", delivery)
    del event["notifier_delivery_id"]

    # when
    post_events(live_server, sendgrid_signer, [event])

    # then
    assert Delivery.objects.get(pk=delivery.pk).state == DeliveryState.DELIVERED


def test_processed_resolves_an_unknown_smtp_send(
    live_server: Any, tenant: Tenant, sendgrid_signer: SendGridSigner
) -> None:
    # given an email whose SMTP transaction went silent after the final "." (outcome unknown)
    delivery = sent_email(tenant, state=DeliveryState.UNKNOWN)

    # when SendGrid reports it processed it
    post_events(live_server, sendgrid_signer, [sg_event("processed", delivery)])

    # then it was sent, with our Message-ID as the provider's id
    delivery.refresh_from_db()
    assert (delivery.state, delivery.provider_message_id) == (DeliveryState.SENT, MESSAGE_ID)
    assert delivery.sent_at is not None
