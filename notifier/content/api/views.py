"""Notification types and templates APIs (scope ``manage``). Thin: parse, one call, render."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from notifier.content import selectors, services
from notifier.content.api.serializers import (
    NotificationTypeSerializer,
    PreviewRequestSerializer,
    RenderedMessageSerializer,
    TemplateContentSerializer,
    TemplateQuerySerializer,
    TemplateSerializer,
    TemplateVersionSerializer,
)
from notifier.content.models import NotificationType, Template
from notifier.content.rendering import RenderedMessage, TemplateRejected, TemplateRenderError
from notifier.core.errors import BusinessRuleViolation, Conflict, NotFound
from notifier.core.openapi import error_responses
from notifier.tenancy.auth import tenant_of
from notifier.tenancy.models import Scope

MANAGE = dict.fromkeys(("GET", "POST", "PUT", "PATCH", "DELETE"), Scope.MANAGE)

TEMPLATE_EXAMPLE = {
    "notification_type": "order_shipped",
    "channel": "email",
    "locale": "en",
    "variant": "default",
    "subject": "Order {{ order_id }} has shipped",
    "body": "Hi! Order {{ order_id }} is on its way with {{ carrier }}.",
    "html": "<p>Order <b>{{ order_id }}</b> is on its way with {{ carrier }}.</p>",
    "variables": ["order_id", "carrier"],
    "sample_vars": {"order_id": "1042", "carrier": "UPS"},
}


def _rejected(exc: TemplateRejected) -> serializers.ValidationError:
    return serializers.ValidationError(exc.fields)


def _type(request: Request, key: str) -> NotificationType:
    notification_type = NotificationType.objects.filter(tenant=tenant_of(request), key=key).first()
    if notification_type is None:
        raise NotFound("Notification type not found.")
    return notification_type


def _template(request: Request, template_id: int) -> Template:
    template = (
        Template.objects.select_related("notification_type", "published_version")
        .filter(tenant=tenant_of(request), pk=template_id, archived_at__isnull=True)
        .first()
    )
    if template is None:
        raise NotFound("Template not found.")
    return template


def _template_data(template: Template) -> dict[str, Any]:
    data = dict(TemplateContentSerializer(template).data)
    data["notification_type"] = template.notification_type.key
    return data


def _type_settings(data: dict[str, Any]) -> dict[str, Any]:
    fields = dict(data)
    return {"key": fields.pop("key"), "settings": services.TypeSettings(**fields)}


def _rendered(message: RenderedMessage) -> dict[str, str]:
    return {"subject": message.subject, "body": message.body, "html": message.html}


class NotificationTypeCollectionView(APIView):
    required_scopes = MANAGE

    @extend_schema(
        operation_id="list_notification_types",
        summary="Notification types",
        responses={200: NotificationTypeSerializer(many=True), **error_responses()},
        tags=["notification types"],
    )
    def get(self, request: Request) -> Response:
        types = NotificationType.objects.filter(tenant=tenant_of(request)).order_by("key")
        return Response(NotificationTypeSerializer(types, many=True).data)

    @extend_schema(
        operation_id="create_notification_type",
        summary="Create a notification type",
        request=NotificationTypeSerializer,
        responses={201: NotificationTypeSerializer, **error_responses(409)},
        examples=[
            OpenApiExample(
                "order shipped",
                value={
                    "key": "order_shipped",
                    "category": "transactional",
                    "default_priority": "high",
                    "default_channels": ["push", "email"],
                },
                request_only=True,
            )
        ],
        tags=["notification types"],
    )
    def post(self, request: Request) -> Response:
        serializer = NotificationTypeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            notification_type = services.create_notification_type(
                tenant=tenant_of(request), **_type_settings(serializer.validated_data)
            )
        except IntegrityError as exc:
            raise Conflict(
                "A notification type with this key exists.", code="already_exists"
            ) from exc
        return Response(
            NotificationTypeSerializer(notification_type).data, status=status.HTTP_201_CREATED
        )


class NotificationTypeDetailView(APIView):
    required_scopes = MANAGE

    @extend_schema(
        operation_id="get_notification_type",
        summary="One notification type",
        responses={200: NotificationTypeSerializer, **error_responses(404)},
        tags=["notification types"],
    )
    def get(self, request: Request, key: str) -> Response:
        return Response(NotificationTypeSerializer(_type(request, key)).data)

    @extend_schema(
        operation_id="replace_notification_type",
        summary="Replace a notification type's settings",
        request=NotificationTypeSerializer,
        responses={200: NotificationTypeSerializer, **error_responses(404)},
        tags=["notification types"],
    )
    def put(self, request: Request, key: str) -> Response:
        existing = _type(request, key)
        serializer = NotificationTypeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if serializer.validated_data["key"] != existing.key:
            raise serializers.ValidationError({"key": ["The key cannot be changed."]})
        notification_type = services.upsert_notification_type(
            tenant=tenant_of(request), **_type_settings(serializer.validated_data)
        )
        return Response(NotificationTypeSerializer(notification_type).data)


class TemplateCollectionView(APIView):
    required_scopes = MANAGE

    @extend_schema(
        operation_id="list_templates",
        summary="Templates",
        parameters=[TemplateQuerySerializer],
        responses={200: TemplateSerializer(many=True), **error_responses()},
        tags=["templates"],
    )
    def get(self, request: Request) -> Response:
        query = TemplateQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        params = query.validated_data
        templates = selectors.templates(
            tenant=tenant_of(request),
            notification_type=params.get("notification_type"),
            channel=params.get("channel"),
        )
        offset = (params["page"] - 1) * params["limit"]
        page = templates[offset : offset + params["limit"]]
        return Response([_template_data(t) for t in page])

    @extend_schema(
        operation_id="create_template",
        summary="Create a template (a draft; publish it to use it)",
        description=(
            "Templates are Jinja2, rendered in a sandbox. Saving refuses templates that use "
            "undeclared variables, `_`-prefixed attributes, includes, macros, `**` or filters "
            "outside the allowlist."
        ),
        request=TemplateSerializer,
        responses={201: TemplateSerializer, **error_responses(409, 422)},
        examples=[OpenApiExample("order shipped email", value=TEMPLATE_EXAMPLE, request_only=True)],
        tags=["templates"],
    )
    def post(self, request: Request) -> Response:
        serializer = TemplateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        tenant = tenant_of(request)
        notification_type = NotificationType.objects.filter(
            tenant=tenant, key=data.pop("notification_type")
        ).first()
        if notification_type is None:
            raise BusinessRuleViolation(
                "Unknown notification_type; create it first.", code="unknown_notification_type"
            )
        try:
            template = services.create_template(
                tenant=tenant, notification_type=notification_type, **data
            )
        except TemplateRejected as exc:
            raise _rejected(exc) from exc
        except IntegrityError as exc:
            raise Conflict(
                "A template for this type, channel, locale and variant exists; edit it instead.",
                code="already_exists",
            ) from exc
        return Response(_template_data(template), status=status.HTTP_201_CREATED)


class TemplateDetailView(APIView):
    required_scopes = MANAGE

    @extend_schema(
        operation_id="get_template",
        summary="One template (its draft and published version number)",
        responses={200: TemplateSerializer, **error_responses(404)},
        tags=["templates"],
    )
    def get(self, request: Request, template_id: int) -> Response:
        return Response(_template_data(_template(request, template_id)))

    @extend_schema(
        operation_id="update_template",
        summary="Edit a template's draft",
        description="Only the draft changes; sends keep using the published version.",
        request=TemplateContentSerializer,
        responses={200: TemplateSerializer, **error_responses(404)},
        tags=["templates"],
    )
    def patch(self, request: Request, template_id: int) -> Response:
        template = _template(request, template_id)
        serializer = TemplateContentSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        try:
            template = services.update_template(
                template=template, changes=serializer.validated_data
            )
        except TemplateRejected as exc:
            raise _rejected(exc) from exc
        return Response(_template_data(template))

    @extend_schema(
        operation_id="delete_template",
        summary="Archive a template",
        description="Published versions stay, since deliveries record the version they used.",
        responses={204: None, **error_responses(404)},
        tags=["templates"],
    )
    def delete(self, request: Request, template_id: int) -> Response:
        services.archive_template(template=_template(request, template_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class TemplatePublishView(APIView):
    required_scopes = MANAGE

    @extend_schema(
        operation_id="publish_template",
        summary="Publish the draft as a new version",
        description="The draft must render with its sample_vars, or publishing answers 422.",
        request=None,
        responses={201: TemplateVersionSerializer, **error_responses(404, 422)},
        tags=["templates"],
    )
    def post(self, request: Request, template_id: int) -> Response:
        template = _template(request, template_id)
        try:
            version = services.publish_template(template=template)
        except TemplateRejected as exc:
            raise _rejected(exc) from exc
        except TemplateRenderError as exc:
            raise BusinessRuleViolation(
                f"The template failed its test render: {exc}", code="template_render_failed"
            ) from exc
        return Response(TemplateVersionSerializer(version).data, status=status.HTTP_201_CREATED)


class TemplatePreviewView(APIView):
    required_scopes = MANAGE

    @extend_schema(
        operation_id="preview_template",
        summary="Render the draft with sample or given variables",
        request=PreviewRequestSerializer,
        responses={200: RenderedMessageSerializer, **error_responses(404, 422)},
        tags=["templates"],
    )
    def post(self, request: Request, template_id: int) -> Response:
        template = _template(request, template_id)
        serializer = PreviewRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            message = services.preview_template(
                template=template, variables=serializer.validated_data.get("template_vars")
            )
        except TemplateRenderError as exc:
            raise BusinessRuleViolation(
                f"The template cannot be rendered: {exc}", code="template_render_failed"
            ) from exc
        return Response(_rendered(message))


class TemplateVersionsView(APIView):
    required_scopes = MANAGE

    @extend_schema(
        operation_id="list_template_versions",
        summary="Published versions of a template, newest first",
        responses={200: TemplateVersionSerializer(many=True), **error_responses(404)},
        tags=["templates"],
    )
    def get(self, request: Request, template_id: int) -> Response:
        template = _template(request, template_id)
        return Response(TemplateVersionSerializer(template.versions.all(), many=True).data)
