"""Reads of notification types and templates shared by the API, planning and admin."""

from __future__ import annotations

from collections.abc import Sequence

from django.db.models import F, QuerySet

from notifier.content.models import Template, TemplateVersion
from notifier.tenancy.models import Tenant


def published_versions(
    *, notification_type_id: int, variant: str, channels: Sequence[str]
) -> list[TemplateVersion]:
    """The live version of each non-archived template of a type's variant on ``channels``,
    every locale included, with its template loaded."""
    return list(
        TemplateVersion.objects.filter(
            template__notification_type_id=notification_type_id,
            template__variant=variant,
            template__channel__in=channels,
            template__archived_at__isnull=True,
            template__published_version_id=F("id"),
        ).select_related("template")
    )


def templates(
    *, tenant: Tenant, notification_type: str | None = None, channel: str | None = None
) -> QuerySet[Template]:
    """The tenant's templates in use, oldest first, optionally of one type or channel."""
    rows = Template.objects.select_related("notification_type", "published_version").filter(
        tenant=tenant, archived_at__isnull=True
    )
    if notification_type is not None:
        rows = rows.filter(notification_type__key=notification_type)
    if channel is not None:
        rows = rows.filter(channel=channel)
    return rows.order_by("id")
