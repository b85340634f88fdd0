"""Admin for notifications, deliveries and their events: support's "why didn't it arrive?".

Every row here is written by the pipeline, so the admin only reads, with one exception:
replay, of failed deliveries (an action) and of dead-lettered messages (the "Dead letters"
page beside the deliveries), for staff who may change deliveries. These tables grow by up to
a billion rows a day, hence: searches match a whole value on indexed columns, the default
orderings follow the primary key where they can, and list counts stop at ``COUNT_CAP``.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from channels.email import normalize_email
from channels.errors import InvalidAddress
from channels.sms import normalize_phone
from notifier.core.admin import ExactSearchAdmin
from notifier.core.enums import Channel
from notifier.notifications import deadletters
from notifier.notifications.models import (
    Delivery,
    DeliveryEvent,
    DeliveryState,
    IdempotencyRecord,
    Notification,
    NotificationRecipient,
    OutboxMessage,
)

COUNT_CAP = 10_000
# A notification's page lists every event of every delivery; a 1000-user send across three
# channels makes ~10k, more than a page can usefully show.
TIMELINE_LIMIT = 1_000
MAX_BIGINT = 2**63 - 1
# The dead-letter page reads messages off the queue and gives them back; a page is enough
# to act on, and a filter by queue narrows a larger backlog.
DEAD_LETTER_PAGE = 100


class CappedCountPaginator(Paginator):
    """Counts up to ``COUNT_CAP`` rows: an exact count of a billion-row table takes minutes."""

    cap = COUNT_CAP

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        assert isinstance(queryset, QuerySet)
        return queryset[: self.cap + 1].count()

    @property
    def is_capped(self) -> bool:
        return self.count > self.cap


def _as_uuid(term: str) -> UUID | None:
    try:
        return UUID(term)
    except ValueError:
        return None


def _value_or_notification(field: str, term: str) -> Q:
    """Rows whose ``field`` is ``term``, or that belong to the notification ``term`` names."""
    match = Q(**{field: term})
    notification_id = _as_uuid(term)
    if notification_id is not None:
        match |= Q(notification_id=notification_id)
    return match


def _as_id(term: str) -> int | None:
    """``term`` as a primary key, if it can be one (and would not overflow a bigint)."""
    if not term.isascii() or not term.isdigit():
        return None
    value = int(term)
    return value if 0 < value <= MAX_BIGINT else None


def _address_forms(term: str) -> set[str]:
    """The ways an address may be stored: as typed, and as each channel normalizes it."""
    forms = {term}
    for normalize in (normalize_email, normalize_phone):
        try:
            forms.add(normalize(term))
        except InvalidAddress:
            continue
    return forms


def _admin_link(model: type[Any], pk: object, label: object) -> SafeString:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[pk])
    return format_html('<a href="{}">{}</a>', url, label)


def _ids(ids: list[int]) -> str:
    shown = ", ".join(f"#{pk}" for pk in ids[:20])
    return shown + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")


def _arguments(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value}" for name, value in kwargs.items())


class ReadOnlyAdmin(ExactSearchAdmin):
    """Pipeline rows: support looks, never adds, edits or deletes.

    Subclasses search the whole term with ``exact_match``; ``search_fields`` only labels the
    search box.
    """

    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # Inline forms are built even when nothing may change, and a form cannot hold the
        # non-editable fields (queued_at) that support wants to see.
        return tuple(flatten(self.fields or ()))

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class NotificationRecipientInline(ReadOnlyInline):
    model = NotificationRecipient
    fields = ("position", "user_id")
    ordering = ("position",)
    verbose_name = "addressed user"


class DeliveryInline(ReadOnlyInline):
    model = Delivery
    fields = (
        "user_id",
        "channel",
        "to",
        "state",
        "reason",
        "provider",
        "attempts",
        "queued_at",
        "sent_at",
        "delivered_at",
        "failed_at",
    )
    ordering = ("id",)
    show_change_link = True

    @admin.display(description="destination")
    def to(self, delivery: Delivery) -> str:
        return Truncator(delivery.destination).chars(48)


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "notification_type",
        "tenant",
        "priority",
        "status",
        "channels",
        "recipient_count",
        "created_at",
    )
    list_filter = ("status", "priority", "tenant")
    list_select_related = ("notification_type", "tenant")
    search_fields = ("id", "recipients__user_id")
    search_help_text = "Exact notification id, or a user id it was addressed to"
    ordering = ("-created_at",)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "tenant",
                    "notification_type",
                    "priority",
                    "status",
                    "channels",
                    "channels_requested",
                    "template_variant",
                    "recipient_count",
                    "request_id",
                )
            },
        ),
        ("Times", {"fields": ("created_at", "scheduled_at", "expires_at")}),
        ("Data", {"fields": ("template_vars", "metadata"), "classes": ("collapse",)}),
        ("Timeline: every delivery event, oldest first", {"fields": ("timeline",)}),
    )
    readonly_fields = ("id", "created_at", "timeline")
    inlines = (NotificationRecipientInline, DeliveryInline)

    def exact_match(self, term: str) -> Q:
        match = Q(recipients__user_id=term)
        notification_id = _as_uuid(term)
        if notification_id is not None:
            match |= Q(pk=notification_id)
        return match

    @admin.display(description="timeline")
    def timeline(self, notification: Notification) -> SafeString:
        events = list(
            DeliveryEvent.objects.filter(delivery__notification=notification)
            .select_related("delivery")
            .order_by("occurred_at", "id")[: TIMELINE_LIMIT + 1]
        )
        return render_to_string(
            "admin/notifications/notification/timeline.html",
            {
                "events": events[:TIMELINE_LIMIT],
                "truncated": len(events) > TIMELINE_LIMIT,
                "limit": TIMELINE_LIMIT,
                "notification": notification,
            },
        )


@admin.register(NotificationRecipient)
class NotificationRecipientAdmin(ReadOnlyAdmin):
    list_display = ("user_id", "notification_link", "position", "tenant", "created_at")
    list_filter = ("tenant",)
    list_select_related = ("tenant",)
    search_fields = ("user_id", "notification__id")
    search_help_text = "Exact user id or notification id"
    ordering = ("-id",)

    def exact_match(self, term: str) -> Q:
        return _value_or_notification("user_id", term)

    @admin.display(description="notification")
    def notification_link(self, row: NotificationRecipient) -> SafeString:
        return _admin_link(Notification, row.notification_id, row.notification_id)


class DeliveryEventInline(ReadOnlyInline):
    model = DeliveryEvent
    fields = ("occurred_at", "state", "provider", "code", "reason", "detail")
    ordering = ("occurred_at", "id")


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "user_id",
        "channel",
        "to",
        "state",
        "reason",
        "provider",
        "attempts",
        "queued_at",
        "notification_link",
    )
    list_filter = ("state", "channel", "tenant")
    search_fields = ("user_id", "destination", "provider_message_id", "notification__id")
    search_help_text = (
        "Exact user id, destination (email, phone, push token), provider message id "
        "or notification id"
    )
    ordering = ("-id",)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "tenant",
                    "notification",
                    "user_id",
                    "recipient",
                    "channel",
                    "destination",
                    "device",
                    "template_version",
                )
            },
        ),
        (
            "Outcome",
            {
                "fields": (
                    "state",
                    "reason",
                    "provider",
                    "provider_message_id",
                    "attempts",
                    "last_error",
                )
            },
        ),
        (
            "Times",
            {
                "fields": (
                    "queued_at",
                    "next_attempt_at",
                    "sent_at",
                    "delivered_at",
                    "read_at",
                    "failed_at",
                    "expires_at",
                    "updated_at",
                )
            },
        ),
        ("Claim", {"fields": ("fence", "lease_expires_at"), "classes": ("collapse",)}),
    )
    readonly_fields = ("queued_at", "updated_at")
    inlines = (DeliveryEventInline,)
    actions = ("replay_selected",)

    def exact_match(self, term: str) -> Q:
        match = (
            Q(user_id=term) | Q(destination__in=_address_forms(term)) | Q(provider_message_id=term)
        )
        notification_id = _as_uuid(term)
        if notification_id is not None:
            match |= Q(notification_id=notification_id)
        delivery_id = _as_id(term)
        if delivery_id is not None:
            match |= Q(pk=delivery_id)
        return match

    @admin.display(description="destination")
    def to(self, delivery: Delivery) -> str:
        if delivery.channel == Channel.PUSH:
            return f"…{delivery.destination[-12:]}"
        return delivery.destination

    @admin.display(description="notification")
    def notification_link(self, delivery: Delivery) -> SafeString:
        return _admin_link(Notification, delivery.notification_id, "open")

    def has_replay_permission(self, request: HttpRequest) -> bool:
        """Replaying sends messages, so it takes the right to change deliveries."""
        return request.user.has_perm("notifications.change_delivery")

    @admin.action(description="Replay selected deliveries", permissions=["replay"])
    def replay_selected(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        now = timezone.now()
        replayed: list[int] = []
        refused: list[int] = []
        for delivery_id in queryset.order_by("pk").values_list("pk", flat=True):
            try:
                done = deadletters.replay_delivery(delivery_id=delivery_id, now=now)
            except deadletters.BROKER_ERRORS as exc:
                self.message_user(
                    request,
                    f"Delivery #{delivery_id} was not replayed: the broker is unavailable "
                    f"({type(exc).__name__}). Nothing was sent; try again later.",
                    messages.ERROR,
                )
                break
            (replayed if done else refused).append(delivery_id)
        if replayed:
            self.message_user(
                request,
                f"Replayed {len(replayed)} delivery(ies): {_ids(replayed)}.",
                messages.SUCCESS,
            )
        if refused:
            self.message_user(
                request,
                f"Refused {len(refused)} delivery(ies), not failed or unknown, or expired: "
                f"{_ids(refused)}.",
                messages.WARNING,
            )

    def get_urls(self) -> list[URLPattern]:
        # Before the defaults, whose "<path:object_id>/" would take these paths.
        view = self.admin_site.admin_view
        return [
            path(
                "dead-letters/",
                view(self.dead_letters_view),
                name="notifications_delivery_dead_letters",
            ),
            path(
                "dead-letters/replay/",
                view(self.replay_dead_letter_view),
                name="notifications_delivery_replay_dead_letter",
            ),
            *super().get_urls(),
        ]

    def dead_letters_view(self, request: HttpRequest) -> HttpResponse:
        """The messages RabbitMQ dead-lettered, why, and a replay button for each."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        queue = request.GET.get("queue") or None
        if queue not in deadletters.REPLAYABLE_QUEUES:
            queue = None
        error = ""
        letters: list[deadletters.DeadLetter] = []
        try:
            letters = deadletters.list_dead_letters(queue=queue, limit=DEAD_LETTER_PAGE)
        except deadletters.BROKER_ERRORS as exc:
            error = f"RabbitMQ is unavailable ({type(exc).__name__}); try again later."
        failed_url = reverse("admin:notifications_delivery_changelist")
        context = {
            **self.admin_site.each_context(request),
            "title": "Dead letters",
            "opts": self.opts,
            "rows": [
                (letter, Truncator(_arguments(letter.kwargs)).chars(120)) for letter in letters
            ],
            "page_full": len(letters) >= DEAD_LETTER_PAGE,
            "queue": queue or "",
            "queues": sorted(deadletters.REPLAYABLE_QUEUES),
            "error": error,
            "can_replay": self.has_replay_permission(request),
            "failed_url": f"{failed_url}?{urlencode({'state__exact': DeliveryState.FAILED})}",
        }
        return TemplateResponse(request, "admin/notifications/delivery/dead_letters.html", context)

    def replay_dead_letter_view(self, request: HttpRequest) -> HttpResponse:
        """POST only (CSRF-checked by ``admin_view``): replay one dead letter by task id."""
        if request.method != "POST":
            return HttpResponse(status=405, headers={"Allow": "POST"})
        if not self.has_replay_permission(request):
            raise PermissionDenied
        message_id = request.POST.get("message_id", "").strip()
        queue = request.POST.get("queue", "")
        back = reverse("admin:notifications_delivery_dead_letters")
        if queue in deadletters.REPLAYABLE_QUEUES:
            back += f"?{urlencode({'queue': queue})}"
        if not message_id:
            self.message_user(request, "No dead letter was chosen.", messages.ERROR)
            return HttpResponseRedirect(back)
        try:
            replayed = deadletters.replay_dead_letters(message_id=message_id)
        except deadletters.BROKER_ERRORS as exc:
            self.message_user(
                request,
                f"{message_id} was not replayed: RabbitMQ is unavailable "
                f"({type(exc).__name__}). It is still a dead letter.",
                messages.ERROR,
            )
            return HttpResponseRedirect(back)
        if replayed:
            self.message_user(
                request, f"Replayed {message_id}: its task runs again.", messages.SUCCESS
            )
        else:
            self.message_user(
                request,
                f"{message_id} is no longer a dead letter (replayed already?).",
                messages.WARNING,
            )
        return HttpResponseRedirect(back)


