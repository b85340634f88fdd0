"""The sandbox's provider credentials: generated once, kept in its state directory.

Workers configure their providers from the connection file, so the credentials survive a
sandbox restart (a restarted ``make run`` keeps working without reconfiguring anything). Every
secret file is written owner-only. Secrets are never logged.
"""

from __future__ import annotations

import json
import os
import secrets
import string
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CREDENTIALS_FILE = "credentials.json"
SERVICE_ACCOUNT_FILE = "fcm-service-account.json"
APNS_KEY_FILE = "apns-key.p8"
CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
SNS_KEY_FILE = "sns-signing-key.pem"
SNS_CERT_FILE = "sns-signing-cert.pem"
SNS_CERT_NAME = "sns.amazonaws.com"
"""The name real SNS signing certificates are issued to; the sandbox's CA issues one too."""

# Twilio's magic "From" number that its test credentials accept
# (https://www.twilio.com/docs/iam/test-credentials).
TWILIO_FROM_NUMBER = "+15005550006"


def _random_id(length: int, alphabet: str = string.ascii_uppercase + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass(frozen=True)
class SandboxCredentials:
    """What clients authenticate with against the stand-ins, plus the server's own secrets."""

    twilio_account_sid: str
    twilio_auth_token: str
    twilio_from_number: str
    aws_access_key_id: str
    aws_secret_access_key: str
    aws_region: str
    ses_from_address: str
    fcm_project_id: str
    fcm_client_email: str
    fcm_private_key_id: str
    fcm_private_key_pem: str
    fcm_access_token_secret: str
    """Signs the OAuth access tokens ``/token`` issues, so they stay valid across restarts."""
    apns_key_id: str
    apns_team_id: str
    apns_topic: str
    apns_private_key_pem: str

    @classmethod
    def generate(cls) -> SandboxCredentials:
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ec_key = ec.generate_private_key(ec.SECP256R1())
        project_id = "notifier-sandbox"
        return cls(
            twilio_account_sid="AC" + secrets.token_hex(16),
            twilio_auth_token=secrets.token_hex(16),
            twilio_from_number=TWILIO_FROM_NUMBER,
            aws_access_key_id="AKIA" + _random_id(16),
            aws_secret_access_key=secrets.token_urlsafe(30)[:40],
            aws_region="us-east-1",
            ses_from_address="notifier@sandbox.notifier.test",
            fcm_project_id=project_id,
            fcm_client_email=f"firebase-adminsdk@{project_id}.iam.gserviceaccount.com",
            fcm_private_key_id=secrets.token_hex(20),
            fcm_private_key_pem=_pkcs8_pem(rsa_key),
            fcm_access_token_secret=secrets.token_hex(32),
            apns_key_id=_random_id(10),
            apns_team_id=_random_id(10),
            apns_topic="org.notifier.sandbox",
            apns_private_key_pem=_pkcs8_pem(ec_key),
        )

    def fcm_public_key(self) -> rsa.RSAPublicKey:
        key = serialization.load_pem_private_key(self.fcm_private_key_pem.encode(), None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key.public_key()

    def apns_public_key(self) -> ec.EllipticCurvePublicKey:
        key = serialization.load_pem_private_key(self.apns_private_key_pem.encode(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key.public_key()

    def service_account(self, token_uri: str) -> dict[str, str]:
        """A Google service-account JSON whose ``token_uri`` points at the sandbox."""
        return {
            "type": "service_account",
            "project_id": self.fcm_project_id,
            "private_key_id": self.fcm_private_key_id,
            "private_key": self.fcm_private_key_pem,
            "client_email": self.fcm_client_email,
            "client_id": "100000000000000000000",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
        }


def _pkcs8_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def write_private(path: Path, content: str | bytes) -> None:
    """Write a file only its owner can read (created 0600, never briefly world-readable)."""
    data = content.encode() if isinstance(content, str) else content
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


class StateDirectory:
    """The sandbox's files: credentials, CA, service account, .p8 key and connection file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)

    @property
    def ca_file(self) -> Path:
        return self.path / CA_FILE

    @property
    def service_account_file(self) -> Path:
        return self.path / SERVICE_ACCOUNT_FILE

    @property
    def apns_key_file(self) -> Path:
        return self.path / APNS_KEY_FILE

    def load_or_create_credentials(self) -> SandboxCredentials:
        path = self.path / CREDENTIALS_FILE
        if path.exists():
            stored: dict[str, Any] = json.loads(path.read_text())
            return SandboxCredentials(**stored)
        credentials = SandboxCredentials.generate()
        write_private(path, json.dumps(asdict(credentials), indent=2))
        return credentials

    def load_or_create_ca(self) -> trustme.CA:
        key_path = self.path / CA_KEY_FILE
        if self.ca_file.exists() and key_path.exists():
            return trustme.CA.from_pem(self.ca_file.read_bytes(), key_path.read_bytes())
        ca = trustme.CA(organization_name="notifier provider sandbox")
        write_private(key_path, ca.private_key_pem.bytes())
        self.ca_file.write_bytes(ca.cert_pem.bytes())
        return ca

    @property
    def sns_cert_file(self) -> Path:
        return self.path / SNS_CERT_FILE

    def load_or_create_sns_signer(self, ca: trustme.CA) -> tuple[rsa.RSAPrivateKey, bytes]:
        """The key SNS messages are signed with, and its certificate (PEM, issued by the
        sandbox's CA to SNS' name), which the sandbox serves at its ``SigningCertURL``."""
        key_path = self.path / SNS_KEY_FILE
        if key_path.exists() and self.sns_cert_file.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), None)
            assert isinstance(key, rsa.RSAPrivateKey)
            return key, self.sns_cert_file.read_bytes()
        key, pem = issue_signing_certificate(ca, SNS_CERT_NAME)
        write_private(key_path, _pkcs8_pem(key))
        self.sns_cert_file.write_bytes(pem)
        return key, pem

    def write_client_files(self, credentials: SandboxCredentials, *, token_uri: str) -> None:
        """The files SDKs read by path; rewritten each start because ``token_uri`` has the port."""
        write_private(
            self.service_account_file,
            json.dumps(credentials.service_account(token_uri), indent=2),
        )
        write_private(self.apns_key_file, credentials.apns_private_key_pem)


def issue_signing_certificate(
    ca: trustme.CA,
    name: str,
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> tuple[rsa.RSAPrivateKey, bytes]:
    """An RSA key and a certificate for it (PEM) issued by ``ca`` to the DNS ``name``, shaped
    like a public CA's (what X.509 path validation expects; trustme's leaves mark their
    subjectAltName critical beside a non-empty subject, which strict validators refuse)."""
    now = datetime.now(UTC)
    issuer = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    issuer_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    assert isinstance(issuer_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(days=1))
        .not_valid_after(not_after or now + timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
    return key, certificate.public_bytes(serialization.Encoding.PEM)
