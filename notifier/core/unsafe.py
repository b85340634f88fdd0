"""Protections the fault harness can switch off, one at a time, to prove its checks can fail.

Each scenario of ``tests/faults`` has a negative control (RELIABILITY.md §2): the same fault
with the protection that defeats it switched off, where the ledgers must then show the loss
or the duplicate. ``NOTIFIER_UNSAFE_WITHOUT`` names the protections to switch off, comma
separated. It is empty in production: the system checks (``manage.py check``, ``migrate``) warn
while it names anything, and refuse a name they do not know.
"""

from __future__ import annotations

from typing import Any, Final

from django.conf import settings
from django.core import checks

PROTECTIONS: Final[dict[str, str]] = {
    "claim_state": "the claim takes only queued rows (a redelivered message sends nothing)",
    "fence": "a send is dispatched only while its claim's fence and lease hold",
    "expiry": "the claim refuses a delivery past its expires_at",
    "unknown_outcome": "an unknown outcome is never retried blindly (SPEC guarantee 3)",
    "outage_retry": "a task that meets a database outage waits in the broker, not dead-letters",
    "undecodable": "an undecodable message is dead-lettered, not acknowledged away",
}


def without(protection: str) -> bool:
    """Whether ``protection`` (a key of :data:`PROTECTIONS`) is switched off."""
    if protection not in PROTECTIONS:
        raise KeyError(f"no protection named {protection!r}")
    return protection in settings.NOTIFIER_UNSAFE_WITHOUT


@checks.register()
def check_unsafe_settings(**kwargs: Any) -> list[checks.CheckMessage]:
    named = set(settings.NOTIFIER_UNSAFE_WITHOUT)
    errors: list[checks.CheckMessage] = []
    if unknown := sorted(named - PROTECTIONS.keys()):
        errors.append(
            checks.Error(
                f"NOTIFIER_UNSAFE_WITHOUT names unknown protections: {', '.join(unknown)}",
                hint=f"Known: {', '.join(PROTECTIONS)}.",
                id="core.E001",
            )
        )
    if named:
        errors.append(
            checks.Warning(
                f"NOTIFIER_UNSAFE_WITHOUT switches off {', '.join(sorted(named))}: "
                "the fault harness's negative controls only",
                hint="Unset NOTIFIER_UNSAFE_WITHOUT; it can send twice, late or never.",
                id="core.W001",
            )
        )
    return errors
