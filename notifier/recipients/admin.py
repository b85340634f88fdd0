"""Admin for recipients, their devices and preferences, and suppressions.

These tables hold up to 100M rows, so searches match a whole value (a user id, an email in any
case, a phone number in any common notation) and stay on an index; a substring search would
read the whole table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Q
from django.http import HttpRequest
from rest_framework import serializers

from channels.email import normalize_email
from channels.errors import InvalidAddress
from channels.sms import normalize_phone
from notifier.content.models import NotificationType
from notifier.core.admin import ExactSearchAdmin
from notifier.core.enums import Channel
from notifier.core.validation import (
    check_json_document,
    check_locale,
    check_timezone,
    check_user_id,
)
from notifier.recipients import services
from notifier.recipients.api.serializers import MAX_ATTRIBUTES_BYTES
from notifier.recipients.models import (
    ChannelPreference,
    Device,
    QuietHours,
    Recipient,
    Suppression,
    TypePreference,
)


def _checked[T](check: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one of the API's validators and report its complaint as a form error."""
    try:
        return check(*args, **kwargs)
    except InvalidAddress as exc:
        raise forms.ValidationError(str(exc)) from exc
    except serializers.ValidationError as exc:
        raise forms.ValidationError([str(detail) for detail in exc.detail]) from exc


def _as_phone(term: str) -> str | None:
    try:
        return normalize_phone(term)
    except InvalidAddress:
        return None


def _recipient_match(term: str, prefix: str = "") -> Q:
    """Rows whose recipient is ``term``: a user id, an email (any case) or a phone number."""
    match = Q(**{f"{prefix}user_id": term}) | Q(**{f"{prefix}email__iexact": term})
    return match | Q(**{f"{prefix}phone": _as_phone(term) or term})


class RecipientForm(forms.ModelForm):
    class Meta:
        model = Recipient
        fields = ("tenant", "user_id", "email", "phone", "timezone", "locale", "attributes")

    def clean_user_id(self) -> str:
        return _checked(check_user_id, self.cleaned_data["user_id"])

    def clean_email(self) -> str:
        email: str = self.cleaned_data["email"]
        return _checked(normalize_email, email) if email else ""

    def clean_phone(self) -> str:
        phone: str = self.cleaned_data["phone"]
        return _checked(normalize_phone, phone) if phone else ""

    def clean_timezone(self) -> str:
        return _checked(check_timezone, self.cleaned_data["timezone"])

    def clean_locale(self) -> str:
        return _checked(check_locale, self.cleaned_data["locale"])

    def clean_attributes(self) -> Any:
        return _checked(
            check_json_document,
            self.cleaned_data["attributes"],
            max_bytes=MAX_ATTRIBUTES_BYTES,
            name="attributes",
        )


class DeviceInline(admin.TabularInline):
    """Devices are registered by the apps through the API; support may only remove one."""

    model = Device
    fields = ("platform", "app", "token", "active", "last_seen_at", "deactivation_reason")
    readonly_fields = fields
    ordering = ("-last_seen_at",)
    extra = 0
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Recipient | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Recipient | None = None) -> bool:
        return False


class ChannelPreferenceInline(admin.TabularInline):
    model = ChannelPreference
    fields = ("channel", "enabled")
    ordering = ("channel",)
    extra = 0
    max_num = len(Channel)


class TypePreferenceForm(forms.ModelForm):
    class Meta:
        model = TypePreference
        fields = ("recipient", "notification_type", "channel", "enabled")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        recipient, notification_type = cleaned.get("recipient"), cleaned.get("notification_type")
        if recipient is None or notification_type is None:
            return cleaned
        if notification_type.tenant_id != recipient.tenant_id:
            self.add_error("notification_type", "This type belongs to another tenant.")
        return cleaned


class TypePreferenceInline(admin.TabularInline):
    model = TypePreference
    form = TypePreferenceForm
    fields = ("notification_type", "channel", "enabled")
    ordering = ("notification_type__key", "channel")
    extra = 0

    def get_formset(self, request: HttpRequest, obj: Recipient | None = None, **kwargs: Any) -> Any:
        formset = super().get_formset(request, obj, **kwargs)
        # Offer only the recipient's own tenant's types; a new recipient has no tenant yet,
        # and the form's clean refuses a foreign type either way.
        field = formset.form.base_fields["notification_type"]
        if obj is not None and isinstance(field, forms.ModelChoiceField):
            field.queryset = NotificationType.objects.filter(tenant_id=obj.tenant_id).order_by(
                "key"
            )
        return formset


class QuietHoursForm(forms.ModelForm):
    class Meta:
        model = QuietHours
        fields = ("recipient", "start", "end", "timezone")

    def clean_timezone(self) -> str:
        return _checked(check_timezone, self.cleaned_data["timezone"])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("start") is not None and cleaned.get("start") == cleaned.get("end"):
            self.add_error("end", "Start and end must differ.")
        return cleaned


