"""Notifications API: send, status, user history. Thin: parse, one call, render."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from notifier.core.errors import ApiError, NotFound
from notifier.core.openapi import USER_ID_PARAMETER, error_responses
from notifier.core.validation import path_user_id
from notifier.notifications import idempotency, selectors, services
from notifier.notifications.api.serializers import (
    HistoryPageSerializer,
    HistoryQuerySerializer,
    NotificationStatusSerializer,
    SendAcceptedSerializer,
    SendNotificationSerializer,
)
from notifier.tenancy.auth import tenant_of
from notifier.tenancy.models import Scope

SEND_EXAMPLE = {
    "request_id": "order-1042-shipped",
    "user_ids": ["user-1"],
    "notification_type": "order_shipped",
    "priority": "high",
    "channels": ["push", "email"],
    "template_vars": {"order_id": "1042", "carrier": "UPS", "eta": "Tuesday"},
    "metadata": {"order_id": "1042"},
}


class NotificationCollectionView(APIView):
    required_scopes = {"POST": Scope.SEND}

    @extend_schema(
        operation_id="send_notification",
        summary="Send a notification to 1 to 1000 users",
        description=(
            "Answers 202 once the notification is committed; delivery happens asynchronously. "
            "Send the same `request_id` (or `Idempotency-Key` header) again to retry safely: "
            "within 24 hours the same request gets the same response and `notification_id`."
        ),
        request=SendNotificationSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="Idempotency key; same as `request_id` in the body.",
            )
        ],
        responses={202: SendAcceptedSerializer, **error_responses(404, 409, 413, 422)},
        examples=[OpenApiExample("order shipped", value=SEND_EXAMPLE, request_only=True)],
        tags=["notifications"],
    )
    def post(self, request: Request) -> Response:
        serializer = SendNotificationSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data: dict[str, Any] = serializer.validated_data
        key = _idempotency_key(request, data.get("request_id"))
        body = {k: v for k, v in dict(request.data).items() if k != "request_id"}
        outcome = services.accept_notification(
            tenant=tenant_of(request),
            request=services.SendRequest(
                user_ids=data["user_ids"],
                notification_type=data["notification_type"],
                priority=data.get("priority"),
                channels=data.get("channels"),
                template_variant=data["template_id"],
                template_vars=data["template_vars"],
                scheduled_at=data["scheduled_at"],
                expires_at=data["expires_at"],
                metadata=data["metadata"],
            ),
            idempotency_key=key,
            fingerprint=idempotency.fingerprint(method="POST", path=request.path, body=body),
        )
        response = Response(outcome.body, status=outcome.status_code)
        response["Location"] = f"/api/v1/notifications/{outcome.body['notification_id']}"
        if outcome.replayed:
            response["Idempotent-Replayed"] = "true"
        return response


class NotificationDetailView(APIView):
    required_scopes = {"GET": Scope.READ}

    @extend_schema(
        operation_id="get_notification",
        summary="A notification's status, per user and per channel",
        responses={200: NotificationStatusSerializer, **error_responses(404)},
        tags=["notifications"],
    )
    def get(self, request: Request, notification_id: UUID) -> Response:
        notification = selectors.get_notification(
            tenant=tenant_of(request), notification_id=notification_id
        )
        if notification is None:
            raise NotFound("Notification not found.")
        return Response(selectors.notification_status(notification))


class UserHistoryView(APIView):
    required_scopes = {"GET": Scope.READ}

    @extend_schema(
        operation_id="list_user_notifications",
        summary="A user's notifications, newest first",
        parameters=[USER_ID_PARAMETER, HistoryQuerySerializer],
        responses={200: HistoryPageSerializer, **error_responses()},
        tags=["notifications"],
    )
    def get(self, request: Request, user_id: str) -> Response:
        query = HistoryQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        page = selectors.user_history(
            tenant=tenant_of(request),
            user_id=path_user_id(user_id),
            page=query.validated_data["page"],
            limit=query.validated_data["limit"],
        )
        return Response(
            {
                "results": page.results,
                "page": page.page,
                "limit": page.limit,
                "has_more": page.has_more,
            }
        )


def _idempotency_key(request: Request, body_key: str | None) -> str | None:
    header = request.headers.get("Idempotency-Key")
    if header is not None:
        header = header.strip()
        # The draft makes the header a structured-field string ("..."); bare tokens work too.
        if len(header) >= 2 and header[0] == header[-1] == '"':
            header = header[1:-1]
    if header is not None and body_key is not None and header != body_key:
        raise ApiError(
            "The Idempotency-Key header and request_id differ; send one or make them equal.",
            code="invalid_fields",
        )
    key = header if header is not None else body_key
    if key is None:
        return None
    try:
        return idempotency.validate_key(key)
    except idempotency.InvalidIdempotencyKey as exc:
        raise ApiError(f"Invalid idempotency key: {exc}.", code="invalid_fields") from exc
