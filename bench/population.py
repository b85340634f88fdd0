"""The users a benchmark sends to, written straight into PostgreSQL with COPY.

Creating a million users through the API would benchmark the users endpoint, not sending; the
rows are the ones ``PUT /api/v1/users/{id}`` and ``POST .../devices`` would write: an email
address, an E.164 number (each with its suppression key, which is the address itself: both are
already in normalized form) and one Android device (FCM) per user. ``b<n>`` is user n.
"""

from __future__ import annotations

import io
from typing import Any

# COPY in chunks: one buffer for a million rows would hold hundreds of megabytes.
CHUNK = 50_000


def user_id(n: int) -> str:
    return f"b{n}"


def email(n: int) -> str:
    return f"{user_id(n)}@bench.example.com"


def phone(n: int) -> str:
    """A valid North American number, distinct for n < 8,000,000 (exchange 200-999)."""
    return f"+1212{200 + n // 10_000:03d}{n % 10_000:04d}"


def seed_users(connection: Any, *, start: int, count: int) -> None:
    """Users ``start`` … ``start + count - 1`` of the demo tenant, each with one device."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM tenancy_tenant WHERE name = 'demo'")
        (tenant_id,) = cursor.fetchone()
        for first in range(start, start + count, CHUNK):
            last = min(first + CHUNK, start + count)
            users = io.StringIO()
            for n in range(first, last):
                users.write(
                    f"{tenant_id}\t{user_id(n)}\t{email(n)}\t{email(n)}\t{phone(n)}\t{phone(n)}\t"
                    "UTC\ten\t{}\tnow\tnow\n"
                )
            users.seek(0)
            cursor.copy_expert(
                "COPY recipients_recipient (tenant_id, user_id, email, email_key, phone, phone_key,"
                " timezone, locale, attributes, created_at, updated_at) FROM STDIN",
                users,
            )
            cursor.execute(
                "INSERT INTO recipients_device (tenant_id, recipient_id, token, platform, app,"
                " active, last_seen_at, deactivation_reason, created_at)"
                " SELECT tenant_id, id, 'fcm-bench-token-' || user_id, 'android', '', true,"
                " now(), '', now() FROM recipients_recipient"
                " WHERE tenant_id = %s AND user_id = ANY(%s)",
                (tenant_id, [user_id(n) for n in range(first, last)]),
            )
