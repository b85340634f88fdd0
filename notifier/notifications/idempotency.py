"""Idempotency keys, after the IETF draft (draft-ietf-httpapi-idempotency-key-header) and Stripe.

A key is scoped to the tenant. The first request with a key stores its response; a retry
with the same key and the same request gets that response back (with the same
``notification_id``); the same key with a different request is refused with 422; a retry
while the first request is still running gets 409. Keys are forgotten after
``NOTIFIER_IDEMPOTENCY_TTL`` seconds.
"""

from __future__ import annotations

from typing import Any

from django.db import connection

from notifier.core.digest import json_digest

MAX_KEY_LENGTH = 255


class InvalidIdempotencyKey(ValueError):
    pass


def validate_key(key: str) -> str:
    """Return ``key`` if it is 1..255 printable ASCII characters, else raise. The same rule
    holds for the header and for ``request_id``. The key is opaque, never decoded: a ``%0A``
    in it is three characters, and refusing it would refuse real keys (base64, say)."""
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise InvalidIdempotencyKey(f"must be 1 to {MAX_KEY_LENGTH} characters long")
    if not all(0x20 < ord(ch) < 0x7F for ch in key):
        raise InvalidIdempotencyKey("may contain only printable ASCII characters, no spaces")
    return key


def fingerprint(*, method: str, path: str, body: Any) -> str:
    """SHA-256 of the request: what "the same request" means for a repeated key."""
    return json_digest({"method": method, "path": path, "body": body})


def try_lock_key(*, tenant_id: int, key: str) -> bool:
    """Take a transaction-scoped advisory lock on (tenant, key); False if another holds it.

    The lock marks the key as in flight until the creating transaction ends, which is what
    lets a concurrent retry be told 409 at once instead of waiting on the unique index.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0))",
            [f"idempotency:{tenant_id}:{key}"],
        )
        row = cursor.fetchone()
    return bool(row and row[0])
