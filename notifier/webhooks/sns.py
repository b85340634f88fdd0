"""Amazon SNS message signatures: is this HTTP notification really from SNS?

https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html
SNS signs a canonical string of the message's fields (which fields depends on its ``Type``) with
the key of the certificate at ``SigningCertURL``: SignatureVersion 1 is SHA1withRSA, 2 is
SHA256withRSA. Anyone can post a message naming a certificate of their own, so the certificate
is fetched only from a URL the allowlist pattern matches (SNS' own hosts, over HTTPS), without
following redirects, and kept in memory by URL. A certificate outside its validity period is
refused; with a trust bundle (``Trust.ca_file``) it must also chain to one of its certificates
and be issued to SNS' name (``sns.amazonaws.com``). A verified message is then checked against
the topics we subscribed to and for its age (:func:`check_origin`). No database here.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509 import DNSName
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

FETCH_TIMEOUT_SECONDS: Final = 5.0
MAX_CERTIFICATE_BYTES: Final = 64 * 1024
CLOCK_SKEW: Final = timedelta(minutes=5)
"""How far in the future a message's ``Timestamp`` may be (the two clocks differ)."""

_NOTIFICATION_FIELDS: Final = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRMATION_FIELDS: Final = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
_FIELDS_BY_TYPE: Final = {
    "Notification": _NOTIFICATION_FIELDS,
    "SubscriptionConfirmation": _CONFIRMATION_FIELDS,
    "UnsubscribeConfirmation": _CONFIRMATION_FIELDS,
}
_HASHES: Final[dict[str, Callable[[], hashes.HashAlgorithm]]] = {
    "1": hashes.SHA1,
    "2": hashes.SHA256,
}


class InvalidSNSMessage(Exception):
    """The message is not signed by SNS as far as we can tell; answer 403, apply nothing."""


def canonical_string(message: Mapping[str, Any]) -> bytes:
    """The bytes SNS signs: ``name\\nvalue\\n`` for each field of the type, in byte order.

    ``Subject`` is left out of a notification that has none; a field the type requires and
    the message lacks makes it invalid.
    """
    fields = _FIELDS_BY_TYPE.get(str(message.get("Type", "")))
    if fields is None:
        raise InvalidSNSMessage("unknown message type")
    parts: list[str] = []
    for name in fields:
        value = message.get(name)
        if value is None:
            if name == "Subject":
                continue
            raise InvalidSNSMessage(f"missing {name}")
        parts.append(f"{name}\n{value}\n")
    return "".join(parts).encode()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect could lead from an allowed URL to any other; refuse them all."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER: Final = urllib.request.build_opener(_NoRedirects)


def fetch_url(url: str, *, timeout: float = FETCH_TIMEOUT_SECONDS) -> bytes:
    """GET ``url`` (already allowlisted) without following redirects; raises ``OSError``."""
    with _OPENER.open(url, timeout=timeout) as response:
        if response.status != 200:
            raise OSError(f"HTTP {response.status}")
        body: bytes = response.read(MAX_CERTIFICATE_BYTES + 1)
    if len(body) > MAX_CERTIFICATE_BYTES:
        raise OSError("response too large")
    return body


@dataclass(frozen=True)
class Trust:
    """What a signing certificate must satisfy besides being fetched from an allowed URL."""

    ca_file: str = ""
    """A PEM bundle; when set, the certificate must chain to one of its certificates."""
    name: str = "sns.amazonaws.com"
    """The DNS name the certificate must be issued to (checked with ``ca_file``)."""


