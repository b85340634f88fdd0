"""OpenAPI helpers: the documented error responses of every endpoint."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse

from notifier.core.serializers import ErrorSerializer

_DESCRIPTIONS = {
    400: "Malformed JSON, or invalid or unknown fields (`fields` says which and why).",
    401: "Missing, invalid or revoked API key.",
    403: "The API key lacks the scope this endpoint requires.",
    404: "Unknown id, or an id that belongs to another tenant.",
    409: "A request with the same idempotency key is still in flight; retry shortly.",
    413: "The request body is too large.",
    422: "Valid syntax, but the request cannot be carried out.",
    503: "PostgreSQL is unavailable; nothing was accepted. Retry after `Retry-After` seconds.",
}


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """The error responses ``statuses`` plus the ones every authenticated endpoint has."""
    codes = sorted({400, 401, 403, 503, *statuses})
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
