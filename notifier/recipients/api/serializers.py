"""Request and response shapes of the users, devices, preferences and suppressions APIs."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from channels.email import normalize_email
from channels.errors import InvalidAddress
from channels.push import normalize_token
from channels.sms import normalize_phone
from notifier.core.enums import Channel
from notifier.core.serializers import SafeCharField, StrictBooleanField, StrictSerializer
from notifier.core.validation import check_json_document, check_locale, check_timezone
from notifier.recipients.models import Platform, SuppressionReason
from notifier.recipients.services import suppression_key

MAX_ATTRIBUTES_BYTES = 16_384


def _address(normalize: Any, value: str) -> str:
    try:
        return str(normalize(value))
    except InvalidAddress as exc:
        raise serializers.ValidationError(str(exc), code="invalid") from exc


class RecipientSerializer(StrictSerializer):
    """A user as the tenant describes them. ``PUT`` replaces every field it sends."""

    user_id = serializers.CharField(read_only=True)
    email = SafeCharField(max_length=320, required=False, allow_blank=True, allow_null=True)
    phone = SafeCharField(
        max_length=32,
        required=False,
        allow_blank=True,
        allow_null=True,
        help_text="E.164, e.g. +14155550123",
    )
    timezone = SafeCharField(max_length=64, required=False, help_text="IANA, e.g. Europe/Paris")
    locale = SafeCharField(max_length=35, required=False, help_text="BCP 47, e.g. en or pt-BR")
    attributes = serializers.JSONField(required=False, help_text="Your data, for segments")
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def validate_email(self, value: str | None) -> str:
        return _address(normalize_email, value) if value else ""

    def validate_phone(self, value: str | None) -> str:
        return _address(normalize_phone, value) if value else ""

    def validate_timezone(self, value: str) -> str:
        return check_timezone(value)

    def validate_locale(self, value: str) -> str:
        return check_locale(value)

    def validate_attributes(self, value: Any) -> Any:
        return check_json_document(value, max_bytes=MAX_ATTRIBUTES_BYTES, name="attributes")


class DeviceSerializer(StrictSerializer):
    token = SafeCharField(max_length=4096)
    platform = serializers.ChoiceField(choices=Platform.choices)
    app = SafeCharField(max_length=255, required=False, allow_blank=True, default="")
    active = serializers.BooleanField(read_only=True)
    last_seen_at = serializers.DateTimeField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)

    def validate_token(self, value: str) -> str:
        return _address(normalize_token, value)


class DeviceTokenSerializer(StrictSerializer):
    token = SafeCharField(max_length=4096)


class ChannelSwitchesSerializer(StrictSerializer):
    push = StrictBooleanField(required=False)
    email = StrictBooleanField(required=False)
    sms = StrictBooleanField(required=False)


class QuietHoursSerializer(StrictSerializer):
    start = serializers.TimeField(format="%H:%M", help_text="HH:MM in the given time zone")
    end = serializers.TimeField(format="%H:%M", help_text="HH:MM; may be before start")
    timezone = SafeCharField(max_length=64, help_text="IANA, e.g. America/New_York")

    def validate_timezone(self, value: str) -> str:
        return check_timezone(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["start"] == attrs["end"]:
            raise serializers.ValidationError("start and end must differ.")
        return attrs


class PreferencesSerializer(StrictSerializer):
    """``PUT`` replaces the whole document; a channel left out follows the defaults."""

    channels = ChannelSwitchesSerializer(required=False)
    quiet_hours = QuietHoursSerializer(required=False, allow_null=True)
    notification_types = serializers.DictField(
        child=ChannelSwitchesSerializer(), required=False, help_text="Per type key"
    )
    language = SafeCharField(max_length=35, required=False, help_text="BCP 47, e.g. fr")

    def validate_language(self, value: str) -> str:
        return check_locale(value)


class SuppressionSerializer(StrictSerializer):
    id = serializers.IntegerField(read_only=True)
    channel = serializers.ChoiceField(choices=Channel.choices)
    address = SafeCharField(max_length=4096, help_text="Email address, E.164 number or push token")
    reason = serializers.ChoiceField(choices=SuppressionReason.choices)
    note = SafeCharField(max_length=2000, required=False, allow_blank=True, default="")
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        try:
            attrs["address"] = suppression_key(channel=attrs["channel"], address=attrs["address"])
        except InvalidAddress as exc:
            raise serializers.ValidationError({"address": [str(exc)]}) from exc
        return attrs


class SuppressionQuerySerializer(StrictSerializer):
    channel = serializers.ChoiceField(choices=Channel.choices, required=False)
    address = SafeCharField(max_length=4096, required=False)
    page = serializers.IntegerField(min_value=1, max_value=100_000, default=1)
    limit = serializers.IntegerField(min_value=1, max_value=100, default=50)
