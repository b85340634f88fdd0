"""Writes for tenants and API keys."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from notifier.core import localcache
from notifier.tenancy.models import ApiKey, Scope, Tenant

KEY_PREFIX = "ntf_"


@dataclass(frozen=True, slots=True)
class IssuedKey:
    api_key: ApiKey
    raw_key: str  # shown once to the caller, never stored


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def split_key(raw_key: str) -> tuple[str, str] | None:
    """Return ``(prefix, secret)`` of a well-formed key, else ``None``."""
    if not raw_key.startswith(KEY_PREFIX):
        return None
    prefix, sep, secret = raw_key[len(KEY_PREFIX) :].partition("_")
    if not sep or not prefix or not secret:
        return None
    return prefix, secret


def get_or_create_tenant(*, name: str) -> Tenant:
    tenant, _ = Tenant.objects.get_or_create(name=name)
    return tenant


@transaction.atomic
def issue_api_key(*, tenant: Tenant, scopes: Iterable[str], name: str = "") -> IssuedKey:
    scope_list = sorted(set(scopes))
    unknown = set(scope_list) - set(Scope.values)
    if unknown or not scope_list:
        raise ValueError(f"scopes must be a non-empty subset of {sorted(Scope.values)}")
    prefix = secrets.token_hex(6)
    raw_key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(30)}"
    api_key = ApiKey.objects.create(
        tenant=tenant, name=name, prefix=prefix, key_hash=hash_key(raw_key), scopes=scope_list
    )
    return IssuedKey(api_key=api_key, raw_key=raw_key)


def revoke_api_key(*, api_key: ApiKey) -> ApiKey:
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    localcache.clear_all()  # refused at once here, within NOTIFIER_API_CACHE_SECONDS elsewhere
    api_key.refresh_from_db()
    return api_key
