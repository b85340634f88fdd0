"""Liveness and readiness probes.

``/healthz`` says the process serves requests and touches nothing else, so an orchestrator
never restarts a healthy web process because a dependency is down. ``/readyz`` checks each
dependency with a short timeout and reports each one, and each provider's circuit breaker:
an open breaker is information, not unreadiness (the pipeline fails over or waits).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET
from kombu import Connection

from notifier.notifications.breakers import breakers, configured_providers


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_broker() -> None:
    timeout = settings.NOTIFIER_HEALTH_TIMEOUT
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=timeout) as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)


def _check_redis() -> None:
    timeout = settings.NOTIFIER_HEALTH_TIMEOUT
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=timeout, socket_timeout=timeout
    )
    try:
        client.ping()
    finally:
        client.close()


CHECKS: dict[str, Callable[[], None]] = {
    "postgresql": _check_database,
    "rabbitmq": _check_broker,
    "redis": _check_redis,
}


def _providers() -> dict[str, dict[str, object]]:
    """Each configured provider's breaker (Redis, or this process's view without it)."""
    return {
        status.provider: {
            "breaker": str(status.state),
            "failures": status.failures,
            "retry_at": status.retry_at,
            "source": status.source,
        }
        for status in breakers().statuses(configured_providers())
    }


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    report: dict[str, dict[str, object]] = {}
    for name, check in CHECKS.items():
        started = time.monotonic()
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"; report it
            report[name] = {"status": "unavailable", "error": type(exc).__name__}
        else:
            report[name] = {"status": "ok"}
        report[name]["latency_ms"] = round((time.monotonic() - started) * 1000, 1)
    ready = all(item["status"] == "ok" for item in report.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": report, "providers": _providers()},
        status=200 if ready else 503,
    )
