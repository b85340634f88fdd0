"""Shared fixtures. Tests run against the real PostgreSQL in a test database of their own."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from rest_framework.test import APIClient

from notifier.content.models import NotificationType
from notifier.core.enums import Channel
from notifier.tenancy.models import Tenant
from tests.brokers import PrivateRabbitMQ
from tests.factories import NotificationTypeFactory, TenantFactory, client_for, published_template


@pytest.fixture(scope="session", autouse=True)
def rabbitmq() -> Iterator[PrivateRabbitMQ]:
    """Every test talks to a private RabbitMQ node, never the machine's shared broker: the
    in-process app, and any subprocess (web, workers) started with ``os.environ``."""
    from django.conf import settings as django_settings

    from notifier.celery import app

    broker = PrivateRabbitMQ()
    broker.start()
    previous = os.environ.get("CELERY_BROKER_URL")
    os.environ["CELERY_BROKER_URL"] = broker.url
    django_settings.CELERY_BROKER_URL = broker.url
    app.conf.update(broker_url=broker.url)
    try:
        yield broker
    finally:
        app.close()
        if previous is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = previous
        broker.stop()


@pytest.fixture(scope="session", autouse=True)
def provider_health_prefixes() -> Iterator[tuple[str, str]]:
    """Circuit breakers and provider rate limits live in the machine's shared Redis: the
    session keeps them under key prefixes of its own (worker subprocesses too, through the
    environment), and deletes its keys at the end."""
    from django.conf import settings as django_settings

    session = uuid.uuid4().hex[:12]
    prefixes = (f"notifier:test:{session}:breaker", f"notifier:test:{session}:throttle")
    for name, prefix in zip(
        ("NOTIFIER_BREAKER_PREFIX", "NOTIFIER_THROTTLE_PREFIX"), prefixes, strict=True
    ):
        os.environ[name] = prefix
        setattr(django_settings, name, prefix)
    yield prefixes
    _delete_keys(django_settings.REDIS_URL, f"notifier:test:{session}:*")


@pytest.fixture(autouse=True)
def _fresh_provider_health(provider_health_prefixes: tuple[str, str]) -> Iterator[None]:
    """Each test starts with every breaker closed and every bucket full: a test that makes
    the sandbox fail on purpose must not open a breaker for the tests after it."""
    from django.conf import settings as django_settings

    from notifier.notifications.breakers import reset_breakers
    from notifier.notifications.throttle import reset_throttle

    yield
    for prefix in provider_health_prefixes:
        _delete_keys(django_settings.REDIS_URL, f"{prefix}*")
    reset_breakers()
    reset_throttle()


@pytest.fixture(autouse=True)
def _process_state_per_test() -> Iterator[None]:
    """Each test starts without what an earlier one left in this process: the API's cached
    keys, types and templates (rolled back with that test's data), and the outbox publisher
    thread (stopped, its connection closed, before the test database goes away)."""
    from notifier.core import localcache
    from notifier.notifications import relay

    localcache.clear_all()
    yield
    relay.stop_background_publisher()
    localcache.clear_all()


def _delete_keys(url: str, pattern: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(pattern):
            client.delete(key)
    finally:
        client.close()


@pytest.fixture(autouse=True)
def _no_default_api_quota(settings: Any) -> None:
    """The suites send hundreds of requests per tenant within seconds; the API quota has tests
    of its own (tests/api/test_quota.py) that set it explicitly."""
    settings.NOTIFIER_API_RATE_LIMIT = None


@pytest.fixture
def tenant(db: None) -> Tenant:
    return TenantFactory.create()


@pytest.fixture
def client(tenant: Tenant) -> APIClient:
    """A client of ``tenant`` with every scope."""
    return client_for(tenant)


@pytest.fixture
def order_shipped(tenant: Tenant) -> NotificationType:
    """A type with published email and push templates needing ``order_id``."""
    notification_type = NotificationTypeFactory.create(
        tenant=tenant, key="order_shipped", default_channels=[Channel.PUSH, Channel.EMAIL]
    )
    for channel in (Channel.EMAIL, Channel.PUSH):
        published_template(
            notification_type,
            channel=channel,
            subject="Order {{ order_id }}",
            body="Order {{ order_id }} shipped",
            variables=("order_id",),
        )
    return notification_type
