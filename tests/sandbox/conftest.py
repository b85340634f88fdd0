"""One sandbox per test module, on free ports in a temporary state directory; every test starts
with no messages and no faults. No database: these tests do not request ``db``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from notifier.sandbox.server import SandboxServer


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxServer]:
    with SandboxServer(state_dir=tmp_path_factory.mktemp("sandbox")) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean_sandbox(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "sandbox" in request.fixturenames:
        server: SandboxServer = request.getfixturevalue("sandbox")
        server.clear_messages()
        server.clear_faults()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"
