"""Private RabbitMQ, Redis and PostgreSQL servers, so tests never touch the machine's own.

Each is started from the Debian binaries on free ports with its own data directory (RabbitMQ
also with its own node name and epmd), as a process group the test may kill, stop and start
again (data kept) to inject faults; ``stop()`` ends it for good and removes its data. RabbitMQ
boots in about 7 s on 2 cores, PostgreSQL (initdb included) in about 3 s, Redis at once.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class PrivateRabbitMQ:
    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="notifier-rabbitmq-"))
        self.port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        # Unique per instance: a session may run a node of its own beside a scenario's.
        self.node = f"notifier-test-{os.getpid()}-{self.base.name.rsplit('-', 1)[-1]}@localhost"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def _env(self) -> dict[str, str]:
        (self.base / "mnesia").mkdir(exist_ok=True)
        (self.base / "log").mkdir(exist_ok=True)
        # guest may only connect from localhost, which is all we need.
        (self.base / "rabbitmq.conf").write_text("")
        (self.base / "enabled_plugins").write_text("[].\n")
        return {
            **os.environ,
            "HOME": str(self.base),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def start(self, timeout: float = 60) -> None:
        if not Path(SERVER).exists():
            raise RuntimeError(f"{SERVER} not found: install Debian's rabbitmq-server")
        self.process = subprocess.Popen(
            [SERVER],
            env=self._env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not _listening(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"private RabbitMQ did not start; logs in {self.base}/log")
            time.sleep(0.25)

    def kill(self) -> None:
        """SIGKILL the node (a crash); its data directory stays for :meth:`start`."""
        _kill_group(self.process)
        _wait_closed(self.port)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        # epmd daemonizes out of our process group; stop the one on our port only.
        epmd = shutil.which("epmd") or next(Path("/usr/lib/erlang").glob("erts-*/bin/epmd"), None)
        if epmd:
            subprocess.run(
                [str(epmd), "-port", str(self.epmd_port), "-kill"],
                capture_output=True,
                check=False,
                timeout=10,
            )
        shutil.rmtree(self.base, ignore_errors=True)


class PrivateRedis:
    """A Redis of the test's own (no persistence) on a free port: safe to kill, flush or stop."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="notifier-redis-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.base),
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not _listening(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("private redis-server did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the server: with no persistence, everything it held is gone."""
        _kill_group(self.process)
        _wait_closed(self.port)

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.base, ignore_errors=True)


def _kill_group(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _wait_closed(port: int, timeout: float = 15) -> None:
    """Until nothing listens on ``port``: the group's grandchildren die after its leader."""
    deadline = time.monotonic() + timeout
    while _listening(port) and time.monotonic() < deadline:
        time.sleep(0.05)


def _postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    if found:
        return found[0]
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found: install Debian's postgresql")
    return path


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (initdb'd into a temporary directory, trust
    auth, fsync off), run as the ``postgres`` user when the tests run as root."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="notifier-postgres-"))
        self.data = self.base / "data"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._user = "postgres" if os.geteuid() == 0 else None
        if self._user is not None:
            account = pwd.getpwnam(self._user)
            os.chown(self.base, account.pw_uid, account.pw_gid)
        self._run(
            [_postgres_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
             "--no-sync", "-E", "UTF8", "--locale=C"],
        )  # fmt: skip

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _as_owner(self, command: list[str]) -> list[str]:
        return ["runuser", "-u", self._user, "--", *command] if self._user else command

    def _run(self, command: list[str]) -> None:
        subprocess.run(self._as_owner(command), check=True, capture_output=True, timeout=120)

    def start(self, timeout: float = 30) -> None:
        self.process = subprocess.Popen(
            self._as_owner(
                [_postgres_bin("postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-k", str(self.base), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                 "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                 "-c", "max_connections=200"],
            ),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not _listening(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("private PostgreSQL did not start")
            time.sleep(0.1)

    def create_database(self, name: str) -> None:
        self._run([_postgres_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                   "-U", "postgres", name])  # fmt: skip

    def halt(self) -> None:
        """Stop the server as an operator would (fast shutdown); :meth:`start` brings it back
        with its data."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                _kill_group(self.process)

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.base, ignore_errors=True)
