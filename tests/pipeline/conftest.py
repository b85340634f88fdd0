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

import celeryconfig
from tests.brokers import PrivateRabbitMQ

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

    def start(queues: str = ALL_QUEUES, concurrency: int = 2, **extra_env: str) -> Worker:
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
                    "--without-gossip", "--without-mingle", "--loglevel", "INFO",
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
