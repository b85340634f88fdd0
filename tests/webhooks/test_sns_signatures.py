"""SNS signature verification against a generated key: the canonical string, both signature
versions, tampering, the certificate URL allowlist (checked before any fetch), the certificate's
validity and chain, and the topic and age checks."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from notifier.sandbox.credentials import issue_signing_certificate
from notifier.webhooks import sns
from tests.webhooks.conftest import generate_certificate

CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem"
ALLOWED = r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/"

NOTIFICATION = {
    "Type": "Notification",
    "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
    "TopicArn": "arn:aws:sns:us-west-2:123456789012:MyTopic",
    "Subject": "My First Message",
    "Message": "Hello world!",
    "Timestamp": "2012-05-02T00:54:06.655Z",
}


def test_the_canonical_string_of_a_notification_lists_its_fields_in_byte_order() -> None:
    assert sns.canonical_string(NOTIFICATION) == (
        b"Message\nHello world!\nMessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\n"
        b"Subject\nMy First Message\nTimestamp\n2012-05-02T00:54:06.655Z\n"
        b"TopicArn\narn:aws:sns:us-west-2:123456789012:MyTopic\nType\nNotification\n"
    )


def test_a_notification_without_subject_leaves_it_out() -> None:
    message = {key: value for key, value in NOTIFICATION.items() if key != "Subject"}
    assert b"Subject" not in sns.canonical_string(message)


def test_a_subscription_confirmation_signs_its_token_and_subscribe_url() -> None:
    message = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "m",
        "Token": "t",
        "TopicArn": "arn",
        "Message": "confirm",
        "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
        "Timestamp": "2026-01-01T00:00:00Z",
    }
    assert sns.canonical_string(message) == (
        b"Message\nconfirm\nMessageId\nm\n"
        b"SubscribeURL\nhttps://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription\n"
        b"Timestamp\n2026-01-01T00:00:00Z\nToken\nt\nTopicArn\narn\nType\nSubscriptionConfirmation\n"
    )


class Fetcher:
    def __init__(self, pem: bytes) -> None:
        self.pem = pem
        self.urls: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.urls.append(url)
        return self.pem


def signed(message: dict[str, Any], version: str) -> tuple[dict[str, Any], Fetcher]:
    key, pem = generate_certificate()
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    body = {**message, "SignatureVersion": version, "SigningCertURL": CERT_URL}
    signature = key.sign(sns.canonical_string(body), padding.PKCS1v15(), digest)
    return {**body, "Signature": base64.b64encode(signature).decode()}, Fetcher(pem)


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_message_signed_by_the_certificate_verifies(version: str) -> None:
    message, fetch = signed(NOTIFICATION, version)
    store = sns.CertificateStore(fetch)

    sns.verify_message(message, cert_url_pattern=ALLOWED, store=store)
    sns.verify_message(message, cert_url_pattern=ALLOWED, store=store)

    assert fetch.urls == [CERT_URL]  # fetched once, then kept by URL


@pytest.mark.parametrize(
    "change",
    [
        {"Message": "Hello world?"},
        {"TopicArn": "arn:aws:sns:us-west-2:123456789012:Other"},
        {"SignatureVersion": "3"},
        {"Signature": "not base64!"},
        {"Type": "Unknown"},
    ],
)
def test_a_tampered_message_is_refused(change: dict[str, str]) -> None:
    message, fetch = signed(NOTIFICATION, "2")
    with pytest.raises(sns.InvalidSNSMessage):
        sns.verify_message(
            message | change, cert_url_pattern=ALLOWED, store=sns.CertificateStore(fetch)
        )


@pytest.mark.parametrize(
    "cert_url",
    [
        "http://sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com.evil.test/cert.pem",
        "https://evil.test/sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com@evil.test/cert.pem",
        "",
    ],
)
def test_a_certificate_outside_the_allowlist_is_never_fetched(cert_url: str) -> None:
    message, fetch = signed(NOTIFICATION, "2")
    with pytest.raises(sns.InvalidSNSMessage, match="not allowed"):
        sns.verify_message(
            message | {"SigningCertURL": cert_url},
            cert_url_pattern=ALLOWED,
            store=sns.CertificateStore(fetch),
        )
    assert fetch.urls == []


def test_a_certificate_of_another_key_does_not_verify() -> None:
    message, _ = signed(NOTIFICATION, "2")
    _, other_pem = generate_certificate()
    with pytest.raises(sns.InvalidSNSMessage, match="mismatch"):
        sns.verify_message(
            message, cert_url_pattern=ALLOWED, store=sns.CertificateStore(Fetcher(other_pem))
        )


# -- the certificate itself ----------------------------------------------------------------------


Leaf = tuple[rsa.RSAPrivateKey, bytes]


def leaf_of(ca: trustme.CA, name: str = "sns.amazonaws.com", **dates: Any) -> Leaf:
    return issue_signing_certificate(ca, name, **dates)


@pytest.fixture
def trust(tmp_path: Any) -> tuple[trustme.CA, sns.Trust]:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    return ca, sns.Trust(ca_file=str(tmp_path / "ca.pem"))


def verify(leaf: Leaf, trust: sns.Trust) -> None:
    key, pem = leaf
    body = {**NOTIFICATION, "SignatureVersion": "2", "SigningCertURL": CERT_URL}
    signature = key.sign(sns.canonical_string(body), padding.PKCS1v15(), hashes.SHA256())
    sns.verify_message(
        {**body, "Signature": base64.b64encode(signature).decode()},
        cert_url_pattern=ALLOWED,
        trust=trust,
        store=sns.CertificateStore(Fetcher(pem)),
    )


def test_a_certificate_issued_to_sns_by_a_trusted_authority_verifies(
    trust: tuple[trustme.CA, sns.Trust],
) -> None:
    ca, settings = trust
    verify(leaf_of(ca), settings)


def test_a_certificate_of_an_untrusted_authority_or_another_name_is_refused(
    trust: tuple[trustme.CA, sns.Trust],
) -> None:
    ca, settings = trust
    with pytest.raises(sns.InvalidSNSMessage, match="trusted authority"):
        verify(leaf_of(trustme.CA()), settings)  # a CA of the attacker's own
    with pytest.raises(sns.InvalidSNSMessage, match="trusted authority"):
        verify(leaf_of(ca, "attacker.example"), settings)


def test_an_expired_certificate_is_refused_even_without_a_trust_bundle() -> None:
    now = datetime.now(UTC)
    expired = leaf_of(
        trustme.CA(), not_before=now - timedelta(days=30), not_after=now - timedelta(days=1)
    )
    with pytest.raises(sns.InvalidSNSMessage, match="expired"):
        verify(expired, sns.Trust())


# -- where and when it comes from ------------------------------------------------------------------

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"


@pytest.mark.parametrize(
    ("message", "topics", "refusal"),
    [
        ({"TopicArn": TOPIC, "Timestamp": "2026-11-21T11:30:00.000Z"}, [TOPIC], None),
        ({"TopicArn": TOPIC, "Timestamp": "2026-11-21T11:30:00Z"}, ["arn:aws:sns:*:*:ses-*"], None),
        ({"TopicArn": TOPIC, "Timestamp": "2026-11-21T11:30:00Z"}, [], "topic not allowed"),
        (
            {"TopicArn": TOPIC + "-evil", "Timestamp": "2026-11-21T11:30:00Z"},
            [TOPIC],
            "topic not allowed",
        ),
        ({"TopicArn": TOPIC, "Timestamp": "2026-11-21T10:59:00Z"}, [TOPIC], "too old"),
        ({"TopicArn": TOPIC, "Timestamp": "2026-11-21T12:06:00Z"}, [TOPIC], "future"),
        ({"TopicArn": TOPIC, "Timestamp": "yesterday"}, [TOPIC], "ISO 8601"),
        ({"TopicArn": TOPIC, "Timestamp": "2026-11-21T11:30:00"}, [TOPIC], "time zone"),
    ],
)
def test_only_our_topics_and_recent_messages_are_accepted(
    message: dict[str, str], topics: list[str], refusal: str | None
) -> None:
    def check() -> None:
        sns.check_origin(message, topics=topics, max_age=timedelta(hours=1), now=NOW)

    if refusal is None:
        check()
    else:
        with pytest.raises(sns.InvalidSNSMessage, match=refusal):
            check()
