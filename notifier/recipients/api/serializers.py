"""Request and response shapes of the users, devices, preferences and suppressions APIs."""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from channels.email import normalize_email
from channels.errors import InvalidAddress
from channels.push import MAX_TOKEN_LENGTH, normalize_token
from channels.sms import normalize_phone
from notifier.core.enums import Channel
from notifier.core.openapi import PUSH_TOKEN_PATTERN
from notifier.core.serializers import (
    JSONObjectField,
    SafeCharField,
    StrictBooleanField,
    StrictSerializer,
)
from notifier.core.validation import check_json_document, check_locale, check_timezone
from notifier.recipients.models import Platform, SuppressionReason
from notifier.recipients.services import suppression_key

MAX_ATTRIBUTES_BYTES = 16_384
TYPE_KEY_PATTERN = re.compile(r"[-a-zA-Z0-9_]{1,100}")


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
    attributes = JSONObjectField(required=False, help_text="Your data, for segments")
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


@extend_schema_field({"type": "string", "pattern": PUSH_TOKEN_PATTERN})
class PushTokenField(SafeCharField):
    """A push token as registered: printable ASCII, surrounding spaces ignored."""


class DeviceSerializer(StrictSerializer):
    token = PushTokenField(max_length=MAX_TOKEN_LENGTH)
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


CLOCK_TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


@extend_schema_field({"type": "string", "pattern": CLOCK_TIME_PATTERN, "example": "22:00"})
class ClockTimeField(serializers.TimeField):
    """A time of day as ``HH:MM``, read and written alike.

    DRF's ISO 8601 parsing would also take seconds (shown back truncated) and a UTC offset
    (silently dropped, since quiet hours have their own time zone).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="%H:%M", input_formats=["%H:%M"], **kwargs)

    def to_internal_value(self, value: Any) -> Any:
        if not isinstance(value, str) or not re.fullmatch(CLOCK_TIME_PATTERN, value):
            self.fail("invalid", format="HH:MM")
        return super().to_internal_value(value)


class QuietHoursSerializer(StrictSerializer):
    start = ClockTimeField(help_text="HH:MM in the given time zone")
    end = ClockTimeField(help_text="HH:MM; may be before start")
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

    def validate_notification_types(self, value: dict[str, Any]) -> dict[str, Any]:
        # Keys are looked up as type keys; one with NUL in it would fail that query (a 500).
        for key in value:
            if not TYPE_KEY_PATTERN.fullmatch(key):
                raise serializers.ValidationError(
                    f"{key[:100]!r} is not a notification type key (a slug of letters, digits, "
                    "_ and -, at most 100 characters).",
                    code="invalid",
                )
        return value

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
