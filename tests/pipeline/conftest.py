"""Fixtures for pipeline tests: a real Celery worker subprocess on the private broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

import celeryconfig
from notifier.content.models import NotificationType
from notifier.core.enums import Channel
from notifier.recipients.models import Recipient
from notifier.recipients.services import register_device
from notifier.tenancy.models import Tenant
from tests.brokers import PrivateRabbitMQ
from tests.factories import NotificationTypeFactory, RecipientFactory, published_template

ROOT = Path(__file__).resolve().parents[2]
ALL_QUEUES = ",".join(queue.name for queue in celeryconfig.task_queues)


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path
    sent_file: Path

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children) at once."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def sent(self) -> list[dict[str, Any]]:
        """Every message the sandbox provider accepted, in the order it accepted them."""
        if not self.sent_file.exists():
            return []
        return [json.loads(line) for line in self.sent_file.read_text().splitlines() if line]


def _database_url() -> str:
    db = connection.settings_dict
    user = db.get("USER") or "postgres"
    return (
        f"postgres://{user}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"
    )


@pytest.fixture
def start_worker(
    rabbitmq: PrivateRabbitMQ, transactional_db: None, tmp_path: Path
) -> Iterator[Callable[..., Worker]]:
    """Start workers consuming every queue, on the test database, all recording their sends
    to one file; each is stopped at the end of the test (if a test has not killed it)."""
    started: list[subprocess.Popen[bytes]] = []

    def start(
        queues: str = ALL_QUEUES, concurrency: int = 2, loglevel: str = "INFO", **extra_env: str
    ) -> Worker:
        log = tmp_path / f"worker-{len(started)}.log"
        env = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "CELERY_BROKER_URL": rabbitmq.url,
            "NOTIFIER_SANDBOX_RECORD_TO": str(tmp_path / "sent.jsonl"),
            "NOTIFIER_SANDBOX_ATTEMPTS_TO": str(tmp_path / "attempts.jsonl"),
            "NOTIFIER_RETRY_BASE": "0.05",
            **extra_env,
        }
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    sys.executable, "-m", "celery", "-A", "notifier", "worker",
                    "--queues", queues, "--concurrency", str(concurrency), "--pool", "prefork",
                    "--hostname", f"test-{uuid.uuid4().hex[:8]}@%h",
                    "--without-gossip", "--without-mingle", "--loglevel", loglevel,
                ],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        started.append(process)
        deadline = time.monotonic() + 60
        while b" ready." not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                _stop(process)
                raise RuntimeError("worker did not start:\n" + log.read_text()[-3000:])
            time.sleep(0.2)
        return Worker(process=process, log=log, sent_file=tmp_path / "sent.jsonl")

    try:
        yield start
    finally:
        for process in started:
            _stop(process)


@pytest.fixture
def worker(start_worker: Callable[..., Worker]) -> Worker:
    """One worker consuming every queue."""
    return start_worker()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def wait_for(condition: Any, timeout: float = 30, interval: float = 0.1) -> Any:
    """Poll ``condition()`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@pytest.fixture
def alerts(tenant: Tenant) -> NotificationType:
    """A type with a published template on every channel, needing ``code``."""
    notification_type = NotificationTypeFactory.create(
        tenant=tenant, key="alert", default_channels=[Channel.EMAIL]
    )
    for channel in Channel.values:
        published_template(
            notification_type,
            channel=channel,
            subject="Alert {{ code }}",
            body="Your code is {{ code }}",
            variables=("code",),
        )
    return notification_type


@pytest.fixture
def ada(tenant: Tenant) -> Recipient:
    recipient = RecipientFactory.create(
        tenant=tenant, user_id="ada", email="ada@example.com", phone="+14155550123"
    )
    register_device(recipient=recipient, token="device-token-ada", platform="ios")
    return recipient


def send(client: APIClient, **body: object) -> str:
    payload = {"user_ids": ["ada"], "notification_type": "alert", "template_vars": {"code": "42"}}
    response = client.post("/api/v1/notifications", payload | body, format="json")
    assert response.status_code == 202, response.json()
    return str(response.json()["notification_id"])


def statuses(client: APIClient, notification_id: str) -> dict[str, list[str]]:
    body = client.get(f"/api/v1/notifications/{notification_id}").json()
    return {
        channel: [d["status"] for d in deliveries]
        for user in body["users"]
        for channel, deliveries in user["channels"].items()
    }


def accept_and_plan(
    tenant: Tenant, *, user_ids: list[str], channels: list[str], code: str = "7"
) -> str:
    """Accept an ``alert`` and plan it in this process (no broker, no worker); its id."""
    from django.utils import timezone

    from notifier.notifications import planning, services

    outcome = services.accept_notification(
        tenant=tenant,
        request=services.SendRequest(
            user_ids=user_ids, notification_type="alert", channels=channels,
            template_vars={"code": code},
        ),
    )  # fmt: skip
    notification_id = outcome.body["notification_id"]
    planning.plan_notification(notification_id=notification_id, now=timezone.now(), batch_size=50)
    return str(notification_id)


SANDBOX = "channels.providers.sandbox.SandboxProvider"


@pytest.fixture
def configure_providers() -> Iterator[Callable[[dict[str, Any]], None]]:
    """Configure the process's registry for one test; the settings' providers come back after."""
    from django.conf import settings

    from channels.registry import registry

    yield registry.configure
    registry.configure(settings.NOTIFIER_PROVIDERS)


def email_chain(*backends: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """Email through in-process sandbox providers: the first the default, the rest its
    failover chain, each with its OPTIONS."""
    return {
        "email": {
            "DEFAULT": backends[0][0],
            "FAILOVER": [name for name, _ in backends[1:]],
            "BACKENDS": {
                name: {"CLASS": SANDBOX, "OPTIONS": options} for name, options in backends
            },
        }
    }
