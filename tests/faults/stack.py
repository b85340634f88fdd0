"""The whole product on private servers, for fault scenarios (RELIABILITY.md §2).

``Stack`` starts its own PostgreSQL, RabbitMQ and Redis on free ports, the provider sandbox
(in this process; real SDKs reach it over HTTP), then the web app (gunicorn), the outbox relay,
the planner, the senders and beat as separate process groups, each configured through its
environment exactly as in production. A scenario drives load through the API with
:class:`LoadClient`, injects faults (kill, stop, pause a process or a server), then reconciles
the ledgers (:mod:`tests.faults.ledger`). Nothing here touches the machine's shared services.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import psycopg2
import requests
from kombu import Connection

import celeryconfig
from notifier.sandbox.providers import providers_from_connection
from notifier.sandbox.server import SandboxServer
from tests.brokers import PrivatePostgres, PrivateRabbitMQ, PrivateRedis, free_port

ROOT = Path(__file__).resolve().parents[2]
DATABASE = "notifier"
PLANNING_QUEUES = ",".join(q.name for q in celeryconfig.task_queues if "planning" in q.name)
SENDING_QUEUES = ",".join(q.name for q in celeryconfig.task_queues if "planning" not in q.name)
PROVIDER_TIMEOUT = 3.0
LEASE = 5
"""A provider call times out after 3 s; a claim's lease (5 s) outlasts it, as in production."""
# Types from load_demo (email among their channels), and the variables each template needs.
TEMPLATE_VARS: dict[str, Callable[[str], dict[str, str]]] = {
    "order_shipped": lambda key: {"order_id": key, "carrier": "UPS", "eta": "Tuesday"},  # high
    "security_alert": lambda key: {"event": f"Sign-in {key}", "location": "Paris"},  # critical
}


class Process:
    """One of the product's processes, in its own process group, logging to a file."""

    def __init__(self, name: str, command: list[str], env: Mapping[str, str], log: Path) -> None:
        self.name, self.command, self.env, self.log = name, command, dict(env), log
        self.popen: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the whole group (a Celery or gunicorn master and its children)."""
        assert self.popen is not None
        os.killpg(self.popen.pid, signum)

    def children(self) -> list[int]:
        """The pids of the master's children (pool processes, gunicorn workers)."""
        assert self.popen is not None
        path = Path(f"/proc/{self.popen.pid}/task/{self.popen.pid}/children")
        return [int(pid) for pid in path.read_text().split()] if path.exists() else []

    def stop(self, timeout: float = 20) -> None:
        if not self.alive:
            return
        assert self.popen is not None
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.popen.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()


class PrivateServers:
    """PostgreSQL, RabbitMQ and Redis on free ports and the provider sandbox in this process,
    migrated, with the demo tenant and an API key: what the fault stack and the benchmarks
    (``bench/stack.py``) both run the product against. A subclass sets ``base`` (where logs
    and the sandbox's state go) and starts its processes with :meth:`server_env`."""

    base: Path
    postgres: PrivatePostgres
    rabbitmq: PrivateRabbitMQ
    redis: PrivateRedis
    sandbox: SandboxServer
    api_key: str

    def __enter__(self) -> Self:
        """Start (``_start``) in ``base``; whatever started is stopped (``close``) if the start
        fails, and when the block ends."""
        self.base.mkdir(parents=True, exist_ok=True)
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def start_servers(self, *, key_name: str, scopes: tuple[str, ...]) -> None:
        self.postgres = PrivatePostgres()
        self.postgres.start()
        self.postgres.create_database(DATABASE)
        self.rabbitmq = PrivateRabbitMQ()
        self.redis = PrivateRedis()
        self.redis.start()
        self.sandbox = SandboxServer(state_dir=self.base / "sandbox")
        self.sandbox.start()
        rabbit = threading.Thread(target=self.rabbitmq.start)  # boots while we migrate
        rabbit.start()
        self.manage("migrate", "--noinput")
        self.manage("load_demo")
        scope_args = [arg for scope in scopes for arg in ("--scope", scope)]
        self.api_key = self.manage(
            "create_api_key", "--tenant", "demo", *scope_args, "--name", key_name
        ).split()[-1]
        rabbit.join()

    def stop_servers(self) -> None:
        """Stop whichever servers started (any of them may be missing after a failed start)."""
        for name in ("sandbox", "rabbitmq", "redis", "postgres"):
            server = getattr(self, name, None)
            if server is not None:
                server.stop()

    def server_env(
        self,
        *,
        provider_timeout: float = PROVIDER_TIMEOUT,
        settings_module: str = "notifier.settings",
    ) -> dict[str, str]:
        """This process's environment, less its own NOTIFIER/DJANGO/... settings, pointing at
        the private servers and the sandbox's providers."""
        inherited = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("NOTIFIER_", "DATABASE_", "CELERY_", "REDIS_", "DJANGO_"))
        }
        return {
            **inherited,
            "DJANGO_SETTINGS_MODULE": settings_module,
            "DATABASE_URL": self.postgres.url(DATABASE),
            "CELERY_BROKER_URL": self.rabbitmq.url,
            "REDIS_URL": self.redis.url,
            "NOTIFIER_PROVIDERS_JSON": json.dumps(
                providers_from_connection(self.sandbox.connection, timeout=provider_timeout)
            ),
            "PYTHONUNBUFFERED": "1",
        }

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.server_env(),
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {args[0]} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout


