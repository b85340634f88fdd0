"""Liveness and readiness probes, as an orchestrator sees them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from notifier.notifications.breakers import breakers
from tests.provider_health import isolated_provider_health

# Nothing listens on port 1; connecting there fails at once.
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"
UNREACHABLE_BROKER = "amqp://guest:guest@127.0.0.1:1//"


# No database mark: pytest-django fails any query made outside one.
class TestLiveness:
    def test_healthz_answers_ok_without_touching_any_dependency(self, settings) -> None:
        # given the broker and Redis are down, and the database is out of bounds
        settings.REDIS_URL = UNREACHABLE_REDIS
        settings.CELERY_BROKER_URL = UNREACHABLE_BROKER

        # when
        response = Client().get("/healthz")

        # then
        assert response.status_code == 200
        assert response["Content-Type"] == "application/json"
        assert response.json() == {"status": "ok"}

    def test_healthz_only_answers_get(self) -> None:
        assert Client().post("/healthz").status_code == 405


@pytest.mark.django_db
class TestReadiness:
    def test_readyz_reports_each_dependency_ok(self) -> None:
        # when
        response = Client().get("/readyz")

        # then
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ok"
        assert set(body["checks"]) == {"postgresql", "rabbitmq", "redis"}
        for check in body["checks"].values():
            assert check["status"] == "ok"
            assert check["latency_ms"] >= 0

    @pytest.mark.parametrize(
        ("setting", "url", "down"),
        [
            ("REDIS_URL", UNREACHABLE_REDIS, "redis"),
            ("CELERY_BROKER_URL", UNREACHABLE_BROKER, "rabbitmq"),
        ],
    )
    def test_readyz_answers_503_naming_the_dependency_that_is_down(
        self, settings, setting: str, url: str, down: str
    ) -> None:
        # given
        setattr(settings, setting, url)
        settings.NOTIFIER_HEALTH_TIMEOUT = 0.5

        # when
        response = Client().get("/readyz")

        # then
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unavailable"
        assert body["checks"][down]["status"] == "unavailable"
        assert body["checks"][down]["error"]
        assert {name for name, c in body["checks"].items() if c["status"] == "ok"} == {
            "postgresql",
            "rabbitmq",
            "redis",
        } - {down}
        # the report names the failure, never the URL and its credentials
        assert "guest" not in response.content.decode()


@pytest.mark.django_db
class TestProviderBreakers:
    @pytest.fixture(autouse=True)
    def _own_breakers(self, settings: Any) -> Iterator[None]:
        with isolated_provider_health(settings):
            yield

    def test_readyz_reports_every_configured_providers_breaker(self) -> None:
        # when
        response = Client().get("/readyz")

        # then sandbox (NOTIFIER_PROVIDERS) and twilio (NOTIFIER_PROVIDER_RATE_LIMITS) are closed
        body = response.json()
        assert set(body["providers"]) == {"sandbox", "twilio"}
        assert body["providers"]["twilio"] == {
            "breaker": "closed",
            "failures": 0,
            "retry_at": None,
            "source": "redis",
        }

    def test_an_open_breaker_is_reported_but_leaves_the_service_ready(self) -> None:
        # given twilio failed five times in a row
        for _ in range(5):
            assert breakers().allow("twilio")
            breakers().record("twilio", ok=False)

        # when
        response = Client().get("/readyz")

        # then
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ok"
        twilio = body["providers"]["twilio"]
        assert (twilio["breaker"], twilio["failures"]) == ("open", 5)
        assert twilio["retry_at"] > time.time() + 20
        assert body["providers"]["sandbox"]["breaker"] == "closed"
