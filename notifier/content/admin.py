"""Admin for notification types and templates: edit a draft, preview it, publish it.

Template content is checked by the same service the API uses, so the admin can save nothing
the sandbox would refuse, and publishing goes through ``publish_template``'s test render.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils.safestring import SafeString
from rest_framework import serializers

from notifier.content import services
from notifier.content.api.serializers import MAX_SAMPLE_VARS_BYTES
from notifier.content.models import NotificationType, Template, TemplateVersion
from notifier.content.rendering import TemplateRejected, TemplateRenderError
from notifier.core.enums import Channel
from notifier.core.validation import check_json_document, check_locale

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldsetSpec

SLOT_FIELDS = ("notification_type", "channel", "locale", "variant")
SOURCE_FIELDS = ("subject", "body", "html")
PUBLICATION_FIELDS = ("published_version", "archived_at", "created_at", "updated_at")


class NotificationTypeForm(forms.ModelForm):
    default_channels = forms.MultipleChoiceField(
        choices=Channel.choices, widget=forms.CheckboxSelectMultiple
    )
    fallback_channels = forms.MultipleChoiceField(
        choices=[(Channel.EMAIL, "email"), (Channel.SMS, "SMS")],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="When push cannot reach a user: email first, then SMS, among those ticked.",
    )

    class Meta:
        model = NotificationType
        fields = (
            "tenant",
            "key",
            "name",
            "category",
            "default_priority",
            "default_channels",
            "cap_limit",
            "cap_period",
            "dedup_window",
            "fallback_channels",
        )

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        if (cleaned.get("cap_limit") is None) != (cleaned.get("cap_period") is None):
            self.add_error("cap_period", "cap_limit and cap_period go together.")
        return cleaned


@admin.register(NotificationType)
class NotificationTypeAdmin(admin.ModelAdmin):
    form = NotificationTypeForm
    list_display = (
        "key",
        "name",
        "tenant",
        "category",
        "default_priority",
        "default_channels",
        "updated_at",
    )
    list_filter = ("category", "default_priority", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("key", "name", "tenant__name")
    ordering = ("tenant__name", "key")
    autocomplete_fields = ("tenant",)
    readonly_fields = ("created_at", "updated_at")

    def get_readonly_fields(
        self, request: HttpRequest, obj: NotificationType | None = None
    ) -> tuple[str, ...]:
        # API callers send the key; changing it would break every caller at once.
        if obj is None:
            return tuple(self.readonly_fields)
        return ("tenant", "key", *self.readonly_fields)


class TypeChoiceField(forms.ModelChoiceField):
    """Type keys repeat across tenants, so each choice names its tenant too."""

    def label_from_instance(self, obj: NotificationType) -> str:
        return f"{obj.tenant.name}: {obj.key}"


class TemplateForm(forms.ModelForm):
    notification_type = TypeChoiceField(
        queryset=NotificationType.objects.select_related("tenant").order_by("tenant__name", "key")
    )

    class Meta:
        model = Template
        fields = (*SLOT_FIELDS, *SOURCE_FIELDS, "variables", "sample_vars")
        widgets = {
            "subject": forms.Textarea(attrs={"rows": 2, "cols": 100}),
            "body": forms.Textarea(attrs={"rows": 10, "cols": 100}),
            "html": forms.Textarea(attrs={"rows": 16, "cols": 100}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Whitespace is content in a template (an SMS's line breaks, say), as in the API.
        for name in SOURCE_FIELDS:
            field = self.fields.get(name)
            if isinstance(field, forms.CharField):
                field.strip = False

    def clean_locale(self) -> str:
        locale: str = self.cleaned_data["locale"]
        try:
            return check_locale(locale)
        except serializers.ValidationError as exc:
            raise forms.ValidationError([str(detail) for detail in exc.detail]) from exc

    def clean_sample_vars(self) -> Any:
        try:
            return check_json_document(
                self.cleaned_data["sample_vars"],
                max_bytes=MAX_SAMPLE_VARS_BYTES,
                name="sample_vars",
            )
        except serializers.ValidationError as exc:
            raise forms.ValidationError([str(detail) for detail in exc.detail]) from exc

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.instance.pk is None:
            self._check_slot_is_free(cleaned)
        self._check_content(cleaned)
        return cleaned

    def _check_slot_is_free(self, cleaned: dict[str, Any]) -> None:
        # The unique constraint only covers live templates, a condition model validation
        # cannot evaluate from a form, so without this check a duplicate would surface as an
        # IntegrityError.
        if any(cleaned.get(field) in (None, "") for field in SLOT_FIELDS):
            return
        slot = {field: cleaned[field] for field in SLOT_FIELDS}
        if Template.objects.filter(archived_at__isnull=True, **slot).exists():
            self.add_error(
                None,
                "A live template for this type, channel, locale and variant exists; "
                "edit it, or archive it first.",
            )

    def _check_content(self, cleaned: dict[str, Any]) -> None:
        channel = cleaned.get("channel", self.instance.channel)
        content = (*SOURCE_FIELDS, "variables")
        if not channel or any(cleaned.get(name) is None for name in content):
            return  # a field is already invalid; its own error says why
        try:
            services.check_template_content(
                channel=channel,
                subject=cleaned["subject"],
                body=cleaned["body"],
                html=cleaned["html"],
                variables=cleaned["variables"],
            )
        except TemplateRejected as exc:
            for field, problems in exc.fields.items():
                self.add_error(field if field in self.fields else None, problems)


class TemplateVersionInline(admin.TabularInline):
    model = TemplateVersion
    fields = ("version", "published_at", "subject", "body", "variables")
    readonly_fields = fields
    ordering = ("-version",)
    extra = 0
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Template | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Template | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Template | None = None) -> bool:
        return False


class ArchivedFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("live", "Live"), ("archived", "Archived")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "live":
            return queryset.filter(archived_at__isnull=True)
        if self.value() == "archived":
            return queryset.filter(archived_at__isnull=False)
        return queryset


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    form = TemplateForm
    list_display = (
        "__str__",
        "tenant",
        "channel",
        "locale",
        "variant",
        "published",
        "archived_at",
        "updated_at",
    )
    list_filter = (ArchivedFilter, "channel", "tenant")
    list_select_related = ("notification_type", "tenant", "published_version")
    search_fields = ("notification_type__key", "variant", "locale", "tenant__name")
    ordering = ("notification_type__key", "channel", "locale", "variant")
    actions = ("publish", "archive")
    inlines = (TemplateVersionInline,)

    def get_fieldsets(self, request: HttpRequest, obj: Template | None = None) -> _FieldsetSpec:
        slot = ("tenant", *SLOT_FIELDS) if obj is not None else SLOT_FIELDS
        fieldsets: _FieldsetSpec = [
            (None, {"fields": slot}),
            ("Content (Jinja2, sandboxed)", {"fields": (*SOURCE_FIELDS, "variables")}),
            ("Sample values", {"fields": ("sample_vars",)}),
        ]
        if obj is None:
            return fieldsets
        return [
            *fieldsets,
            ("Preview of the saved draft", {"fields": ("preview",)}),
            ("Publication", {"fields": PUBLICATION_FIELDS}),
        ]

    def get_readonly_fields(
        self, request: HttpRequest, obj: Template | None = None
    ) -> tuple[str, ...]:
        # Edits change the draft's content only, as in the API: a template's slot is what
        # sends look it up by.
        if obj is None:
            return ()
        return ("tenant", *SLOT_FIELDS, *PUBLICATION_FIELDS, "preview")

    def has_delete_permission(self, request: HttpRequest, obj: Template | None = None) -> bool:
        # Deliveries point at published versions, which must outlive the template: archive.
        return False

    @admin.display(description="published")
    def published(self, template: Template) -> str:
        version = template.published_version
        return f"v{version.version}" if version is not None else "—"

    @admin.display(description="preview")
    def preview(self, template: Template) -> SafeString:
        context: dict[str, Any] = {"channel": template.channel}
        try:
            context["rendered"] = services.preview_template(template=template)
        except TemplateRenderError as exc:
            context["error"] = str(exc)
        return render_to_string("admin/content/template/preview.html", context)

    def save_model(self, request: HttpRequest, obj: Template, form: Any, change: bool) -> None:
        if change:
            changes = {name: form.cleaned_data[name] for name in form.changed_data}
            services.update_template(template=obj, changes=changes)
            return
        created = services.create_template(
            tenant=obj.notification_type.tenant,
            notification_type=obj.notification_type,
            channel=obj.channel,
            locale=obj.locale,
            variant=obj.variant,
            subject=obj.subject,
            body=obj.body,
            html=obj.html,
            variables=obj.variables,
            sample_vars=obj.sample_vars,
        )
        # The admin goes on with ``obj`` (history entry, redirect), so it becomes the new row.
        obj.pk = created.pk
        obj.refresh_from_db()
        obj._state.adding = False

    @admin.action(description="Publish selected templates", permissions=["change"])
    def publish(self, request: HttpRequest, queryset: QuerySet[Template]) -> None:
        published = []
        for template in queryset.select_related("notification_type"):
            if template.archived_at is not None:
                self.message_user(
                    request, f"{template} is archived and was not published.", messages.WARNING
                )
                continue
            try:
                version = services.publish_template(template=template)
            except (TemplateRenderError, TemplateRejected) as exc:
                self.message_user(request, f"{template} was not published: {exc}", messages.ERROR)
                continue
            published.append(f"{template} v{version.version}")
        if published:
            self.message_user(request, "Published " + ", ".join(published) + ".", messages.SUCCESS)

    @admin.action(description="Archive selected templates", permissions=["change"])
    def archive(self, request: HttpRequest, queryset: QuerySet[Template]) -> None:
        archived = 0
        for template in queryset.filter(archived_at__isnull=True):
            services.archive_template(template=template)
            archived += 1
        self.message_user(request, f"Archived {archived} template(s).", messages.SUCCESS)


@admin.register(TemplateVersion)
class TemplateVersionAdmin(admin.ModelAdmin):
    """Published versions are immutable: deliveries record which one they were sent with."""

    list_display = ("__str__", "version", "published_at")
    list_filter = ("template__channel",)
    list_select_related = ("template__notification_type",)
    search_fields = ("template__notification_type__key", "template__variant")
    ordering = ("-published_at",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: TemplateVersion | None = None
    ) -> bool:
        return False

    def has_delete_permission(
        self, request: HttpRequest, obj: TemplateVersion | None = None
    ) -> bool:
        return False
