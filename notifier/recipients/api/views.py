"""Users, devices, preferences and suppressions APIs. Thin: parse, one call, render."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from notifier.core.errors import BusinessRuleViolation, NotFound
from notifier.core.openapi import USER_ID_PARAMETER, error_responses
from notifier.core.validation import path_user_id
from notifier.recipients import selectors, services
from notifier.recipients.api.serializers import (
    DeviceSerializer,
    DeviceTokenSerializer,
    PreferencesSerializer,
    RecipientSerializer,
    SuppressionQuerySerializer,
    SuppressionSerializer,
)
from notifier.recipients.models import Recipient, Suppression
from notifier.tenancy.auth import tenant_of
from notifier.tenancy.models import Scope

PREFERENCES_EXAMPLE = {
    "channels": {"push": True, "email": True, "sms": False},
    "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Europe/Paris"},
    "notification_types": {"weekly_digest": {"email": False}},
    "language": "fr",
}


def _recipient(request: Request, user_id: str) -> Recipient:
    recipient = Recipient.objects.filter(
        tenant=tenant_of(request), user_id=path_user_id(user_id)
    ).first()
    if recipient is None:
        raise NotFound("User not found. Create it with PUT /api/v1/users/{user_id}.")
    return recipient


class UserView(APIView):
    required_scopes = {"GET": Scope.READ, "PUT": Scope.SEND}

    @extend_schema(
        operation_id="get_user",
        parameters=[USER_ID_PARAMETER],
        summary="A user's contact points and settings",
        responses={200: RecipientSerializer, **error_responses(404)},
        tags=["users"],
    )
    def get(self, request: Request, user_id: str) -> Response:
        recipient = _recipient(request, user_id)
        return Response(RecipientSerializer(recipient).data)

    @extend_schema(
        operation_id="upsert_user",
        parameters=[USER_ID_PARAMETER],
        summary="Create or update a user",
        description="Creates the user (201) or updates the fields sent (200).",
        request=RecipientSerializer,
        responses={200: RecipientSerializer, 201: RecipientSerializer, **error_responses(413)},
        examples=[
            OpenApiExample(
                "user",
                value={
                    "email": "ada@example.com",
                    "phone": "+14155550123",
                    "timezone": "America/Los_Angeles",
                    "locale": "en",
                    "attributes": {"plan": "pro"},
                },
                request_only=True,
            )
        ],
        tags=["users"],
    )
    def put(self, request: Request, user_id: str) -> Response:
        serializer = RecipientSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        recipient, created = services.upsert_recipient(
            tenant=tenant_of(request),
            user_id=path_user_id(user_id),
            fields=serializer.validated_data,
        )
        return Response(
            RecipientSerializer(recipient).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class DeviceCollectionView(APIView):
    required_scopes = {"GET": Scope.READ, "POST": Scope.SEND, "DELETE": Scope.SEND}

    @extend_schema(
        operation_id="list_devices",
        parameters=[USER_ID_PARAMETER],
        summary="A user's push devices",
        responses={200: DeviceSerializer(many=True), **error_responses(404)},
        tags=["users"],
    )
    def get(self, request: Request, user_id: str) -> Response:
        recipient = _recipient(request, user_id)
        devices = recipient.devices.order_by("-last_seen_at")
        return Response(DeviceSerializer(devices, many=True).data)

    @extend_schema(
        operation_id="register_device",
        parameters=[USER_ID_PARAMETER],
        summary="Register a push token",
        description="Registers the token (201), or refreshes and reactivates it (200).",
        request=DeviceSerializer,
        responses={200: DeviceSerializer, 201: DeviceSerializer, **error_responses(404)},
        examples=[
            OpenApiExample(
                "iPhone",
                value={"token": "a1b2c3" * 10 + "d4e5", "platform": "ios", "app": "com.example"},
                request_only=True,
            )
        ],
        tags=["users"],
    )
    def post(self, request: Request, user_id: str) -> Response:
        recipient = _recipient(request, user_id)
        serializer = DeviceSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        device, created = services.register_device(recipient=recipient, **serializer.validated_data)
        return Response(
            DeviceSerializer(device).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @extend_schema(
        operation_id="unregister_device",
        parameters=[USER_ID_PARAMETER],
        summary="Unregister a push token",
        request=DeviceTokenSerializer,
        responses={204: None, **error_responses(404)},
        tags=["users"],
    )
    def delete(self, request: Request, user_id: str) -> Response:
        recipient = _recipient(request, user_id)
        serializer = DeviceTokenSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if not services.unregister_device(
            recipient=recipient, token=serializer.validated_data["token"].strip()
        ):
            raise NotFound("This user has no device with that token.")
        return Response(status=status.HTTP_204_NO_CONTENT)


class PreferencesView(APIView):
    required_scopes = {"GET": Scope.READ, "PUT": Scope.SEND}

    @extend_schema(
        operation_id="get_preferences",
        parameters=[USER_ID_PARAMETER],
        summary="A user's notification preferences",
        responses={200: PreferencesSerializer, **error_responses(404)},
        examples=[OpenApiExample("preferences", value=PREFERENCES_EXAMPLE, response_only=True)],
        tags=["users"],
    )
    def get(self, request: Request, user_id: str) -> Response:
        document = selectors.preferences_of(_recipient(request, user_id))
        return Response(_render_preferences(document))

    @extend_schema(
        operation_id="replace_preferences",
        parameters=[USER_ID_PARAMETER],
        summary="Replace a user's notification preferences",
        description=(
            "Replaces the whole document. A channel left out of `channels` or of a type is "
            "allowed by default; `quiet_hours: null` (or leaving it out) removes quiet hours."
        ),
        request=PreferencesSerializer,
        responses={200: PreferencesSerializer, **error_responses(404, 422)},
        examples=[OpenApiExample("preferences", value=PREFERENCES_EXAMPLE, request_only=True)],
        tags=["users"],
    )
    def put(self, request: Request, user_id: str) -> Response:
        recipient = _recipient(request, user_id)
        serializer = PreferencesSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        quiet = data.get("quiet_hours")
        document = services.PreferenceDocument(
            channels=data.get("channels", {}),
            quiet_hours=services.QuietHoursWindow(**quiet) if quiet else None,
            notification_types=data.get("notification_types", {}),
            language=data.get("language", ""),
        )
        try:
            services.replace_preferences(recipient=recipient, document=document)
        except services.UnknownNotificationTypes as exc:
            raise BusinessRuleViolation(
                str(exc).capitalize() + ".", code="unknown_notification_type"
            ) from exc
        recipient.refresh_from_db()
        return Response(_render_preferences(selectors.preferences_of(recipient)))


def _render_preferences(document: services.PreferenceDocument) -> dict[str, Any]:
    quiet = document.quiet_hours
    return {
        "channels": dict(document.channels),
        "quiet_hours": (
            {
                "start": quiet.start.strftime("%H:%M"),
                "end": quiet.end.strftime("%H:%M"),
                "timezone": quiet.timezone,
            }
            if quiet
            else None
        ),
        "notification_types": {
            key: dict(value) for key, value in document.notification_types.items()
        },
        "language": document.language,
    }


class SuppressionCollectionView(APIView):
    required_scopes = {"GET": Scope.MANAGE, "POST": Scope.MANAGE}

    @extend_schema(
        operation_id="list_suppressions",
        summary="Suppressed addresses, newest first",
        parameters=[SuppressionQuerySerializer],
        responses={200: SuppressionSerializer(many=True), **error_responses()},
        tags=["suppressions"],
    )
    def get(self, request: Request) -> Response:
        query = SuppressionQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        params = query.validated_data
        rows = selectors.suppressions(
            tenant=tenant_of(request), channel=params.get("channel"), address=params.get("address")
        )
        offset = (params["page"] - 1) * params["limit"]
        page = rows[offset : offset + params["limit"]]
        return Response(SuppressionSerializer(page, many=True).data)

    @extend_schema(
        operation_id="create_suppression",
        summary="Suppress an address on a channel",
        description="Creates the suppression (201), or updates an existing one's reason (200).",
        request=SuppressionSerializer,
        responses={200: SuppressionSerializer, 201: SuppressionSerializer, **error_responses()},
        examples=[
            OpenApiExample(
                "manual",
                value={"channel": "email", "address": "ada@example.com", "reason": "manual"},
                request_only=True,
            )
        ],
        tags=["suppressions"],
    )
    def post(self, request: Request) -> Response:
        serializer = SuppressionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        suppression, created = services.upsert_suppression(
            tenant=tenant_of(request), **serializer.validated_data
        )
        return Response(
            SuppressionSerializer(suppression).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class SuppressionDetailView(APIView):
    required_scopes = {"GET": Scope.MANAGE, "DELETE": Scope.MANAGE}

    def _get(self, request: Request, suppression_id: int) -> Suppression:
        suppression = Suppression.objects.filter(
            tenant=tenant_of(request), pk=suppression_id
        ).first()
        if suppression is None:
            raise NotFound("Suppression not found.")
        return suppression

    @extend_schema(
        operation_id="get_suppression",
        summary="One suppression",
        responses={200: SuppressionSerializer, **error_responses(404)},
        tags=["suppressions"],
    )
    def get(self, request: Request, suppression_id: int) -> Response:
        return Response(SuppressionSerializer(self._get(request, suppression_id)).data)

    @extend_schema(
        operation_id="delete_suppression",
        summary="Lift a suppression",
        responses={204: None, **error_responses(404)},
        tags=["suppressions"],
    )
    def delete(self, request: Request, suppression_id: int) -> Response:
        services.remove_suppression(suppression=self._get(request, suppression_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
