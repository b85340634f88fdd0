"""OpenAPI helpers: the documented error responses of every endpoint, and schema extensions
that describe the rules of our strict serializers, so the schema matches what the views accept.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import (
    OpenApiSerializerExtension,
    OpenApiSerializerFieldExtension,
)
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse

from notifier.core.serializers import ErrorSerializer
from notifier.core.validation import MAX_USER_ID_LENGTH

# ECMA 262 regexes (what OpenAPI uses), also valid in Python's ``re``. Whitespace is spelled
# out because ``\s`` differs between regex engines; this is the set Python's ``str.strip`` removes.
# "+", not "*": drf-spectacular documents a blank-allowed field as oneOf [this, ""], and ""
# matching both branches would make it invalid.
NO_CONTROL_CHARACTERS = r"^[^\u0000-\u001f\u007f]+$"
_SPACES = r"\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_EDGE = rf"[^\u0000-\u001f\u007f{_SPACES}]"
USER_ID_PATTERN = rf"^{_EDGE}([^\u0000-\u001f\u007f]*{_EDGE})?$"
# Printable ASCII; surrounding spaces are stripped (``channels.push.normalize_token``).
PUSH_TOKEN_PATTERN = rf"^[{_SPACES}]*[!-~]+[{_SPACES}]*$"

USER_ID_PARAMETER = OpenApiParameter(
    "user_id",
    {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_USER_ID_LENGTH,
        "pattern": USER_ID_PATTERN,
    },
    OpenApiParameter.PATH,
    description="Your id of the user: no control characters or surrounding whitespace.",
)

_DESCRIPTIONS = {
    400: "Malformed JSON, or invalid or unknown fields (`fields` says which and why).",
    401: "Missing, invalid or revoked API key.",
    403: "The API key lacks the scope this endpoint requires.",
    404: "Unknown id, or an id that belongs to another tenant.",
    409: "A request with the same idempotency key is still in flight; retry shortly.",
    413: "The request body is too large.",
    422: "Valid syntax, but the request cannot be carried out.",
    429: "The tenant's API quota is spent; retry after `Retry-After` seconds.",
    503: "PostgreSQL is unavailable; nothing was accepted. Retry after `Retry-After` seconds.",
}


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """The error responses ``statuses`` plus the ones every authenticated endpoint has.

    413 and 429 are among them: the body limit and the tenant's quota apply to every request.
    """
    codes = sorted({400, 401, 403, 413, 429, 503, *statuses})
    return {
        status: OpenApiResponse(
            response=ErrorSerializer,
            description=_DESCRIPTIONS[status],
            examples=[
                OpenApiExample(
                    f"error {status}",
                    value={"code": "invalid_fields", "detail": "Invalid request: ..."}
                    if status == 400
                    else {"code": "not_found", "detail": "Not found."}
                    if status == 404
                    else {"code": "...", "detail": _DESCRIPTIONS[status]},
                    response_only=True,
                    status_codes=[str(status)],
                )
            ],
        )
        for status in codes
    }


class StrictSerializerScheme(OpenApiSerializerExtension):  # type: ignore[no-untyped-call]
    """Request bodies of a ``StrictSerializer`` refuse unknown fields: say so in the schema."""

    target_class = "notifier.core.serializers.StrictSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_serializer(
            self.target, direction, bypass_extensions=True
        )
        if direction == "request":
            schema["additionalProperties"] = False
        return schema


class SafeCharFieldScheme(OpenApiSerializerFieldExtension):  # type: ignore[no-untyped-call]
    """A ``SafeCharField`` refuses control characters: say so with a pattern."""

    target_class = "notifier.core.serializers.SafeCharField"
    match_subclasses = True

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_serializer_field(
            self.target, direction, bypass_extensions=True
        )
        if direction == "request":
            schema.setdefault("pattern", NO_CONTROL_CHARACTERS)
        return schema


class UniqueListFieldScheme(OpenApiSerializerFieldExtension):  # type: ignore[no-untyped-call]
    """A ``UniqueListField`` refuses repeated items: say so with ``uniqueItems``."""

    target_class = "notifier.core.serializers.UniqueListField"
    match_subclasses = True

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_serializer_field(
            self.target, direction, bypass_extensions=True
        )
        schema["uniqueItems"] = True
        return schema
