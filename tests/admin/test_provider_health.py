"""The admin's "Provider health" page: each provider's breaker and rate limit, and the reset
action, for staff who may change deliveries, with CSRF."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from notifier.notifications.breakers import BreakerState, breakers
from notifier.notifications.throttle import throttle
from tests.provider_health import isolated_provider_health

PAGE = "/admin/provider-health/"
RESET = "/admin/provider-health/reset/"


@pytest.fixture(autouse=True)
def _own_breakers(settings: Any) -> Iterator[None]:
    with isolated_provider_health(settings):
        yield


def open_breaker(provider: str) -> None:
    for _ in range(5):
        assert breakers().allow(provider)
        breakers().record(provider, ok=False)
    assert breakers().status(provider).state == BreakerState.OPEN


def staff_client(django_user_model: Any, *permissions: str) -> Client:
    user = django_user_model.objects.create_user("operator", password="x", is_staff=True)
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
class TestPage:
    def test_lists_every_provider_with_its_breaker_and_rate_limit(
        self, admin_client: Client
    ) -> None:
        # given twilio's breaker open and a 429 that halved its rate
        open_breaker("twilio")
        throttle().penalize("twilio", retry_after=None)

        # when
        response = admin_client.get(PAGE)

        # then
        assert response.status_code == 200
        rows = {row.breaker.provider: row for row in response.context["rows"]}
        assert set(rows) == {"sandbox", "twilio"}
        assert rows["twilio"].breaker.state == BreakerState.OPEN
        assert rows["twilio"].retry_at is not None
        assert rows["sandbox"].breaker.state == BreakerState.CLOSED
        page = response.content.decode()
        assert "<strong>open</strong>" in page
        assert "100 / 50 (burst 100)" in page
        assert page.count('value="Reset breaker"') == 2

    def test_is_linked_from_the_admin_index(self, admin_client: Client) -> None:
        response = admin_client.get(reverse("admin:index"))

        assert PAGE in response.content.decode()

    def test_staff_without_the_right_to_change_deliveries_see_no_reset(
        self, django_user_model: Any
    ) -> None:
        response = staff_client(django_user_model).get(PAGE)

        assert response.status_code == 200
        assert "Reset breaker" not in response.content.decode()

    def test_anonymous_visitors_are_sent_to_log_in(self) -> None:
        response = Client().get(PAGE)

        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.django_db
class TestReset:
    def test_reset_closes_the_breaker(self, admin_client: Client) -> None:
        # given
        open_breaker("twilio")

        # when
        response = admin_client.post(RESET, {"provider": "twilio"})

        # then
        assert response.status_code == 302
        assert response["Location"] == PAGE
        assert breakers().status("twilio").state == BreakerState.CLOSED
        assert [str(m) for m in get_messages(response.wsgi_request)] == [
            "The breaker of twilio was reset: it is closed."
        ]

    def test_needs_the_right_to_change_deliveries(self, django_user_model: Any) -> None:
        open_breaker("twilio")

        refused = staff_client(django_user_model).post(RESET, {"provider": "twilio"})

        assert refused.status_code == 403
        assert breakers().status("twilio").state == BreakerState.OPEN

    def test_staff_with_that_right_may_reset(self, django_user_model: Any) -> None:
        open_breaker("twilio")

        client = staff_client(django_user_model, "change_delivery")
        response = client.post(RESET, {"provider": "twilio"})

        assert response.status_code == 302
        assert breakers().status("twilio").state == BreakerState.CLOSED

    def test_needs_the_csrf_token(self, admin_user: Any) -> None:
        # given a client that enforces CSRF like a browser session would
        open_breaker("twilio")
        client = Client(enforce_csrf_checks=True)
        client.force_login(admin_user)

        # when
        response = client.post(RESET, {"provider": "twilio"})

        # then
        assert response.status_code == 403
        assert breakers().status("twilio").state == BreakerState.OPEN

    def test_only_post(self, admin_client: Client) -> None:
        assert admin_client.get(RESET).status_code == 405

    def test_an_unknown_provider_is_refused(self, admin_client: Client) -> None:
        response = admin_client.post(RESET, {"provider": "nope"})

        assert response.status_code == 302
        assert [str(m) for m in get_messages(response.wsgi_request)] == ["No such provider."]