class CertificateStore:
    """Signing certificates by URL, fetched once per process, only from allowed URLs."""

    def __init__(self, fetch: Callable[[str], bytes] = fetch_url) -> None:
        self._fetch = fetch
        self._keys: dict[tuple[str, Trust], tuple[rsa.RSAPublicKey, datetime]] = {}
        self._lock = threading.Lock()

    def public_key(self, url: str, *, allowed: str, trust: Trust = Trust()) -> rsa.RSAPublicKey:
        if not url or not re.match(allowed, url):
            raise InvalidSNSMessage("certificate URL not allowed")
        now = datetime.now(UTC)
        with self._lock:
            cached = self._keys.get((url, trust))
        if cached is not None and now <= cached[1]:
            return cached[0]
        try:
            chain = x509.load_pem_x509_certificates(self._fetch(url))
        except (OSError, ValueError, urllib.error.URLError) as exc:
            raise InvalidSNSMessage("certificate unavailable") from exc
        certificate = chain[0]
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise InvalidSNSMessage("certificate expired or not yet valid")
        if trust.ca_file:
            _verify_chain(certificate, chain[1:], trust, now)
        public_key = certificate.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise InvalidSNSMessage("certificate key is not RSA")
        with self._lock:
            self._keys[(url, trust)] = (public_key, certificate.not_valid_after_utc)
        return public_key

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()


def _verify_chain(
    certificate: x509.Certificate,
    intermediates: list[x509.Certificate],
    trust: Trust,
    now: datetime,
) -> None:
    try:
        anchors = x509.load_pem_x509_certificates(Path(trust.ca_file).read_bytes())
    except (OSError, ValueError) as exc:
        raise InvalidSNSMessage("the SNS trust bundle cannot be read") from exc
    verifier = (
        PolicyBuilder().store(Store(anchors)).time(now).build_server_verifier(DNSName(trust.name))
    )
    try:
        verifier.verify(certificate, intermediates)
    except VerificationError as exc:
        raise InvalidSNSMessage("certificate not issued to SNS by a trusted authority") from exc


certificates = CertificateStore()


def verify_message(
    message: Mapping[str, Any],
    *,
    cert_url_pattern: str,
    trust: Trust = Trust(),
    store: CertificateStore = certificates,
) -> None:
    """Raise ``InvalidSNSMessage`` unless ``message`` carries a valid SNS signature.

    The certificate URL is checked against ``cert_url_pattern`` before anything is fetched.
    """
    algorithm = _HASHES.get(str(message.get("SignatureVersion", "")))
    if algorithm is None:
        raise InvalidSNSMessage("unsupported signature version")
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
    except binascii.Error as exc:
        raise InvalidSNSMessage("signature is not base64") from exc
    signed = canonical_string(message)
    key = store.public_key(
        str(message.get("SigningCertURL", "")), allowed=cert_url_pattern, trust=trust
    )
    try:
        key.verify(signature, signed, padding.PKCS1v15(), algorithm())
    except InvalidSignature as exc:
        raise InvalidSNSMessage("signature mismatch") from exc


def check_origin(
    message: Mapping[str, Any],
    *,
    topics: Sequence[str],
    max_age: timedelta,
    now: datetime | None = None,
) -> None:
    """Raise ``InvalidSNSMessage`` unless a (verified) message comes from one of ``topics``
    (ARNs; ``*`` matches within one) and was sent within ``max_age``.

    A valid signature only proves that SNS sent the message, not that the topic is ours:
    anyone can subscribe our endpoint to a topic of their own. The age bounds replays of old
    messages once their ids are purged; SNS retries a delivery for at most an hour.
    """
    topic = str(message.get("TopicArn", ""))
    if not any(fnmatch.fnmatchcase(topic, pattern) for pattern in topics):
        raise InvalidSNSMessage(f"topic not allowed: {topic[:200]}")
    try:
        sent_at = datetime.fromisoformat(str(message.get("Timestamp", "")))
    except ValueError as exc:
        raise InvalidSNSMessage("timestamp is not ISO 8601") from exc
    if sent_at.tzinfo is None:
        raise InvalidSNSMessage("timestamp has no time zone")
    now = now or datetime.now(UTC)
    if sent_at > now + CLOCK_SKEW:
        raise InvalidSNSMessage("timestamp in the future")
    if now - sent_at > max_age:
        raise InvalidSNSMessage("message too old")
