"""Amazon SNS message signatures: is this HTTP notification really from SNS?

https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html
SNS signs a canonical string of the message's fields (which fields depends on its ``Type``) with
the key of the certificate at ``SigningCertURL``: SignatureVersion 1 is SHA1withRSA, 2 is
SHA256withRSA. Anyone can post a message naming a certificate of their own, so the certificate
is fetched only from a URL the allowlist pattern matches (SNS' own hosts, over HTTPS), without
following redirects, and kept in memory by URL. No database here: pure verification.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

FETCH_TIMEOUT_SECONDS: Final = 5.0
MAX_CERTIFICATE_BYTES: Final = 64 * 1024

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


class CertificateStore:
    """Signing certificates by URL, fetched once per process, only from allowed URLs."""

    def __init__(self, fetch: Callable[[str], bytes] = fetch_url) -> None:
        self._fetch = fetch
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._lock = threading.Lock()

    def public_key(self, url: str, *, allowed: str) -> rsa.RSAPublicKey:
        if not url or not re.match(allowed, url):
            raise InvalidSNSMessage("certificate URL not allowed")
        with self._lock:
            key = self._keys.get(url)
        if key is not None:
            return key
        try:
            certificate = x509.load_pem_x509_certificate(self._fetch(url))
        except (OSError, ValueError, urllib.error.URLError) as exc:
            raise InvalidSNSMessage("certificate unavailable") from exc
        public_key = certificate.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise InvalidSNSMessage("certificate key is not RSA")
        with self._lock:
            self._keys[url] = public_key
        return public_key

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()


certificates = CertificateStore()


def verify_message(
    message: Mapping[str, Any], *, cert_url_pattern: str, store: CertificateStore = certificates
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
    key = store.public_key(str(message.get("SigningCertURL", "")), allowed=cert_url_pattern)
    try:
        key.verify(signature, signed, padding.PKCS1v15(), algorithm())
    except InvalidSignature as exc:
        raise InvalidSNSMessage("signature mismatch") from exc
