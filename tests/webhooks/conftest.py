"""Fixtures for webhook tests: the app served for real (``live_server``), Twilio settings, an
SNS signing key with its certificate served by a local HTTP server that counts its requests,
and a SendGrid Event Webhook signing key (ECDSA P-256) with its verification key configured."""

from __future__ import annotations

import base64
import datetime
import http.server
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from twilio.request_validator import RequestValidator

from notifier.webhooks import sendgrid, sns
from tests.pipeline.conftest import alerts  # noqa: F401 - a fixture

TWILIO_TOKEN = "0123456789abcdef0123456789abcdef"


@pytest.fixture(autouse=True)
def _forget_certificates() -> Iterator[None]:
    sns.certificates.clear()
    yield
    sns.certificates.clear()


@pytest.fixture
def twilio_settings(settings: Any) -> dict[str, Any]:
    """One Twilio SMS backend whose auth token signs the test's callbacks."""
    settings.NOTIFIER_PROVIDERS = {
        **settings.NOTIFIER_PROVIDERS,
        "sms": {
            "DEFAULT": "twilio",
            "BACKENDS": {
                "twilio": {
                    "CLASS": "channels.providers.twilio.TwilioProvider",
                    "OPTIONS": {"ACCOUNT_SID": "AC" + "0" * 32, "AUTH_TOKEN": TWILIO_TOKEN},
                }
            },
        },
    }
    return dict(settings.NOTIFIER_PROVIDERS)


def post_twilio(
    url: str, params: dict[str, str], *, token: str = TWILIO_TOKEN, signature: str | None = None
) -> requests.Response:
    """POST a form the way Twilio does, signed with ``token`` over ``url`` and the form."""
    signed = RequestValidator(token).compute_signature(url, params)
    return requests.post(
        url,
        data=params,
        headers={"X-Twilio-Signature": signed if signature is None else signature},
        timeout=10,
    )


@dataclass
class CertificateServer:
    """A local HTTP server serving one PEM certificate at ``/cert.pem``; records each path."""

    key: rsa.RSAPrivateKey
    pem: bytes
    url: str = ""
    requests: list[str] = field(default_factory=list)

    def sign(self, message: dict[str, Any], *, cert_url: str | None = None) -> dict[str, Any]:
        """``message`` as SNS would sign it (SignatureVersion 2) with this certificate."""
        signed = {**message, "SignatureVersion": "2", "SigningCertURL": cert_url or self.url}
        signature = self.key.sign(sns.canonical_string(signed), padding.PKCS1v15(), hashes.SHA256())
        return {**signed, "Signature": base64.b64encode(signature).decode()}


def generate_certificate() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, certificate.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def cert_server() -> Iterator[CertificateServer]:
    key, pem = generate_certificate()
    server_state = CertificateServer(key=key, pem=pem)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server_state.requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-pem-file")
            self.end_headers()
            self.wfile.write(pem)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.url = f"http://127.0.0.1:{server.server_address[1]}/cert.pem"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        server.shutdown()
        server.server_close()


SES_TOPIC = "arn:aws:sns:us-east-1:1:ses"


def ses_notification(event: dict[str, Any], *, topic: str = SES_TOPIC) -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": topic,
        "Message": json.dumps(event),
        "Timestamp": sns_timestamp(),
    }


def sns_timestamp(age: datetime.timedelta = datetime.timedelta(0)) -> str:
    """``Timestamp`` as SNS writes it, ``age`` ago."""
    at = datetime.datetime.now(datetime.UTC) - age
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class SendGridSigner:
    """Signs Event Webhook requests as SendGrid does: ECDSA P-256/SHA-256 over timestamp+body."""

    key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls) -> SendGridSigner:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @property
    def verification_key(self) -> str:
        """The public key as SendGrid's console shows it: base64 DER SubjectPublicKeyInfo."""
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def signature(self, body: bytes, timestamp: str) -> str:
        signed = self.key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(signed).decode()

    def headers(self, body: bytes, *, age: float = 0) -> dict[str, str]:
        """The signature and timestamp headers of a request sent ``age`` seconds ago."""
        timestamp = str(int(time.time() - age))
        return {
            sendgrid.SIGNATURE_HEADER: self.signature(body, timestamp),
            sendgrid.TIMESTAMP_HEADER: timestamp,
        }


@pytest.fixture
def sendgrid_signer(settings: Any) -> SendGridSigner:
    """A signing key whose verification key is the one configured."""
    signer = SendGridSigner.generate()
    settings.NOTIFIER_SENDGRID_WEBHOOK_PUBLIC_KEY = [signer.verification_key]
    return signer
