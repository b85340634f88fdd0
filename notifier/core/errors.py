"""The API's error shape and the exception handler that produces it.

Every error answers ``{"code": <stable machine code>, "detail": <human sentence>}``; invalid
fields add ``"fields": {<field>: [<why>, ...]}``. Codes are part of the API contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class ApiError(exceptions.APIException):
    """An error with a stable code. Subclasses fix the status; instances may add headers."""

    status_code: int = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_request"
    default_detail = "The request is invalid."

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.default_detail, code or self.default_code)
        self.code = code or self.default_code
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})


class BusinessRuleViolation(ApiError):
    """Valid syntax, but the request cannot be carried out (422)."""

    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "unprocessable"
    default_detail = "The request is well-formed but cannot be processed."


class NotFound(ApiError):
    status_code = status.HTTP_404_NOT_FOUND
    default_code = "not_found"
    default_detail = "Not found."


class Conflict(ApiError):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"
    default_detail = "The request conflicts with another one in progress."


class PayloadTooLarge(ApiError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"
    default_detail = "The request body is too large."


class ServiceUnavailable(ApiError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "service_unavailable"
    default_detail = "The service is temporarily unavailable; retry later."


_CODES: dict[type[exceptions.APIException], str] = {
    exceptions.ParseError: "malformed_json",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "invalid_api_key",
    exceptions.PermissionDenied: "insufficient_scope",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
    exceptions.ValidationError: "invalid_fields",
}


def error_body(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "detail": detail, **extra}


def _stringify(errors: Any) -> Any:
    if isinstance(errors, Mapping):
        return {str(key): _stringify(value) for key, value in errors.items()}
    if isinstance(errors, list):
        return [_stringify(item) for item in errors]
    return str(errors)


def _validation_body(exc: exceptions.ValidationError) -> dict[str, Any]:
    detail = exc.detail
    if isinstance(detail, Mapping):
        fields = _stringify(detail)
        non_field = fields.pop("non_field_errors", None)
        parts = [f"{name}: {'; '.join(_flatten(msgs))}" for name, msgs in fields.items()]
        if non_field:
            parts.insert(0, "; ".join(_flatten(non_field)))
        body = error_body("invalid_fields", "Invalid request: " + " | ".join(parts) + ".")
        if fields:
            # The documented shape is {field: [why, ...]}: errors of list items and nested
            # objects become "<index or key>: <why>" strings under their top-level field.
            body["fields"] = {name: _field_messages(msgs) for name, msgs in fields.items()}
        return body
    messages = _flatten(_stringify(detail))
    return error_body("invalid_fields", "Invalid request: " + "; ".join(messages) + ".")


def _field_messages(value: Any) -> list[str]:
    if isinstance(value, Mapping):
        return [
            message if key == "non_field_errors" else f"{key}: {message}"
            for key, item in value.items()
            for message in _field_messages(item)
        ]
    if isinstance(value, list):
        return [message for item in value for message in _field_messages(item)]
    return [str(value)]


def _flatten(value: Any) -> list[str]:
    if isinstance(value, Mapping):
        return [f"{k}: {m}" for k, v in value.items() for m in _flatten(v)]
    if isinstance(value, list):
        return [m for item in value for m in _flatten(item)]
    return [str(value).rstrip(".")]


def api_exception_handler(exc: Exception, context: Mapping[str, Any]) -> Response | None:
    """DRF exception handler that renders every error in the documented shape."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, dict(context))
    if response is None:
        return None  # unexpected: Django's 500 handling (and error reporting) takes over

    if isinstance(exc, ApiError):
        response.data = error_body(exc.code, str(exc.detail), **exc.extra)
        for name, value in exc.headers.items():
            response[name] = value
    elif isinstance(exc, exceptions.ValidationError):
        response.data = _validation_body(exc)
    elif isinstance(exc, exceptions.APIException):
        code = _CODES.get(type(exc)) or next(
            (c for cls, c in _CODES.items() if isinstance(exc, cls)), "error"
        )
        response.data = error_body(code, str(exc.detail))
    return response


def json_error(status_code: int, code: str, detail: str, **headers: str) -> JsonResponse:
    """A plain Django response in the API's error shape, for middleware and URL handlers."""
    response = JsonResponse(error_body(code, detail), status=status_code)
    for name, value in headers.items():
        response[name] = value
    return response
