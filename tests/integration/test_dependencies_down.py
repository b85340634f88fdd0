"""The web app with a dependency unreachable: fail fast, in the API's error shape.

A real server process is started with a dependency's URL pointing at a closed port, so the
failure is a genuine refused connection, not a mock. The machine's shared services are never
touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.brokers import free_port

ROOT = Path(__file__).resolve().parents[2]


def _request(url: str, *, method: str = "GET", body: dict | None = None) -> tuple[int, dict, dict]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={
            "Authorization": "Bearer ntf_abcdef123456_secret",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


@pytest.fixture
def server_with(request: pytest.FixtureRequest) -> Iterator[str]:
    """Start the web app (gunicorn, as in production) with ``request.param`` overriding its
    environment; yield its URL."""
    port = free_port()
    env = {**os.environ, **request.param, "DJANGO_SETTINGS_MODULE": "notifier.settings"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "notifier.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--threads",
            "4",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/healthz", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


POSTGRES_DOWN = {"DATABASE_URL": f"postgres://postgres@127.0.0.1:{free_port()}/notifier"}
BROKER_DOWN = {"CELERY_BROKER_URL": f"amqp://guest:guest@127.0.0.1:{free_port()}//"}
REDIS_DOWN = {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}


@pytest.mark.parametrize("server_with", [POSTGRES_DOWN], indirect=True)
def test_postgres_down_answers_503_with_retry_after_fast_never_202(server_with: str) -> None:
    body = {"user_ids": ["u1"], "notification_type": "order_shipped"}
    for method, path, payload in [
        ("POST", "/api/v1/notifications", body),
        ("GET", "/api/v1/users/u1/notifications", None),
    ]:
        # when
        started = time.monotonic()
        status, headers, answer = _request(server_with + path, method=method, body=payload)
        elapsed = time.monotonic() - started

        # then
        assert status == 503
        assert answer["code"] == "database_unavailable"
        assert int(headers["Retry-After"]) > 0
        assert elapsed < 5


@pytest.mark.parametrize("server_with", [POSTGRES_DOWN], indirect=True)
def test_liveness_stays_up_while_readiness_reports_postgres(server_with: str) -> None:
    assert _request(server_with + "/healthz")[0] == 200

    status, _, report = _request(server_with + "/readyz")

    assert status == 503
    assert report["checks"]["postgresql"]["status"] == "unavailable"
    assert report["checks"]["redis"]["status"] == "ok"
    assert report["checks"]["rabbitmq"]["status"] == "ok"


@pytest.mark.parametrize(
    ("server_with", "down"),
    [(BROKER_DOWN, "rabbitmq"), (REDIS_DOWN, "redis")],
    indirect=["server_with"],
)
def test_readiness_names_the_unreachable_service(server_with: str, down: str) -> None:
    status, _, report = _request(server_with + "/readyz")

    assert status == 503
    assert {name for name, check in report["checks"].items() if check["status"] != "ok"} == {down}


@pytest.mark.parametrize(
    ("env", "down", "hint"),
    [
        (REDIS_DOWN, "redis", "redis-server"),
        (BROKER_DOWN, "rabbitmq", "rabbitmq-server"),
        (POSTGRES_DOWN, "postgresql", "pg_ctlcluster"),
    ],
)
def test_check_services_says_which_service_is_down_and_how_to_start_it(
    env: dict[str, str], down: str, hint: str
) -> None:
    # when `make run` checks its services with one of them unreachable
    result = subprocess.run(
        [sys.executable, "manage.py", "check_services"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )

    # then it fails, naming that service and the command that starts it
    assert result.returncode != 0
    assert f"{down} is unreachable" in result.stderr
    assert hint in result.stderr
