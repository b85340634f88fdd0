"""Request and response shapes of the notification types and templates APIs."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from notifier.core.enums import Category, Channel, Priority
from notifier.core.serializers import (
    JSONObjectField,
    SafeCharField,
    StrictCharField,
    StrictSerializer,
    StrictSlugField,
    UniqueListField,
)
from notifier.core.validation import check_json_document, check_locale

MAX_SAMPLE_VARS_BYTES = 65_536
MAX_TEMPLATE_TEXT = 200_000


class NotificationTypeSerializer(StrictSerializer):
    key = StrictSlugField(max_length=100)
    name = SafeCharField(max_length=200, required=False, allow_blank=True, default="")
    category = serializers.ChoiceField(choices=Category.choices)
    default_priority = serializers.ChoiceField(choices=Priority.choices, default=Priority.NORMAL)
    default_channels = UniqueListField(
        child=serializers.ChoiceField(choices=Channel.choices), min_length=1, max_length=3
    )
    cap_limit = serializers.IntegerField(
        min_value=1,
        max_value=1_000_000,
        required=False,
        allow_null=True,
        default=None,
        help_text="At most this many of this type per user and channel per cap_period.",
    )
    cap_period = serializers.IntegerField(
        min_value=60,
        max_value=30 * 86400,
        required=False,
        allow_null=True,
        default=None,
        help_text="Seconds; required with cap_limit.",
    )
    dedup_window = serializers.IntegerField(
        min_value=0,
        max_value=7 * 86400,
        required=False,
        default=0,
        help_text="Seconds during which identical content reaches a user once; 0: off.",
    )
    fallback_channels = UniqueListField(
        child=serializers.ChoiceField(choices=[Channel.EMAIL, Channel.SMS]),
        max_length=2,
        required=False,
        default=list,
        help_text="When push cannot reach a user (no active device, or the last one's token "
        "died), the first of these the user allows is used instead, in order.",
    )
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if (attrs.get("cap_limit") is None) != (attrs.get("cap_period") is None):
            raise serializers.ValidationError(
                {"cap_period": ["cap_limit and cap_period go together: give both or neither."]}
            )
        return attrs


class TemplateContentSerializer(StrictSerializer):
    """The editable part of a template: what ``PATCH`` accepts."""

    id = serializers.IntegerField(read_only=True)
    notification_type = serializers.SlugField(read_only=True)
    channel = serializers.ChoiceField(choices=Channel.choices, read_only=True)
    locale = serializers.CharField(read_only=True)
    variant = serializers.SlugField(read_only=True)
    subject = StrictCharField(
        max_length=2000,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text="Email subject or push title (Jinja2)",
    )
    body = StrictCharField(
        max_length=MAX_TEMPLATE_TEXT,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text="SMS text, push body or email plain-text part (Jinja2)",
    )
    html = StrictCharField(
        max_length=MAX_TEMPLATE_TEXT,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text="Email HTML part (Jinja2, autoescaped)",
    )
    variables = serializers.ListField(
        child=StrictCharField(max_length=100),
        required=False,
        max_length=100,
        help_text="Variables the template uses; a send must provide each.",
    )
    sample_vars = JSONObjectField(
        required=False, help_text="Values for previews and the test render at publish"
    )
    published_version = serializers.IntegerField(
        read_only=True, allow_null=True, source="published_version.version", default=None
    )
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def validate_sample_vars(self, value: Any) -> Any:
        return check_json_document(value, max_bytes=MAX_SAMPLE_VARS_BYTES, name="sample_vars")


class TemplateSerializer(TemplateContentSerializer):
    """A whole template, as created with ``POST``."""

    notification_type = StrictSlugField(max_length=100)
    channel = serializers.ChoiceField(choices=Channel.choices)
    locale = SafeCharField(max_length=35, default="en")
    variant = StrictSlugField(max_length=64, default="default")
    body = StrictCharField(
        max_length=MAX_TEMPLATE_TEXT,
        allow_blank=True,
        trim_whitespace=False,
        help_text="SMS text, push body or email plain-text part (Jinja2)",
    )

    def validate_locale(self, value: str) -> str:
        return check_locale(value)


class TemplateVersionSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    subject = serializers.CharField()
    body = serializers.CharField()
    html = serializers.CharField()
    variables = serializers.ListField(child=serializers.CharField())
    published_at = serializers.DateTimeField()


class PreviewRequestSerializer(StrictSerializer):
    template_vars = JSONObjectField(required=False, help_text="Default: the template's sample_vars")

    def validate_template_vars(self, value: Any) -> Any:
        return check_json_document(value, max_bytes=MAX_SAMPLE_VARS_BYTES, name="template_vars")


class RenderedMessageSerializer(serializers.Serializer):
    subject = serializers.CharField()
    body = serializers.CharField()
    html = serializers.CharField()


class TemplateQuerySerializer(StrictSerializer):
    notification_type = serializers.SlugField(required=False)
    channel = serializers.ChoiceField(choices=Channel.choices, required=False)
    page = serializers.IntegerField(min_value=1, max_value=100_000, default=1)
    limit = serializers.IntegerField(min_value=1, max_value=100, default=50)