@dataclass
class Stack(PrivateServers):
    """Servers and processes for one scenario; ``with Stack(tmp_path) as stack: ...``."""

    base: Path
    env_overrides: dict[str, str] = field(default_factory=dict)
    senders: int = 1
    sender_concurrency: int = 2
    planner_concurrency: int = 1
    without: frozenset[str] = frozenset()
    """Processes not to start (``relay``, ``beat``): negative controls take a protection away."""
    processes: dict[str, Process] = field(default_factory=dict, init=False)
    web_port: int = field(default_factory=free_port, init=False)

    # -- servers and processes ------------------------------------------------------------------

    def _start(self) -> None:
        self.start_servers(key_name="faults", scopes=("send", "read", "manage"))
        python = sys.executable
        self.spawn(
            "web",
            [python, "-m", "gunicorn", "notifier.wsgi", "--bind", f"127.0.0.1:{self.web_port}",
             "--workers", "2", "--threads", "4", "--graceful-timeout", "5"],
        )  # fmt: skip
        if "relay" not in self.without:
            self.spawn("relay", [python, "manage.py", "relay_outbox"])
        self.spawn(
            "planner", self.celery_worker("planner", PLANNING_QUEUES, self.planner_concurrency)
        )
        for n in range(self.senders):
            self.spawn(
                f"sender-{n}",
                self.celery_worker(f"sender{n}", SENDING_QUEUES, self.sender_concurrency),
            )
        if "beat" not in self.without:
            self.spawn(
                "beat",
                [python, "-m", "celery", "-A", "notifier", "beat", "--loglevel", "INFO",
                 "--schedule", str(self.base / "beat-schedule")],
            )  # fmt: skip
        self.wait_until_up()

    def celery_worker(self, name: str, queues: str, concurrency: int) -> list[str]:
        return [
            sys.executable, "-m", "celery", "-A", "notifier", "worker", "--queues", queues,
            "--concurrency", str(concurrency), "--pool", "prefork", "--hostname", f"{name}@%h",
            "--without-gossip", "--without-mingle", "--loglevel", "INFO",
        ]  # fmt: skip

    @property
    def env(self) -> dict[str, str]:
        return {
            **self.server_env(),
            "NOTIFIER_DELIVERY_LEASE": str(LEASE),
            "NOTIFIER_RETRY_BASE": "0.2",
            "NOTIFIER_RETRY_CAP": "5",
            **self.env_overrides,
        }

    def spawn(self, name: str, command: list[str]) -> Process:
        process = Process(name, command, self.env, self.base / f"{name}.log")
        self.processes[name] = process
        return process

    def wait_until_up(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if requests.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the stack did not become ready; logs in {self.base}")
            time.sleep(0.2)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def close(self) -> None:
        for process in self.processes.values():
            process.stop(timeout=10)
        self.stop_servers()

    # -- the database ledger --------------------------------------------------------------------

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        connection = psycopg2.connect(self.postgres.url(DATABASE))
        try:
            with connection, connection.cursor() as cursor:
                cursor.execute(sql, params)
                rows: list[tuple[Any, ...]] = cursor.fetchall()
        finally:
            connection.close()
        return rows

    def dead_lettered(self) -> int:
        """Messages in the dead-letter queue (0 while the broker is down)."""
        try:
            with Connection(self.rabbitmq.url, connect_timeout=5) as connection:
                channel: Any = connection.default_channel
                queue = celeryconfig.dead_letter_queues[0]
                return int(channel.queue_declare(queue.name, passive=True).message_count)
        except OSError:
            return 0

    def provider_acceptances(self) -> Counter[str]:
        """Email messages the sandbox accepted (SES, or SMTP after a failover), per address."""
        return Counter(message["to"] for message in self.sandbox.messages(channel="email"))


@dataclass
class Outcome:
    """What the API told one client about one notification, after its retries."""

    key: str
    notification_id: str = ""
    statuses: list[int] = field(default_factory=list)
    """Every answer's status (0: no answer: connection refused, reset or timed out)."""


class LoadClient:
    """Clients sending one email notification per user through the API, each retrying with the
    same Idempotency-Key on 5xx or no answer (as SPEC tells clients to) until ``give_up_after``
    seconds. The client ledger is every 202's ``notification_id``.

    ``notification_type`` is one of :data:`TEMPLATE_VARS`; ``extra`` adds fields to each request
    as it is sent (e.g. an ``expires_at`` relative to that moment). ``idempotent=False`` sends
    no key (a negative control: retries may then make a second notification)."""

    def __init__(
        self,
        stack: Stack,
        *,
        clients: int = 8,
        give_up_after: float = 120,
        notification_type: str = "order_shipped",
        extra: Callable[[], dict[str, Any]] | None = None,
        idempotent: bool = True,
    ) -> None:
        self.stack = stack
        self.clients = clients
        self.give_up_after = give_up_after
        self.notification_type = notification_type
        self.extra = extra or dict
        self.idempotent = idempotent
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {self.stack.api_key}"
            self._local.session = session
        return session

    def create_users(self, count: int, *, first: int = 0) -> list[str]:
        """Users ``u{first}`` ... through the API, each with an address of their own (waiting as
        told when the tenant's API quota answers 429)."""

        def put(i: int) -> str:
            user_id = f"u{i}"
            while True:
                response = self._session().put(
                    f"{self.stack.url}/api/v1/users/{user_id}",
                    json={"email": f"{user_id}@example.com"},
                    timeout=30,
                )
                if response.status_code != 429:
                    response.raise_for_status()
                    return user_id
                time.sleep(float(response.headers.get("Retry-After", "1")))

        with ThreadPoolExecutor(self.clients) as pool:
            return list(pool.map(put, range(first, first + count)))

    def send(self, user_id: str, *, key: str, deadline: float) -> Outcome:
        outcome = Outcome(key=key)
        body: dict[str, Any] = {
            "user_ids": [user_id],
            "notification_type": self.notification_type,
            "channels": ["email"],
            "template_vars": TEMPLATE_VARS[self.notification_type](key),
            **self.extra(),
        }
        delay = 0.1
        while True:
            try:
                response = self._session().post(
                    f"{self.stack.url}/api/v1/notifications",
                    json=body,
                    headers={"Idempotency-Key": key} if self.idempotent else {},
                    timeout=10,
                )
                outcome.statuses.append(response.status_code)
                if response.status_code == 202:
                    outcome.notification_id = str(response.json()["notification_id"])
                    return outcome
                if response.status_code < 500 and response.status_code not in (409, 429):
                    return outcome  # refused for good: a bug in the scenario, shown by the test
            except requests.RequestException:
                outcome.statuses.append(0)
            if time.monotonic() > deadline:
                return outcome
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def send_all(self, user_ids: list[str], *, run: str) -> list[Outcome]:
        """Send to every user (``clients`` at a time); returns once each has its outcome."""
        deadline = time.monotonic() + self.give_up_after
        with ThreadPoolExecutor(self.clients) as pool:
            return list(
                pool.map(
                    lambda user_id: self.send(user_id, key=f"{run}-{user_id}", deadline=deadline),
                    user_ids,
                )
            )

    def start(self, user_ids: list[str], *, run: str) -> Future[list[Outcome]]:
        """:meth:`send_all` in the background, while the scenario injects its faults."""
        runner = ThreadPoolExecutor(1)
        future = runner.submit(self.send_all, user_ids, run=run)
        runner.shutdown(wait=False)
        return future
