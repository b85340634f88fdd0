"""SendGrid's Event Webhook signature and freshness checks, without a server or a database;
and what each SendGrid event means for a delivery."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from notifier.notifications.models import DeliveryState
from notifier.webhooks import reports
from notifier.webhooks.checks import check_sendgrid_public_keys
from notifier.webhooks.sendgrid import (
    InvalidSendGridKey,
    InvalidSendGridRequest,
    load_public_key,
    load_public_keys,
    verify_request,
)
from tests.webhooks.conftest import SendGridSigner

NOW = 1_700_000_000
BODY = b'[{"event":"delivered","sg_event_id":"e1","notifier_delivery_id":"7"}]\r\n'

# SendGrid's own test vector (sendgrid-python, test/unit/test_eventwebhook.py): a request
# signed by SendGrid's code, so our reading of "timestamp + body" is SendGrid's, not only ours.
SENDGRID_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw"
    "+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
)
SENDGRID_SIGNATURE = (
    "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiX"
    "DWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM="
)
SENDGRID_TIMESTAMP = "1600112502"
SENDGRID_BODY = (
    json.dumps(
        [
            {
                "email": "hello@world.com",
                "event": "dropped",
                "reason": "Bounced Address",
                "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
                "sg_message_id": (
                    "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0"
                ),
                "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
                "timestamp": 1600112492,
            }
        ],
        sort_keys=True,
        separators=(",", ":"),
    )
    + "\r\n"
).encode()


def verify(
    signer: SendGridSigner,
    *,
    body: bytes = BODY,
    signed_body: bytes | None = None,
    timestamp: str = str(NOW),
    keys: list[ec.EllipticCurvePublicKey] | None = None,
    now: float = NOW,
) -> None:
    verify_request(
        body=body,
        signature=signer.signature(body if signed_body is None else signed_body, timestamp),
        timestamp=timestamp,
        keys=[signer.key.public_key()] if keys is None else keys,
        now=now,
    )


def test_a_request_sendgrid_signed_verifies() -> None:
    verify_request(
        body=SENDGRID_BODY,
        signature=SENDGRID_SIGNATURE,
        timestamp=SENDGRID_TIMESTAMP,
        keys=[load_public_key(SENDGRID_KEY)],
        now=int(SENDGRID_TIMESTAMP),
    )


def test_sendgrids_own_request_with_another_body_does_not_verify() -> None:
    with pytest.raises(InvalidSendGridRequest, match="mismatch"):
        verify_request(
            body=SENDGRID_BODY.replace(b"dropped", b"delivered"),
            signature=SENDGRID_SIGNATURE,
            timestamp=SENDGRID_TIMESTAMP,
            keys=[load_public_key(SENDGRID_KEY)],
            now=int(SENDGRID_TIMESTAMP),
        )


def test_a_request_signed_with_our_key_verifies_within_the_window() -> None:
    signer = SendGridSigner.generate()

    verify(signer)
    verify(signer, timestamp=str(NOW - 300))
    verify(signer, timestamp=str(NOW + 300))


@pytest.mark.parametrize("offset", [-301, 301, -86_400], ids=["stale", "future", "a-day-old"])
def test_a_validly_signed_request_outside_the_window_is_refused(offset: int) -> None:
    # given a request SendGrid really signed, at another time
    signer = SendGridSigner.generate()

    # then
    with pytest.raises(InvalidSendGridRequest, match="window"):
        verify(signer, timestamp=str(NOW + offset))


def test_the_signature_covers_the_timestamp() -> None:
    # given a signature over an old timestamp, sent with a fresh one
    signer = SendGridSigner.generate()
    old = str(NOW - 3600)

    # then
    with pytest.raises(InvalidSendGridRequest, match="mismatch"):
        verify_request(
            body=BODY,
            signature=signer.signature(BODY, old),
            timestamp=str(NOW),
            keys=[signer.key.public_key()],
            now=NOW,
        )


def test_a_tampered_body_or_another_key_is_refused() -> None:
    signer = SendGridSigner.generate()
    other = SendGridSigner.generate()

    with pytest.raises(InvalidSendGridRequest, match="mismatch"):
        verify(signer, signed_body=BODY.replace(b"delivered", b"bounce"))
    with pytest.raises(InvalidSendGridRequest, match="mismatch"):
        verify(signer, keys=[other.key.public_key()])


def test_any_configured_key_may_match_during_a_rotation() -> None:
    # given the old and the new key configured
    old, new = SendGridSigner.generate(), SendGridSigner.generate()
    keys = list(load_public_keys((old.verification_key, new.verification_key)))

    # then requests signed by either verify
    verify(old, keys=keys)
    verify(new, keys=keys)


@pytest.mark.parametrize(
    ("signature", "timestamp", "complaint"),
    [
        ("", str(NOW), "missing"),
        ("c2ln", "", "missing"),
        ("not base64!", str(NOW), "base64"),
        ("c2ln", "1700000000.5", "malformed"),
        ("c2ln", "-1700000000", "malformed"),
        ("c2ln", "١٧٠٠٠٠٠٠٠٠", "malformed"),  # Arabic-Indic digits: isdigit() but not ASCII
        ("c2ln", "9" * 13, "malformed"),
        ("A" * 300, str(NOW), "malformed"),
        ("c2ln", str(NOW), "mismatch"),
    ],
)
def test_a_malformed_signature_or_timestamp_is_refused(
    signature: str, timestamp: str, complaint: str
) -> None:
    key = SendGridSigner.generate().key.public_key()

    with pytest.raises(InvalidSendGridRequest, match=complaint):
        verify_request(body=BODY, signature=signature, timestamp=timestamp, keys=[key], now=NOW)


def test_no_key_configured_refuses_everything() -> None:
    signer = SendGridSigner.generate()

    with pytest.raises(InvalidSendGridRequest, match="no verification key"):
        verify(signer, keys=[])


def test_keys_are_read_as_sendgrid_shows_them_or_as_pem() -> None:
    signer = SendGridSigner.generate()
    pem = (
        signer.key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )

    assert load_public_key(signer.verification_key) == signer.key.public_key()
    assert load_public_key(pem) == signer.key.public_key()
    assert load_public_keys(("", signer.verification_key)) == (signer.key.public_key(),)


def der_b64(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


@pytest.mark.parametrize(
    "value",
    [
        "garbage!",
        base64.b64encode(b"not DER").decode(),
        der_b64(ec.generate_private_key(ec.SECP384R1())),
        der_b64(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    ],
    ids=["not-base64", "not-der", "p384", "rsa"],
)
def test_a_key_that_is_not_a_p256_public_key_is_a_configuration_error(value: str) -> None:
    with pytest.raises(InvalidSendGridKey):
        load_public_key(value)


# -- what an event means -------------------------------------------------------------------


def event(kind: str, **fields: object) -> dict[str, object]:
    return {
        "event": kind,
        "email": "ada@example.com",
        "sg_event_id": f"ev-{kind}",
        "sg_message_id": "sg-1.filter",
        "smtp-id": "<abc@notifier.example>",
        "notifier_delivery_id": "42",
        **fields,
    }


@pytest.mark.parametrize(
    ("fields", "target", "suppress"),
    [
        (event("processed"), DeliveryState.SENT, None),
        (event("delivered"), DeliveryState.DELIVERED, None),
        (event("bounce", type="bounce", status="5.1.1"), DeliveryState.BOUNCED, "hard_bounce"),
        (event("bounce", status="5.0.0"), DeliveryState.BOUNCED, "hard_bounce"),
        (event("bounce", type="blocked", status="4.0.0"), None, None),
        (event("blocked"), None, None),
        (event("deferred", response="400 try again later", attempt="1"), None, None),
        (event("dropped", reason="Bounced Address"), DeliveryState.FAILED, None),
        (event("spamreport"), None, "complaint"),
        (event("unsubscribe"), None, "unsubscribe"),
        (event("group_unsubscribe", asm_group_id=1), None, "unsubscribe"),
        (event("group_resubscribe", asm_group_id=1), None, None),
        (event("open"), None, None),
        (event("click", url="https://example.com"), None, None),
    ],
    ids=lambda value: value["event"] if isinstance(value, dict) else None,
)
def test_each_sendgrid_event_maps_to_a_state_and_a_suppression(
    fields: dict[str, object], target: str | None, suppress: str | None
) -> None:
    report = reports.sendgrid_event(fields)

    assert (report.target, report.suppress) == (target, suppress)
    assert (report.provider, report.event_id) == ("sendgrid", fields["sg_event_id"])
    assert report.delivery_ref == "42"
    assert report.provider_message_id == "abc@notifier.example"


def test_a_bounce_reason_keeps_the_reply_and_not_the_address() -> None:
    report = reports.sendgrid_event(
        event("bounce", status="5.1.1", reason="550 5.1.1 <ada@example.com>: user unknown")
    )

    assert report.reason.startswith("sendgrid bounce: 5.1.1 550 5.1.1")
    assert "ada@example.com" not in report.reason
    assert "ada@example.com" not in json.dumps(report.detail)


def test_an_event_without_an_id_is_keyed_by_its_content() -> None:
    first = reports.sendgrid_event({"event": "delivered", "notifier_delivery_id": "1"})
    again = reports.sendgrid_event({"notifier_delivery_id": "1", "event": "delivered"})
    other = reports.sendgrid_event({"event": "delivered", "notifier_delivery_id": "2"})

    assert first.event_id.startswith("digest:")
    assert first.event_id == again.event_id != other.event_id


@pytest.mark.parametrize("body", [b"{}", b"not json", b'[{"event": "x"}, 1]', b'"[]"'])
def test_a_body_that_is_not_an_array_of_events_is_malformed(body: bytes) -> None:
    with pytest.raises(reports.MalformedEvents):
        reports.sendgrid_events(body)


def test_a_malformed_configured_key_fails_the_system_check(settings: Any) -> None:
    # given
    settings.NOTIFIER_SENDGRID_WEBHOOK_PUBLIC_KEY = ["not-a-key"]

    # when
    errors = check_sendgrid_public_keys()

    # then
    assert [error.id for error in errors] == ["webhooks.E001"]
    assert "NOTIFIER_SENDGRID_WEBHOOK_PUBLIC_KEY" in errors[0].msg


def test_configured_keys_pass_the_system_check(settings: Any) -> None:
    settings.NOTIFIER_SENDGRID_WEBHOOK_PUBLIC_KEY = [SendGridSigner.generate().verification_key]

    assert check_sendgrid_public_keys() == []
