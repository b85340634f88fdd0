"""The servers and processes a benchmark runs against, all private to it.

:class:`BenchStack` starts PostgreSQL, RabbitMQ and Redis on free ports (``PrivateServers``)
and the provider sandbox in this process with every provider answering after ``latency_ms``,
migrates, loads the demo tenant and issues an API key. The product's processes then run as
process groups configured by environment, as in production (:meth:`BenchStack.product`: web,
relay, beat and the Celery pools of :func:`lane_pools`), or the naive baseline's
(:meth:`BenchStack.naive`); both on the same servers and sandbox. Everything started is
stopped on exit, on error and on Ctrl-C, and the servers' data directories are removed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import requests
from kombu import Connection

import celeryconfig
from bench.usage import PAGE_SIZE, Usage, machine_busy_seconds, process_table, tree_usage
from notifier.sandbox.store import PROVIDERS
from tests.brokers import free_port
from tests.faults.stack import DATABASE, PrivateServers, Process

# The rows a benchmark creates; emptied between scenarios so each starts from the same state.
PIPELINE_TABLES = (
    "notifications_deliveryevent",
    "notifications_delivery",
    "notifications_notificationrecipient",
    "notifications_outboxmessage",
    "notifications_idempotencyrecord",
    "notifications_notification",
)


BULK_NICE = 10
"""The Procfile's ``nice -n`` of the bulk pool: the kernel gives a core to the critical and
transactional lanes first while a campaign drains (docs/performance.md, isolation)."""


@dataclass(frozen=True)
class Pool:
    """One Celery worker process group: its queues and its number of pool processes."""

    name: str
    queues: tuple[str, ...]
    concurrency: int
    nice: int = 0
    """Added to the processes' CPU niceness, as the Procfile's ``nice -n``."""


def lane_pools(*, transactional: int = 2, critical: int = 1) -> tuple[Pool, ...]:
    """The Procfile's topology: a planner, then one pool per lane on that lane's queues (the
    transactional and critical pools' sizes may differ from the Procfile's)."""

    def lane(name: str) -> tuple[str, ...]:
        return tuple(celeryconfig.delivery_queue_name(name, ch) for ch in celeryconfig.CHANNELS)

    return (
        Pool("planner", (celeryconfig.PLANNING_QUEUE,), 1),
        Pool("critical", (celeryconfig.CRITICAL_PLANNING_QUEUE, *lane("critical")), critical),
        Pool("transactional", lane("transactional"), transactional),
        Pool("bulk", lane("bulk"), 1, nice=BULK_NICE),
    )


class BenchStack(PrivateServers):
    """``with BenchStack(base, latency_ms=50) as stack: with stack.product(...): ...``"""

    def __init__(self, base: Path, *, latency_ms: int, web_threads: int = 1) -> None:
        self.base = base
        self.latency_ms = latency_ms
        self.web_threads = web_threads
        self.web_port = free_port()
        self.processes: dict[str, Process] = {}

    def _start(self) -> None:
        self.start_servers(key_name="bench", scopes=("send", "read"))
        for provider in PROVIDERS:
            self.sandbox.set_fault(provider, latency_ms=self.latency_ms)

    def close(self) -> None:
        self.stop_processes()
        self.stop_servers()

    # -- process groups ---------------------------------------------------------------------------

    def env(self, settings_module: str = "notifier.settings") -> dict[str, str]:
        return {
            **self.server_env(provider_timeout=10.0, settings_module=settings_module),
            # The per-tenant API quota (100/s by default) would measure itself, not the API.
            "NOTIFIER_API_RATE": "0",
            # One log line per request or task would cost more than some of the work measured.
            "NOTIFIER_LOG_LEVEL": "WARNING",
        }

    def spawn(self, name: str, command: list[str], env: dict[str, str]) -> Process:
        process = Process(name, command, env, self.base / f"{name}.log")
        self.processes[name] = process
        return process

    def stop_processes(self, names: Sequence[str] | None = None) -> None:
        for name in list(names if names is not None else self.processes):
            self.processes.pop(name).stop(timeout=20)

    def start_web(self, settings_module: str) -> None:
        # The Procfile's web process: gunicorn with 2 sync workers (web_threads > 1: gthread
        # workers with that many threads each, to see what concurrency in the web buys).
        self.spawn(
            "web",
            [sys.executable, "-m", "gunicorn", "notifier.wsgi", "--bind",
             f"127.0.0.1:{self.web_port}", "--workers", "2", "--threads", str(self.web_threads),
             "--graceful-timeout", "5"],
            self.env(settings_module),
        )  # fmt: skip

    def start_pool(self, pool: Pool, settings_module: str = "notifier.settings") -> None:
        self.spawn(
            pool.name,
            [*(["nice", "-n", str(pool.nice)] if pool.nice else []),
             sys.executable, "-m", "celery", "-A", "notifier", "worker",
             "--queues", ",".join(pool.queues), "--concurrency", str(pool.concurrency),
             "--pool", "prefork", "--hostname", f"{pool.name}@%h", "--without-gossip",
             "--without-mingle", "--loglevel", "WARNING"],
            self.env(settings_module),
        )  # fmt: skip

    @contextmanager
    def product(self, pools: Sequence[Pool]) -> Iterator[None]:
        """The product's processes for the duration of the block."""
        try:
            self.start_web("notifier.settings")
            self.spawn("relay", [sys.executable, "manage.py", "relay_outbox"], self.env())
            for pool in pools:
                self.start_pool(pool)
            self.spawn(
                "beat",
                [sys.executable, "-m", "celery", "-A", "notifier", "beat", "--loglevel",
                 "WARNING", "--schedule", str(self.base / "beat-schedule")],
                self.env(),
            )  # fmt: skip
            self.wait_until_ready(pools)
            yield
        finally:
            self.stop_processes()

    @contextmanager
    def naive(self, concurrency: int) -> Iterator[None]:
        """The naive baseline's web and its one prefork pool, for the duration of the block."""
        settings_module = "bench.naive.settings"
        pool = Pool("naive", (celeryconfig.PLANNING_QUEUE,), concurrency)
        try:
            self.start_web(settings_module)
            self.start_pool(pool, settings_module)
            self.wait_until_ready([pool])
            yield
        finally:
            self.stop_processes()

    @contextmanager
    def profiled(self, names: Sequence[str], *, seconds: float, output: Path) -> Iterator[None]:
        """py-spy profiles of the named processes and their children over the first ``seconds``
        of the block: ``output/<name>.txt``, folded stacks (one line per stack and its sample
        count; flamegraph.pl and speedscope.app draw them, grep reads them). py-spy samples
        from outside the process (ptrace, so root) at 100 Hz and costs it little, but a
        profiled run's figures should not be compared with an unprofiled run's."""
        output.mkdir(parents=True, exist_ok=True)
        py_spy = str(Path(sys.executable).with_name("py-spy"))
        spies = []
        for name in names:
            popen = self.processes[name].popen
            assert popen is not None
            command = [
                py_spy, "record", "--subprocesses", "--nonblocking", "--format", "raw",
                "--duration", str(int(seconds)), "--pid", str(popen.pid),
                "--output", str(output / f"{name}.txt"),
            ]  # fmt: skip
            spies.append(
                subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        try:
            yield
        finally:
            for spy in spies:
                try:
                    spy.wait(timeout=seconds + 30)
                except subprocess.TimeoutExpired:
                    spy.kill()
                    spy.wait()

    @contextmanager
    def paused(self, names: Sequence[str]) -> Iterator[None]:
        """The named process groups stopped (SIGSTOP) for the block, then resumed: what the
        API sustains while nothing else wants the cores. Messages wait in their queues."""
        stopped = [self.processes[name] for name in names]
        for process in stopped:
            process.signal(signal.SIGSTOP)
        try:
            yield
        finally:
            for process in stopped:
                process.signal(signal.SIGCONT)

    def restart_pool(self, pool: Pool) -> None:
        self.stop_processes([pool.name])
        self.start_pool(pool)
        self.wait_until_ready([pool])

    def wait_until_ready(self, pools: Sequence[Pool], timeout: float = 90) -> None:
        """Until the web answers /readyz and every pool's queues have a consumer."""
        deadline = time.monotonic() + timeout
        queues = {queue for pool in pools for queue in pool.queues}
        while True:
            try:
                web = requests.get(f"{self.url}/readyz", timeout=2).status_code == 200
            except requests.RequestException:
                web = False
            if web and all(self.queue_depth(queue)[1] > 0 for queue in queues):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the processes did not become ready; logs in {self.base}")
            time.sleep(0.3)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    # -- servers ----------------------------------------------------------------------------------

    def queue_depth(self, queue: str) -> tuple[int, int]:
        """(messages ready, consumers) of ``queue``; (0, 0) if it is not declared yet."""
        with Connection(self.rabbitmq.url, connect_timeout=5) as connection:
            channel: Any = connection.channel()
            try:
                declared = channel.queue_declare(queue, passive=True)
            except Exception:  # noqa: BLE001 - passive declare of an absent queue closes the channel
                return 0, 0
            return int(declared.message_count), int(declared.consumer_count)

    def purge_queues(self) -> None:
        with Connection(self.rabbitmq.url, connect_timeout=5) as connection:
            channel: Any = connection.channel()
            for queue in celeryconfig.task_queues:
                channel.queue_purge(queue.name)

    def connect(self) -> Any:
        connection = psycopg2.connect(self.postgres.url(DATABASE))
        connection.autocommit = True
        return connection

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[tuple[Any, ...]]:
        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return list(cursor.fetchall()) if cursor.description else []
        finally:
            connection.close()

    def reset(self) -> None:
        """Empty the pipeline's queues and tables (users, types and templates stay).

        The queues first, so that no new task starts; then TRUNCATE, which waits for the
        transactions in flight (a planning task's may last seconds) and can deadlock with beat's
        sweeps: a lock timeout, then another try; then the queues again, for what those
        transactions published on commit.
        """
        self.purge_queues()
        for attempt in range(10):
            try:
                self.query(f"SET lock_timeout = '10s'; TRUNCATE {', '.join(PIPELINE_TABLES)}")
                break
            except (psycopg2.errors.DeadlockDetected, psycopg2.errors.LockNotAvailable):
                if attempt == 9:
                    raise
                time.sleep(0.5)
        self.purge_queues()

    def usage(self) -> dict[str, Usage]:
        """CPU and memory now, per process (with its children) and per server; ``runner`` is this
        process, which holds the provider sandbox; ``machine`` every process on the machine."""
        roots = {
            name: process.popen.pid for name, process in self.processes.items() if process.popen
        }
        for name, server in (("postgres", self.postgres), ("rabbitmq", self.rabbitmq)):
            if server is not None and server.process is not None:
                roots[name] = server.process.pid
        table = process_table()
        usage = {name: tree_usage(pid, table) for name, pid in roots.items()}
        times = os.times()
        rss_pages = int(Path("/proc/self/statm").read_text().split()[1])
        usage["runner"] = Usage(times.user + times.system, rss_pages * PAGE_SIZE)
        usage["machine"] = Usage(machine_busy_seconds(), 0)
        return usage
