"""Writes for notification types and templates: create, edit, publish, preview."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from channels.email import check_header_value
from channels.errors import UnsafeHeaderValue
from notifier.content.models import NotificationType, Template, TemplateVersion
from notifier.content.rendering import (
    RenderedMessage,
    TemplateRejected,
    TemplateRenderError,
    check_source,
    render_message,
)
from notifier.core import localcache
from notifier.core.enums import Channel
from notifier.core.validation import IDENTIFIER_PATTERN
from notifier.tenancy.models import Tenant

TEMPLATE_FIELDS = ("subject", "body", "html", "variables", "sample_vars")


def check_template_content(
    *, channel: str, subject: str, body: str, html: str, variables: Iterable[str]
) -> None:
    """Raise ``TemplateRejected`` when the content breaks a sandbox rule or its channel's shape."""
    declared = list(variables)
    fields: dict[str, list[str]] = {"subject": [], "body": [], "html": [], "variables": []}
    if not body.strip() and not (channel == Channel.EMAIL and html.strip()):
        fields["body"].append("must not be empty")
    if channel == Channel.SMS:
        for name, value in (("subject", subject), ("html", html)):
            if value:
                fields[name].append("an SMS template has only a body; leave this empty")
    if channel == Channel.PUSH and html:
        fields["html"].append("a push template has a title (subject) and a body; leave this empty")
    if channel == Channel.EMAIL and not subject.strip():
        fields["subject"].append("an email template needs a subject")
    if channel == Channel.EMAIL:
        # The subject is a mail header: what every provider would refuse at send time, each
        # delivery failing, is refused here, while its author is looking.
        try:
            check_header_value(subject, field="the subject (a mail header)")
        except UnsafeHeaderValue as exc:
            fields["subject"].append(exc.message)
    if len(set(declared)) != len(declared):
        fields["variables"].append("each variable may be declared once")
    for name in declared:
        if not IDENTIFIER_PATTERN.match(name):
            fields["variables"].append(f"'{name}' is not a valid name (letters, digits, _)")
    for part, source in (("subject", subject), ("body", body), ("html", html)):
        try:
            check_source(source, declared=declared, html=part == "html")
        except TemplateRejected as exc:
            fields[part].extend(exc.problems)
    if any(fields.values()):
        raise TemplateRejected.from_fields(fields)


@transaction.atomic
def create_template(
    *,
    tenant: Tenant,
    notification_type: NotificationType,
    channel: str,
    locale: str,
    variant: str,
    subject: str = "",
    body: str,
    html: str = "",
    variables: Iterable[str] = (),
    sample_vars: Mapping[str, Any] | None = None,
) -> Template:
    check_template_content(
        channel=channel, subject=subject, body=body, html=html, variables=variables
    )
    return Template.objects.create(
        tenant=tenant,
        notification_type=notification_type,
        channel=channel,
        locale=locale,
        variant=variant,
        subject=subject,
        body=body,
        html=html,
        variables=list(variables),
        sample_vars=dict(sample_vars or {}),
    )


@transaction.atomic
def update_template(*, template: Template, changes: Mapping[str, Any]) -> Template:
    """Edit a template's draft. The published version, and every send, is unaffected."""
    unknown = set(changes) - set(TEMPLATE_FIELDS)
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    merged = {field: changes.get(field, getattr(template, field)) for field in TEMPLATE_FIELDS}
    check_template_content(
        channel=template.channel,
        subject=merged["subject"],
        body=merged["body"],
        html=merged["html"],
        variables=merged["variables"],
    )
    for field, value in merged.items():
        setattr(template, field, value)
    template.save()
    return template


def archive_template(*, template: Template) -> None:
    """Take a template out of use. Its versions stay, since deliveries point at them."""
    Template.objects.filter(pk=template.pk).update(
        archived_at=timezone.now(), updated_at=timezone.now()
    )
    localcache.clear_all()  # an update() sends no post_save


def preview_template(
    *, template: Template, variables: Mapping[str, Any] | None = None
) -> RenderedMessage:
    """Render the draft with ``variables`` (default: the template's sample values)."""
    values = template.sample_vars if variables is None else variables
    return render_message(
        subject=template.subject, body=template.body, html=template.html, variables=values
    )


@transaction.atomic
def publish_template(*, template: Template) -> TemplateVersion:
    """Snapshot the draft as the next version and make it the one sends use.

    The draft must pass a test render with its sample values, so a template that would fail
    for every recipient can never go live. Raises ``TemplateRenderError`` if it does not.
    """
    locked = Template.objects.select_for_update().get(pk=template.pk)
    check_template_content(
        channel=locked.channel,
        subject=locked.subject,
        body=locked.body,
        html=locked.html,
        variables=locked.variables,
    )
    missing = sorted(set(locked.variables) - set(locked.sample_vars))
    if missing:
        raise TemplateRenderError(
            "sample_vars must give a value for every declared variable; missing: "
            + ", ".join(missing)
        )
    preview_template(template=locked)
    latest = locked.versions.aggregate(latest=Max("version"))["latest"] or 0
    version = TemplateVersion.objects.create(
        template=locked,
        version=latest + 1,
        subject=locked.subject,
        body=locked.body,
        html=locked.html,
        variables=list(locked.variables),
    )
    locked.published_version = version
    locked.save(update_fields=["published_version", "updated_at"])
    template.published_version = version
    return version


@dataclass(frozen=True, slots=True)
class TypeSettings:
    """What a notification type says about sends of its kind."""

    category: str
    default_channels: Sequence[str]
    default_priority: str
    name: str = ""
    cap_limit: int | None = None
    cap_period: int | None = None
    dedup_window: int = 0
    fallback_channels: Sequence[str] = ()

    def as_fields(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "default_channels": list(self.default_channels),
            "default_priority": self.default_priority,
            "name": self.name,
            "cap_limit": self.cap_limit,
            "cap_period": self.cap_period,
            "dedup_window": self.dedup_window,
            "fallback_channels": list(self.fallback_channels),
        }


@transaction.atomic
def create_notification_type(
    *, tenant: Tenant, key: str, settings: TypeSettings
) -> NotificationType:
    """Create a type; a key the tenant already uses raises ``IntegrityError``."""
    return NotificationType.objects.create(tenant=tenant, key=key, **settings.as_fields())


def upsert_notification_type(
    *, tenant: Tenant, key: str, settings: TypeSettings
) -> NotificationType:
    notification_type, _ = NotificationType.objects.update_or_create(
        tenant=tenant, key=key, defaults=settings.as_fields()
    )
    return notification_type