@admin.register(DeliveryEvent)
class DeliveryEventAdmin(ReadOnlyAdmin):
    list_display = ("occurred_at", "delivery_link", "state", "provider", "code", "reason")
    list_filter = ("state",)
    search_fields = ("delivery__id", "delivery__user_id", "delivery__notification__id")
    search_help_text = "Exact delivery id, user id or notification id"
    ordering = ("-id",)

    def exact_match(self, term: str) -> Q:
        match = Q(delivery__user_id=term)
        notification_id = _as_uuid(term)
        if notification_id is not None:
            match |= Q(delivery__notification_id=notification_id)
        delivery_id = _as_id(term)
        if delivery_id is not None:
            match |= Q(delivery_id=delivery_id)
        return match

    @admin.display(description="delivery")
    def delivery_link(self, event: DeliveryEvent) -> SafeString:
        return _admin_link(Delivery, event.delivery_id, f"#{event.delivery_id}")


class PublishedFilter(admin.SimpleListFilter):
    title = "published"
    parameter_name = "published"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("no", "Waiting"), ("yes", "Published")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "no":
            return queryset.filter(published_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(published_at__isnull=False)
        return queryset


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "topic",
        "created_at",
        "available_at",
        "published_at",
        "attempts",
        "last_error",
    )
    list_filter = (PublishedFilter,)
    search_fields = ("id", "topic")
    search_help_text = "Exact message id or topic"
    ordering = ("-id",)

    def exact_match(self, term: str) -> Q:
        match = Q(topic=term)
        message_id = _as_id(term)
        if message_id is not None:
            match |= Q(pk=message_id)
        return match


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyAdmin):
    list_display = (
        "key",
        "tenant",
        "response_status",
        "notification_link",
        "created_at",
        "expires_at",
    )
    list_filter = ("tenant",)
    list_select_related = ("tenant",)
    search_fields = ("key", "notification__id")
    search_help_text = "Exact idempotency key or notification id"
    # expires_at is indexed and, with one TTL for every record, sorts like created_at.
    ordering = ("-expires_at",)

    def exact_match(self, term: str) -> Q:
        return _value_or_notification("key", term)

    @admin.display(description="notification")
    def notification_link(self, record: IdempotencyRecord) -> SafeString | str:
        if record.notification_id is None:
            return "—"
        return _admin_link(Notification, record.notification_id, record.notification_id)