class QuietHoursInline(admin.StackedInline):
    model = QuietHours
    form = QuietHoursForm
    fields = ("start", "end", "timezone")
    extra = 0


@admin.register(Recipient)
class RecipientAdmin(ExactSearchAdmin):
    form = RecipientForm
    list_display = ("user_id", "tenant", "email", "phone", "timezone", "locale", "created_at")
    list_filter = ("tenant",)
    list_select_related = ("tenant",)
    search_fields = ("user_id", "email", "phone")
    search_help_text = "Exact user id, email address (any case) or phone number"
    ordering = ("-id",)
    autocomplete_fields = ("tenant",)
    readonly_fields = ("created_at", "updated_at")
    show_full_result_count = False
    inlines = (DeviceInline, ChannelPreferenceInline, TypePreferenceInline, QuietHoursInline)

    def exact_match(self, term: str) -> Q:
        return _recipient_match(term)

    def get_readonly_fields(
        self, request: HttpRequest, obj: Recipient | None = None
    ) -> tuple[str, ...]:
        # The user_id is the tenant's own name for this person, used by every API call and by
        # the notification history; renaming it here would split that history in two.
        if obj is None:
            return tuple(self.readonly_fields)
        return ("tenant", "user_id", *self.readonly_fields)


@admin.register(Device)
class DeviceAdmin(ExactSearchAdmin):
    """Devices come from the apps; support looks them up and may remove one."""

    list_display = (
        "__str__",
        "recipient",
        "tenant",
        "platform",
        "app",
        "active",
        "last_seen_at",
        "deactivated_at",
    )
    list_filter = ("platform", "active", "tenant")
    list_select_related = ("recipient", "tenant")
    search_fields = ("token", "recipient__user_id")
    search_help_text = "Exact push token, or the owner's user id, email or phone"
    ordering = ("-id",)
    show_full_result_count = False

    def exact_match(self, term: str) -> Q:
        return Q(token=term.strip()) | _recipient_match(term, prefix="recipient__")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Device | None = None) -> bool:
        return False


class PreferenceAdmin(ExactSearchAdmin):
    """Shared shape of the per-recipient preference rows, found by their recipient."""

    search_fields = ("recipient__user_id",)
    search_help_text = "The recipient's exact user id, email or phone"
    ordering = ("-id",)
    show_full_result_count = False

    def exact_match(self, term: str) -> Q:
        return _recipient_match(term, prefix="recipient__")

    @admin.display(description="tenant", ordering="recipient__tenant__name")
    def tenant(self, row: ChannelPreference | TypePreference | QuietHours) -> str:
        return row.recipient.tenant.name


@admin.register(ChannelPreference)
class ChannelPreferenceAdmin(PreferenceAdmin):
    list_display = ("recipient", "tenant", "channel", "enabled")
    list_filter = ("channel", "enabled")
    list_select_related = ("recipient__tenant",)
    raw_id_fields = ("recipient",)


@admin.register(TypePreference)
class TypePreferenceAdmin(PreferenceAdmin):
    form = TypePreferenceForm
    list_display = ("recipient", "tenant", "notification_type", "channel", "enabled")
    list_filter = ("channel", "enabled")
    list_select_related = ("recipient__tenant", "notification_type")
    raw_id_fields = ("recipient", "notification_type")


@admin.register(QuietHours)
class QuietHoursAdmin(PreferenceAdmin):
    form = QuietHoursForm
    list_display = ("recipient", "tenant", "start", "end", "timezone")
    list_select_related = ("recipient__tenant",)
    raw_id_fields = ("recipient",)


class SuppressionForm(forms.ModelForm):
    class Meta:
        model = Suppression
        fields = ("tenant", "channel", "address", "reason", "note")
        help_texts = {
            "address": "Email address, E.164 phone number or push token; stored in the form "
            "sends are matched against (emails casefolded, numbers in E.164)."
        }

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        channel, address = cleaned.get("channel"), cleaned.get("address")
        if channel and address:
            try:
                cleaned["address"] = services.suppression_key(channel=channel, address=address)
            except InvalidAddress as exc:
                self.add_error("address", str(exc))
        return cleaned


@admin.register(Suppression)
class SuppressionAdmin(ExactSearchAdmin):
    form = SuppressionForm
    list_display = ("address", "channel", "reason", "tenant", "created_at", "updated_at")
    list_filter = ("channel", "reason", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("address",)
    search_help_text = "An exact address, in any case or phone notation"
    ordering = ("-created_at",)
    autocomplete_fields = ("tenant",)
    readonly_fields = ("created_at", "updated_at")
    show_full_result_count = False

    def exact_match(self, term: str) -> Q:
        keys = {term}
        for channel in Channel:
            try:
                keys.add(services.suppression_key(channel=channel, address=term))
            except InvalidAddress:
                continue
        return Q(address__in=keys)
