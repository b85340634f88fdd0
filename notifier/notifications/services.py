"""Accepting notifications: the write behind ``POST /api/v1/notifications``."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from channels.email import check_header_value
from channels.errors import UnsafeHeaderValue
from notifier.content import selectors as content_selectors
from notifier.content.models import NotificationType, TemplateVersion
from notifier.content.rendering import TemplateRenderError, render_subject, variables_used
from notifier.core.digest import json_digest
from notifier.core.enums import Channel
from notifier.core.errors import BusinessRuleViolation, Conflict
from notifier.core.localcache import LocalCache
from notifier.notifications import idempotency, relay
from notifier.notifications.models import (
    IdempotencyRecord,
    Notification,
    NotificationRecipient,
    NotificationStatus,
    OutboxMessage,
)
from notifier.notifications.routing import lane_for
from notifier.tenancy.models import Tenant

logger = logging.getLogger(__name__)

# Read by every send, changed by an admin a few times a day: kept per process for
# NOTIFIER_API_CACHE_SECONDS (notifier/core/localcache.py). Planning reads them afresh.
_types: LocalCache[tuple[int, str], NotificationType | None] = LocalCache()
_versions: LocalCache[tuple[int, str, tuple[str, ...]], list[TemplateVersion]] = LocalCache()


@dataclass(frozen=True, slots=True)
class SendRequest:
    """A validated send request (shape checked by the API serializer)."""

    user_ids: Sequence[str]
    notification_type: str
    priority: str | None = None
    channels: Sequence[str] | None = None
    template_variant: str = "default"
    template_vars: Mapping[str, Any] = field(default_factory=dict)
    scheduled_at: datetime | None = None
    expires_at: datetime | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SendOutcome:
    status_code: int
    body: dict[str, Any]
    replayed: bool


def accept_notification(
    *,
    tenant: Tenant,
    request: SendRequest,
    idempotency_key: str | None = None,
    fingerprint: str = "",
) -> SendOutcome:
    """Accept a notification: commit it, its recipients and its outbox row together.

    With an ``idempotency_key`` the stored outcome of an earlier identical request is
    returned instead. Raises ``Conflict`` while a request with the same key is in flight and
    ``BusinessRuleViolation`` for an unknown type or template, missing template variables,
    a key reused with a different request, or times in the past.
    """
    now = timezone.now()
    with transaction.atomic():
        if idempotency_key is not None:
            stored = _claim_idempotency_key(tenant=tenant, key=idempotency_key, now=now)
            if stored is not None:
                if stored.fingerprint != fingerprint:
                    raise BusinessRuleViolation(
                        "This idempotency key was used with a different request.",
                        code="idempotency_key_reused",
                    )
                return SendOutcome(stored.response_status, stored.response_body, replayed=True)

        notification = _create_notification(
            tenant=tenant, request=request, request_id=idempotency_key or "", now=now
        )
        body = {
            "notification_id": str(notification.id),
            "status": notification.status,
            "channels_targeted": list(notification.channels),
        }
        if idempotency_key is not None:
            IdempotencyRecord.objects.create(
                tenant=tenant,
                key=idempotency_key,
                fingerprint=fingerprint,
                response_status=202,
                response_body=body,
                notification=notification,
                created_at=now,
                expires_at=now + timedelta(seconds=settings.NOTIFIER_IDEMPOTENCY_TTL),
            )
    logger.info(
        "notification accepted id=%s tenant=%s recipients=%d",
        notification.id,
        tenant.pk,
        notification.recipient_count,
    )
    return SendOutcome(202, body, replayed=False)


def purge_expired_idempotency_records(*, now: datetime, batch_size: int = 10_000) -> int:
    """Delete idempotency records past their expiry, in batches; returns how many.

    Batches keep each delete's locks and WAL small while the API keeps inserting.
    """
    purged = 0
    while True:
        batch = list(
            IdempotencyRecord.objects.filter(expires_at__lte=now).values_list("pk", flat=True)[
                :batch_size
            ]
        )
        if not batch:
            return purged
        purged += IdempotencyRecord.objects.filter(pk__in=batch, expires_at__lte=now).delete()[0]


def _claim_idempotency_key(*, tenant: Tenant, key: str, now: datetime) -> IdempotencyRecord | None:
    """Lock the key for this transaction; return its live stored outcome, if any."""
    if not idempotency.try_lock_key(tenant_id=tenant.pk, key=key):
        raise Conflict(
            "A request with this idempotency key is still being processed; retry shortly.",
            code="idempotency_in_flight",
            headers={"Retry-After": "1"},
        )
    record = IdempotencyRecord.objects.filter(tenant=tenant, key=key).first()
    if record is not None and record.expires_at <= now:
        record.delete()
        return None
    return record


def _create_notification(
    *, tenant: Tenant, request: SendRequest, request_id: str, now: datetime
) -> Notification:
    notification_type = _types.get_or_load(
        (tenant.pk, request.notification_type),
        partial(_find_type, tenant, request.notification_type),
    )
    if notification_type is None:
        raise BusinessRuleViolation(
            f"Unknown notification_type '{request.notification_type}'.",
            code="unknown_notification_type",
        )
    scheduled_at, expires_at = _check_times(request, now)
    wanted = list(request.channels or notification_type.default_channels)
    versions = _versions.get_or_load(
        (notification_type.pk, request.template_variant, tuple(wanted)),
        partial(
            content_selectors.published_versions,
            notification_type_id=notification_type.pk,
            variant=request.template_variant,
            channels=wanted,
        ),
    )
    available = {version.template.channel for version in versions}
    channels = [channel for channel in wanted if channel in available]
    if request.channels is not None and len(channels) < len(wanted):
        # Channels the caller named must all be sendable; type defaults may skip a channel
        # that has no template for this variant.
        missing = [channel for channel in wanted if channel not in available]
        raise BusinessRuleViolation(
            f"No published template '{request.template_variant}' for "
            f"'{notification_type.key}' on channels {', '.join(missing)}.",
            code="unknown_template",
        )
    if not channels:
        raise BusinessRuleViolation(
            f"No published template '{request.template_variant}' for "
            f"'{notification_type.key}' on channels {', '.join(wanted)}.",
            code="unknown_template",
        )
    required = sorted({var for v in versions for var in v.variables} - set(request.template_vars))
    if required:
        raise BusinessRuleViolation(
            "Missing template variables: " + ", ".join(required) + ".",
            code="missing_template_variables",
            extra={"missing": required},
        )

    _check_email_subjects(versions, request.template_vars)

    scheduled = scheduled_at is not None and scheduled_at > now
    notification = Notification.objects.create(
        tenant=tenant,
        notification_type=notification_type,
        priority=request.priority or notification_type.default_priority,
        status=NotificationStatus.SCHEDULED if scheduled else NotificationStatus.QUEUED,
        channels=channels,
        channels_requested=request.channels is not None,
        template_variant=request.template_variant,
        template_vars=dict(request.template_vars),
        metadata=dict(request.metadata),
        request_id=request_id,
        content_hash=content_hash(
            notification_type.key, request.template_variant, request.template_vars
        ),
        recipient_count=len(request.user_ids),
        scheduled_at=scheduled_at,
        expires_at=expires_at,
    )
    NotificationRecipient.objects.bulk_create(
        NotificationRecipient(
            notification=notification,
            tenant=tenant,
            user_id=user_id,
            position=position,
            created_at=notification.created_at,
        )
        for position, user_id in enumerate(request.user_ids)
    )
    # Ids only: a message on the broker never carries personal data (SPEC guarantee 2).
    outbox = OutboxMessage.objects.create(
        topic=relay.NOTIFICATION_ACCEPTED,
        payload={
            "notification_id": str(notification.id),
            # The lane routes planning: a critical notification never waits behind a campaign.
            "lane": lane_for(priority=notification.priority, category=notification_type.category),
        },
        available_at=scheduled_at if scheduled and scheduled_at else now,
    )
    if not scheduled and settings.NOTIFIER_PUBLISH_ON_COMMIT:
        # Low latency: publish right after the commit, without making the request wait for
        # the broker's confirm; the relay catches what this misses.
        transaction.on_commit(partial(relay.publish_soon, outbox.pk))
    return notification


def _find_type(tenant: Tenant, key: str) -> NotificationType | None:
    return NotificationType.objects.filter(tenant=tenant, key=key).first()


def _check_email_subjects(
    versions: Sequence[TemplateVersion], template_vars: Mapping[str, Any]
) -> None:
    """Refuse ``template_vars`` that would put a line break into an email subject.

    A subject is a mail header and its values come from the caller. Every provider refuses
    such a subject at send time, so each email delivery would fail after a 202; rendering
    the subjects here (compiled templates are cached, output capped at 1,000 characters)
    tells the caller at once instead.
    """
    for version in versions:
        if version.template.channel != Channel.EMAIL:
            continue
        try:
            subject = render_subject(version.subject, template_vars)
            check_header_value(subject, field="the rendered subject")
        except (TemplateRenderError, UnsafeHeaderValue) as exc:
            used = [name for name in variables_used(version.subject) if name in template_vars]
            raise BusinessRuleViolation(
                f"The email subject (locale '{version.template.locale}') cannot be made from "
                f"template_vars {', '.join(used) or '(none)'}: {exc}.",
                code="template_render_failed",
            ) from exc


def content_hash(type_key: str, variant: str, template_vars: Mapping[str, Any]) -> str:
    """What "the same content" means for deduplication: type, variant and variables."""
    return json_digest([type_key, variant, template_vars])


def _check_times(request: SendRequest, now: datetime) -> tuple[datetime | None, datetime | None]:
    skew = timedelta(seconds=settings.NOTIFIER_CLOCK_SKEW)
    ahead = settings.NOTIFIER_MAX_SCHEDULE_AHEAD_DAYS
    horizon = now + timedelta(days=ahead)
    scheduled_at, expires_at = request.scheduled_at, request.expires_at
    if scheduled_at is not None:
        if scheduled_at < now - skew:
            raise BusinessRuleViolation(
                "scheduled_at is in the past; omit it to send now.", code="scheduled_at_in_past"
            )
        if scheduled_at > horizon:
            raise BusinessRuleViolation(
                f"scheduled_at is more than {ahead} days ahead.",
                code="scheduled_at_too_far",
            )
    if expires_at is not None:
        if expires_at <= now:
            raise BusinessRuleViolation("expires_at is in the past.", code="expires_at_in_past")
        if scheduled_at is not None and expires_at <= scheduled_at:
            raise BusinessRuleViolation(
                "expires_at must be later than scheduled_at.", code="expires_before_scheduled"
            )
        if expires_at > horizon + timedelta(days=1):
            raise BusinessRuleViolation(
                f"expires_at is more than {ahead + 1} days ahead.",
                code="expires_at_too_far",
            )
    return scheduled_at, expires_at
