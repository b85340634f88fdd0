"""The naive send endpoint: save the notification and its recipients, enqueue one task."""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bench.naive.tasks import send_notification
from notifier.content.models import NotificationType
from notifier.core.enums import Channel
from notifier.notifications.models import Notification, NotificationRecipient
from notifier.tenancy.auth import tenant_of
from notifier.tenancy.models import Scope


class NaiveSendSerializer(serializers.Serializer):
    user_ids = serializers.ListField(
        child=serializers.CharField(max_length=255), min_length=1, max_length=1000
    )
    notification_type = serializers.CharField(max_length=100)
    channels = serializers.ListField(
        child=serializers.ChoiceField(choices=Channel.choices), required=False
    )
    template_vars = serializers.DictField(required=False, default=dict)


class NaiveSendView(APIView):
    required_scopes = {"POST": Scope.SEND}

    def post(self, request: Request) -> Response:
        serializer = NaiveSendSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data: dict[str, Any] = serializer.validated_data
        tenant = tenant_of(request)
        notification_type = get_object_or_404(
            NotificationType, tenant=tenant, key=data["notification_type"]
        )
        notification = Notification.objects.create(
            tenant=tenant,
            notification_type=notification_type,
            priority=notification_type.default_priority,
            channels=data.get("channels") or notification_type.default_channels,
            template_vars=data["template_vars"],
            recipient_count=len(data["user_ids"]),
        )
        NotificationRecipient.objects.bulk_create(
            NotificationRecipient(
                notification=notification,
                tenant=tenant,
                user_id=user_id,
                position=position,
                created_at=notification.created_at,
            )
            for position, user_id in enumerate(data["user_ids"])
        )
        send_notification.delay(str(notification.pk))
        return Response({"notification_id": str(notification.pk), "status": "queued"}, status=202)
