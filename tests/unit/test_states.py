"""The delivery state machine only moves forward."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from notifier.notifications.models import DeliveryState
from notifier.notifications.states import (
    REPLAYABLE_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    can_replay,
    can_transition,
    sources_of,
)

STATES = st.sampled_from(DeliveryState.values)

# The lifecycle's forward order; a delivery never goes back along it except to retry.
FORWARD = ["queued", "deferred", "sending", "sent", "delivered", "read"]


def apply(state: str, attempts: list[str]) -> list[str]:
    history = [state]
    for target in attempts:
        if can_transition(history[-1], target):
            history.append(target)
    return history


def test_every_state_has_a_rule() -> None:
    assert set(TRANSITIONS) == set(DeliveryState.values)


@given(STATES, st.lists(STATES, max_size=30))
def test_nothing_leaves_a_terminal_state(start: str, attempts: list[str]) -> None:
    history = apply(start, attempts)

    for position, state in enumerate(history):
        if state in TERMINAL_STATES:
            assert history[position:] == [state]


@given(st.lists(STATES, max_size=30))
def test_provider_progress_never_moves_back(attempts: list[str]) -> None:
    # given a delivery that reached "sent": late or out-of-order reports arrive
    history = apply("sent", attempts)

    # then its progress along sent → delivered → read never decreases
    ranks = [FORWARD.index(s) for s in history if s in FORWARD]
    assert ranks == sorted(ranks)


def test_out_of_order_reports_are_refused() -> None:
    assert not can_transition("delivered", "sent")
    assert not can_transition("read", "delivered")
    assert not can_transition("failed", "sent")
    assert not can_transition("sent", "sending")


def test_retry_is_the_only_loop_back_to_sending() -> None:
    assert sources_of("sending") == {"queued", "deferred", "unknown"}
    assert can_transition("sending", "deferred")


def test_sources_of_matches_the_table() -> None:
    for target in DeliveryState.values:
        for source in DeliveryState.values:
            assert (source in sources_of(target)) == can_transition(source, target)


def test_only_failed_and_unknown_deliveries_may_be_replayed() -> None:
    assert {s for s in DeliveryState.values if can_replay(s)} == {"failed", "unknown"}
    assert TERMINAL_STATES | {"unknown"} >= REPLAYABLE_STATES


def test_replay_is_no_transition_the_pipeline_can_take() -> None:
    # a replay leads back to queued, which the table never allows from these states
    for state in REPLAYABLE_STATES:
        assert not can_transition(state, "queued")
    # (deferred rows are released; a claim whose worker died before dispatching is requeued)
    assert sources_of("queued") == {"deferred", "sending"}
