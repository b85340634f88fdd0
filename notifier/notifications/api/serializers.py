"""Request and response shapes of the notifications API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from rest_framework import serializers

from notifier.core.enums import Channel, Priority
from notifier.core.serializers import (
    JSONObjectField,
    SafeCharField,
    StrictSerializer,
    StrictSlugField,
    UniqueListField,
)
from notifier.core.validation import check_json_document, check_user_id
from notifier.notifications import idempotency
from notifier.notifications.models import DeliveryState, NotificationStatus

MAX_TEMPLATE_VARS_BYTES = 65_536
MAX_METADATA_BYTES = 4_096


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO 8601 timestamp that must say its offset: a bare time is ambiguous."""

    def to_internal_value(self, value: Any) -> datetime:
        if not isinstance(value, str):
            raise serializers.ValidationError("Must be an ISO 8601 string.", code="invalid")
        parsed = super().to_internal_value(value)
        if not any(mark in value[10:] for mark in ("Z", "z", "+", "-")):
            raise serializers.ValidationError(
                "Must include a UTC offset, e.g. 2026-05-01T09:00:00Z.", code="invalid"
            )
        return parsed


class SendNotificationSerializer(StrictSerializer):
    request_id = SafeCharField(
        max_length=255,
        required=False,
        help_text="Idempotency key (the Idempotency-Key header works too): 1 to 255 printable "
        "ASCII characters, no spaces.",
    )
    user_ids = UniqueListField(
        child=SafeCharField(max_length=255),
        min_length=1,
        max_length=settings.NOTIFIER_MAX_USERS_PER_REQUEST,
        help_text="Your ids of the users to notify, 1 to 1000, each once.",
    )
    notification_type = StrictSlugField(max_length=100)
    priority = serializers.ChoiceField(
        choices=Priority.choices, required=False, help_text="Default: the type's priority."
    )
    channels = UniqueListField(
        child=serializers.ChoiceField(choices=Channel.choices),
        min_length=1,
        max_length=len(Channel.choices),
        required=False,
        help_text="Default: the user's preferences and the type's default channels.",
    )
    template_id = StrictSlugField(
        max_length=64,
        required=False,
        default="default",
        help_text="Template variant to use for every channel; default 'default'.",
    )
    template_vars = JSONObjectField(required=False, default=dict)
    scheduled_at = AwareDateTimeField(required=False, allow_null=True, default=None)
    expires_at = AwareDateTimeField(required=False, allow_null=True, default=None)
    metadata = JSONObjectField(
        required=False, default=dict, help_text="Your own data, returned as given (≤ 4 KB)."
    )

    def validate_request_id(self, value: str) -> str:
        try:
            return idempotency.validate_key(value)
        except idempotency.InvalidIdempotencyKey as exc:
            raise serializers.ValidationError(f"Invalid idempotency key: {exc}.") from exc

    def validate_user_ids(self, value: list[str]) -> list[str]:
        for position, user_id in enumerate(value):
            try:
                check_user_id(user_id)
            except serializers.ValidationError as exc:
                # Keyed by position, as DRF reports its own item errors: "999: ..." says which
                # of a thousand ids to fix.
                raise serializers.ValidationError({str(position): exc.detail}) from exc
        return value

    def validate_template_vars(self, value: Any) -> Any:
        return check_json_document(value, max_bytes=MAX_TEMPLATE_VARS_BYTES, name="template_vars")

    def validate_metadata(self, value: Any) -> Any:
        return check_json_document(value, max_bytes=MAX_METADATA_BYTES, name="metadata")


class SendAcceptedSerializer(serializers.Serializer):
    notification_id = serializers.UUIDField()
    status = serializers.ChoiceField(
        choices=[NotificationStatus.QUEUED, NotificationStatus.SCHEDULED]
    )
    channels_targeted = serializers.ListField(
        child=serializers.ChoiceField(choices=Channel.choices)
    )


class DeliveryViewSerializer(serializers.Serializer):
    delivery_id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=DeliveryState.choices)
    reason = serializers.CharField()
    queued_at = serializers.DateTimeField()
    sent_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)
    read_at = serializers.DateTimeField(allow_null=True)
    failed_at = serializers.DateTimeField(allow_null=True)


class ChannelDeliveriesSerializer(serializers.Serializer):
    push = DeliveryViewSerializer(many=True, required=False)
    email = DeliveryViewSerializer(many=True, required=False)
    sms = DeliveryViewSerializer(many=True, required=False)


class NotificationSummarySerializer(serializers.Serializer):
    notification_id = serializers.UUIDField()
    notification_type = serializers.CharField()
    priority = serializers.ChoiceField(choices=Priority.choices)
    status = serializers.ChoiceField(choices=NotificationStatus.choices)
    channels_targeted = serializers.ListField(
        child=serializers.ChoiceField(choices=Channel.choices)
    )
    template_id = serializers.CharField()
    metadata = JSONObjectField()
    created_at = serializers.DateTimeField()
    scheduled_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)


class UserDeliveriesSerializer(serializers.Serializer):
    user_id = serializers.CharField()
    channels = ChannelDeliveriesSerializer()


class NotificationStatusSerializer(NotificationSummarySerializer):
    users = UserDeliveriesSerializer(many=True)


class HistoryItemSerializer(NotificationSummarySerializer):
    channels = ChannelDeliveriesSerializer()


class HistoryPageSerializer(serializers.Serializer):
    results = HistoryItemSerializer(many=True)
    page = serializers.IntegerField()
    limit = serializers.IntegerField()
    has_more = serializers.BooleanField()


class HistoryQuerySerializer(StrictSerializer):
    page = serializers.IntegerField(min_value=1, max_value=100_000, default=1)
    limit = serializers.IntegerField(min_value=1, max_value=100, default=20)
