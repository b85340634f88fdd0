"""Admin for tenants and their API keys.

Keys are hashed at rest, so the admin creates them through ``issue_api_key`` and shows the raw
key on the page that answers the "add" form, once. The hash is never displayed.
"""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from notifier.tenancy import services
from notifier.tenancy.models import ApiKey, Scope, Tenant

# The raw key lives from save_model to response_add of the same request, and nowhere else:
# not in the session or a message cookie, where it would sit at rest unhashed.
_raw_keys: WeakKeyDictionary[HttpRequest, str] = WeakKeyDictionary()


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    fields = ("prefix", "name", "scopes", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    ordering = ("-created_at",)
    extra = 0
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Tenant | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Tenant | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Tenant | None = None) -> bool:
        return False


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("name", "api_rate_limit", "api_burst", "created_at")
    search_fields = ("name",)
    ordering = ("name",)
    readonly_fields = ("created_at",)
    inlines = (ApiKeyInline,)

    def has_delete_permission(self, request: HttpRequest, obj: Tenant | None = None) -> bool:
        # Deleting a tenant cascades to every row it owns, possibly billions: an operation
        # to plan and run in batches, not a button.
        return False


class ApiKeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


class ApiKeyCreationForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices, widget=forms.CheckboxSelectMultiple, initial=[Scope.SEND]
    )

    class Meta:
        model = ApiKey
        fields = ("tenant", "name", "scopes")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "name",
        "tenant",
        "scopes",
        "created_at",
        "last_used_at",
        "active",
    )
    list_filter = (ApiKeyStatusFilter, "tenant")
    list_select_related = ("tenant",)
    search_fields = ("=prefix", "name", "tenant__name")
    search_help_text = "Key prefix (the part after ntf_), key name or tenant name"
    ordering = ("-created_at",)
    autocomplete_fields = ("tenant",)
    actions = ("revoke",)
    add_fields = ("tenant", "name", "scopes")
    change_fields = (
        "tenant",
        "prefix",
        "name",
        "scopes",
        "created_at",
        "last_used_at",
        "revoked_at",
    )

    @admin.display(description="active", boolean=True)
    def active(self, api_key: ApiKey) -> bool:
        return api_key.is_active

    def get_form(
        self, request: HttpRequest, obj: ApiKey | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm]:
        if obj is None:
            kwargs["form"] = ApiKeyCreationForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        return self.add_fields if obj is None else self.change_fields

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        # Only the name may change: a key's scopes are part of what was handed out, so
        # different scopes mean issuing a new key and revoking this one.
        if obj is None:
            return []
        return [field for field in self.change_fields if field != "name"]

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        # Revoke instead: the row is the record of who could call the API, and when.
        return False

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        issued = services.issue_api_key(
            tenant=form.cleaned_data["tenant"],
            scopes=form.cleaned_data["scopes"],
            name=form.cleaned_data["name"],
        )
        # The admin goes on with ``obj`` (history entry, redirect), so it becomes the new row.
        obj.pk = issued.api_key.pk
        obj.refresh_from_db()
        obj._state.adding = False
        _raw_keys[request] = issued.raw_key

    def response_add(
        self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        raw_key = _raw_keys.pop(request, None)
        if raw_key is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "title": "API key created",
            "opts": self.opts,
            "api_key": obj,
            "raw_key": raw_key,
        }
        return TemplateResponse(request, "admin/tenancy/apikey/issued.html", context)

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            services.revoke_api_key(api_key=api_key)
            revoked += 1
        self.message_user(request, f"Revoked {revoked} API key(s).", messages.SUCCESS)
