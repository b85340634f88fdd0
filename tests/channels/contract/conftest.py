"""The provider sandbox for the contract suite, and provider settings pointing at it.

``provider_settings(sandbox)`` is the ``NOTIFIER_PROVIDERS`` setting for every real provider
configured against a running ``SandboxServer`` (``notifier.sandbox.providers``, as make run).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from notifier.sandbox.providers import providers_from_connection
from notifier.sandbox.server import SandboxServer

# Timeouts in the suite: long enough for a loaded 2-core box, short enough for "hang" tests.
CONTRACT_TIMEOUT = 2.0


def provider_settings(sandbox: SandboxServer, *, timeout: float = 10.0) -> dict[str, Any]:
    """A full ``NOTIFIER_PROVIDERS`` map: every provider, configured from ``sandbox.connection``
    (defaults: SES for email, Twilio for SMS, FCM for push; SMTP, SNS and APNs beside them)."""
    return providers_from_connection(sandbox.connection, timeout=timeout)


@pytest.fixture(scope="package")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxServer]:
    with SandboxServer(state_dir=tmp_path_factory.mktemp("contract-sandbox")) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean_sandbox(sandbox: SandboxServer) -> Iterator[None]:
    sandbox.clear_faults()
    sandbox.clear_messages()
    yield
    sandbox.clear_faults()
    sandbox.clear_messages()
