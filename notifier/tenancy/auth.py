"""DRF authentication by Bearer API key, and scope permissions."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from notifier.core.localcache import LocalCache
from notifier.tenancy.models import ApiKey, Tenant
from notifier.tenancy.services import hash_key, split_key

# Compared against when the prefix matches no key, so an unknown key costs the same work.
_DUMMY_HASH = hash_key("ntf_000000000000_dummy")
# last_used_at is informational; writing it at most once a minute keeps reads read-only.
_LAST_USED_RESOLUTION = timedelta(minutes=1)
# Keys with their tenants by prefix, for NOTIFIER_API_CACHE_SECONDS: a revoked key is refused
# at once by the process that revoked it and within that time by the others.
_keys: LocalCache[str, ApiKey | None] = LocalCache()


@dataclass(frozen=True, slots=True)
class ApiPrincipal:
    """``request.user`` for API requests: which tenant is calling, with which scopes."""

    tenant: Tenant
    scopes: frozenset[str]
    api_key_id: int

    @property
    def is_authenticated(self) -> bool:
        return True


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiPrincipal, ApiKey] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, raw_key = header.partition(" ")
        raw_key = raw_key.strip()
        if scheme.lower() != "bearer" or not raw_key:
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <api key>'.")
        parts = split_key(raw_key)
        api_key = _keys.get_or_load(parts[0], partial(_load_key, parts[0])) if parts else None
        expected = api_key.key_hash if api_key else _DUMMY_HASH
        matches = hmac.compare_digest(expected, hash_key(raw_key))
        if api_key is None or not matches or not api_key.is_active:
            raise exceptions.AuthenticationFailed("The API key is invalid or has been revoked.")
        now = timezone.now()
        if api_key.last_used_at is None or now - api_key.last_used_at > _LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
            api_key.last_used_at = now
        principal = ApiPrincipal(
            tenant=api_key.tenant, scopes=frozenset(api_key.scopes), api_key_id=api_key.pk
        )
        return principal, api_key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="notifier"'


def _load_key(prefix: str) -> ApiKey | None:
    return ApiKey.objects.select_related("tenant").filter(prefix=prefix).first()


class HasScope(permissions.BasePermission):
    """Require the scopes a view declares per HTTP method in ``required_scopes``.

    ``required_scopes = {"GET": "read", "POST": "send"}``; a method a view does not list is
    refused, so a new method cannot ship unprotected by accident.
    """

    message = "This API key lacks the scope this endpoint requires."

    def has_permission(self, request: Request, view: Any) -> bool:
        principal = request.user
        if not isinstance(principal, ApiPrincipal):
            raise exceptions.NotAuthenticated("Missing 'Authorization: Bearer <api key>' header.")
        required: dict[str, str] = getattr(view, "required_scopes", {})
        method = request.method or ""
        # HEAD is GET without the body, so it needs what GET needs.
        scope = required.get("GET" if method == "HEAD" else method)
        if scope is None:
            # A method the view does not implement passes, so DRF answers 405 with ``Allow``
            # instead of a misleading 403; an implemented method without a scope is refused.
            return method == "OPTIONS" or not hasattr(view, method.lower())
        if scope not in principal.scopes:
            self.message = f"This endpoint requires an API key with the '{scope}' scope."
            return False
        return True


def tenant_of(request: Request) -> Tenant:
    principal = request.user
    assert isinstance(principal, ApiPrincipal)
    return principal.tenant


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "notifier.tenancy.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "A notifier API key."}
