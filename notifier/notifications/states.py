"""The delivery state machine: which state may follow which.

A delivery moves forward only. Retrying is the one loop (``sending → deferred → sending``),
and an ``unknown`` outcome may still be resolved by a provider report. A report that arrives
late or out of order (``sent`` after ``delivered``) finds no transition and changes nothing;
the event is still recorded. Writers turn ``sources_of(target)`` into the ``WHERE state IN
(...)`` of a conditional update, so the rule holds under concurrency, not only in Python.
The one way back is an operator's replay of a ``failed`` or ``unknown`` delivery
(``can_replay``), kept out of the table.
"""

from __future__ import annotations

from notifier.notifications.models import DeliveryState as S

TERMINAL_STATES: frozenset[str] = frozenset(
    {S.READ, S.FAILED, S.BOUNCED, S.SUPPRESSED, S.EXPIRED, S.CANCELLED, S.DEDUPLICATED}
)

TRANSITIONS: dict[str, frozenset[str]] = {
    S.QUEUED: frozenset(
        {S.DEFERRED, S.SENDING, S.SUPPRESSED, S.EXPIRED, S.CANCELLED, S.DEDUPLICATED, S.FAILED}
    ),
    # Released by beat (→ queued/sending) or ended before it was ever sent.
    S.DEFERRED: frozenset({S.QUEUED, S.SENDING, S.SUPPRESSED, S.EXPIRED, S.CANCELLED, S.FAILED}),
    # A claimed send: accepted, retried later (→ deferred), refused, or of unknown outcome;
    # queued again when its worker died before calling the provider (never dispatched); or a
    # provider report that overtook the worker's own record (delivered, read).
    S.SENDING: frozenset(
        {
            S.SENT,
            S.DEFERRED,
            S.FAILED,
            S.BOUNCED,
            S.UNKNOWN,
            S.EXPIRED,
            S.SUPPRESSED,
            S.QUEUED,
            S.DELIVERED,
            S.READ,
        }
    ),
    # Provider reports after acceptance (Twilio "undelivered" is a failure after "sent").
    S.SENT: frozenset({S.DELIVERED, S.READ, S.FAILED, S.BOUNCED}),
    S.DELIVERED: frozenset({S.READ}),
    # Resolved from a provider report, or resent once (critical only) after the lease.
    S.UNKNOWN: frozenset({S.SENT, S.DELIVERED, S.READ, S.FAILED, S.BOUNCED, S.SENDING}),
    **{state: frozenset() for state in TERMINAL_STATES},
}


def can_transition(current: str, target: str) -> bool:
    return target in TRANSITIONS[current]


# Not in TRANSITIONS: no pipeline step may leave these states, only an operator (see can_replay).
REPLAYABLE_STATES: frozenset[str] = frozenset({S.FAILED, S.UNKNOWN})


def can_replay(current: str) -> bool:
    """Whether an operator may send a delivery in ``current`` again (back to ``queued``).

    The one transition out of a terminal state, and never taken by the pipeline: it is an
    operator's deliberate action (``deadletters.replay_delivery``), once they have fixed the
    cause. It sits outside ``TRANSITIONS`` so that no provider report, retry or redelivered
    message can ever take it. Replaying ``unknown`` may send a second copy of a message the
    provider already accepted; that is the operator's call to make, and it is recorded.
    """
    return current in REPLAYABLE_STATES


def sources_of(target: str) -> frozenset[str]:
    """Every state from which ``target`` may be reached."""
    return frozenset(state for state, targets in TRANSITIONS.items() if target in targets)
