"""The fault scenarios use the pipeline suite's fixtures (real worker processes on the test
database and the private broker, and a type with a template on every channel), and ``stack``:
the whole product on private servers (tests/faults/stack.py), its options given by indirect
parametrization, e.g. ``@pytest.mark.parametrize("stack", [{"senders": 2}], indirect=True)``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.ledger import table
from tests.faults.scenarios import REPORTS
from tests.faults.stack import Stack
from tests.pipeline.conftest import alerts, start_worker

__all__ = ["alerts", "stack", "start_worker"]


@pytest.fixture
def stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    options = getattr(request, "param", {})
    with Stack(tmp_path / "stack", **options) as running:
        yield running


@pytest.fixture(autouse=True)
def clean_sandbox(request: pytest.FixtureRequest) -> None:
    """A module's shared stacks (``stack``, ``unprotected``) start each test with no faults and
    no messages in their sandbox."""
    for name in ("stack", "unprotected"):
        if name in request.fixturenames:
            running: Stack = request.getfixturevalue(name)
            running.sandbox.clear_faults()
            running.sandbox.clear_messages()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Every stack scenario's ledger in one table, as docs/reliability.md shows them."""
    if REPORTS:
        terminalreporter.section("fault scenario ledgers")
        terminalreporter.write_line(table(REPORTS))
