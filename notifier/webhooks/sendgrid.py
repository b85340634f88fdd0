"""SendGrid's signed Event Webhook: is this batch of events really from SendGrid, and recent?

https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features
With "Signed Event Webhook Requests" on, SendGrid signs ``timestamp + raw body`` with ECDSA
(P-256, SHA-256) and sends the DER signature base64-encoded in
``X-Twilio-Email-Event-Webhook-Signature``, the timestamp (Unix seconds) in
``X-Twilio-Email-Event-Webhook-Timestamp``. Its console shows the verification key as base64
DER (a SubjectPublicKeyInfo, i.e. a PEM's body without its armour).

SendGrid documents no freshness rule, so a captured request would verify forever: we refuse a
timestamp more than ``tolerance`` seconds away from our clock, either way (RELIABILITY R16);
within the window a replay is caught by ``sg_event_id``. The signature is checked against the
raw bytes before anything parses them. No database here.
"""

from __future__ import annotations

import base64
import binascii
import functools
import time
from collections.abc import Iterable, Sequence
from typing import Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIGNATURE_HEADER: Final = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER: Final = "X-Twilio-Email-Event-Webhook-Timestamp"
DEFAULT_TOLERANCE: Final = 300
"""Seconds a request's timestamp may differ from our clock (R16: ±300 s)."""
# A DER ECDSA P-256 signature is at most 72 bytes; anything much longer is not one.
_MAX_SIGNATURE_CHARS: Final = 256
_MAX_TIMESTAMP_DIGITS: Final = 12


class InvalidSendGridRequest(Exception):
    """Not signed by SendGrid with a key we trust, or not recent: 403, nothing applied."""


class InvalidSendGridKey(ValueError):
    """A configured verification key that is not an ECDSA P-256 public key."""


def load_public_key(value: str) -> ec.EllipticCurvePublicKey:
    """The key from SendGrid's console: base64 DER SubjectPublicKeyInfo (PEM armour, if
    pasted with it, is accepted too). Raises ``InvalidSendGridKey``."""
    text = value.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error, UnsupportedAlgorithm) as exc:
        raise InvalidSendGridKey("not a base64 DER public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise InvalidSendGridKey("not an ECDSA P-256 public key")
    return key


@functools.lru_cache(maxsize=8)
def load_public_keys(values: tuple[str, ...]) -> tuple[ec.EllipticCurvePublicKey, ...]:
    """Every configured key (several during a rotation), parsed once per process."""
    return tuple(load_public_key(value) for value in values if value.strip())


def verify_request(
    *,
    body: bytes,
    signature: str,
    timestamp: str,
    keys: Iterable[ec.EllipticCurvePublicKey],
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> None:
    """Raise ``InvalidSendGridRequest`` unless one of ``keys`` signed ``timestamp + body``
    and ``timestamp`` is within ``tolerance`` seconds of ``now``. No key refuses everything."""
    candidates: Sequence[ec.EllipticCurvePublicKey] = tuple(keys)
    if not candidates:
        raise InvalidSendGridRequest("no verification key configured")
    if not signature or not timestamp:
        raise InvalidSendGridRequest("signature or timestamp missing")
    if (
        len(signature) > _MAX_SIGNATURE_CHARS
        or len(timestamp) > _MAX_TIMESTAMP_DIGITS
        or not timestamp.isascii()
        or not timestamp.isdigit()
    ):
        raise InvalidSendGridRequest("malformed signature or timestamp")
    try:
        decoded = base64.b64decode(signature, validate=True)
    except binascii.Error as exc:
        raise InvalidSendGridRequest("signature is not base64") from exc
    signed = timestamp.encode() + body
    if not any(_verifies(key, decoded, signed) for key in candidates):
        raise InvalidSendGridRequest("signature mismatch")
    # Checked once the timestamp is known to be SendGrid's own.
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > tolerance:
        raise InvalidSendGridRequest("timestamp outside the accepted window")


def _verifies(key: ec.EllipticCurvePublicKey, signature: bytes, signed: bytes) -> bool:
    try:
        key.verify(signature, signed, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True
