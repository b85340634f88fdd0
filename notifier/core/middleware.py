"""Middleware that keeps failures inside the API's contract."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError, connections
from django.http import HttpRequest, HttpResponse

from notifier.core.errors import json_error

logger = logging.getLogger(__name__)


class RequestBodyLimitMiddleware:
    """Answer 413 for a body larger than ``NOTIFIER_MAX_BODY_BYTES`` before anything reads it.

    DRF reads the request stream directly, so Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE`` check
    (which guards ``request.body``) never runs for API requests.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.NOTIFIER_MAX_BODY_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return json_error(400, "invalid_content_length", "Content-Length is not a number.")
        if length > limit:
            return json_error(
                413, "payload_too_large", f"The request body exceeds the limit of {limit} bytes."
            )
        return self.get_response(request)


class DatabaseUnavailableMiddleware:
    """Turn "PostgreSQL is unreachable" into 503 + Retry-After instead of a 500.

    Nothing is accepted without a commit, so a client told 503 knows to retry; the connect
    timeout in settings keeps this answer fast.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not _is_connection_failure(exception):
            return None
        logger.warning("database unavailable: %s", type(exception).__name__)
        for connection in connections.all(initialized_only=True):
            connection.close_if_unusable_or_obsolete()
        return json_error(
            503,
            "database_unavailable",
            "The database is unavailable; nothing was accepted. Retry later.",
            **{"Retry-After": str(settings.NOTIFIER_DB_RETRY_AFTER)},
        )


def _is_connection_failure(exc: BaseException) -> bool:
    # OperationalError covers refused connections, timeouts and a server that went away;
    # InterfaceError a connection already closed under us. Both mean "retry later".
    return isinstance(exc, OperationalError | InterfaceError)
