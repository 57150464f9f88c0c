"""The transition table, pair by pair, and the labels of the wire protocol's 13 statuses."""

from __future__ import annotations

import itertools

import pytest

from runs.states import DESCRIPTIONS, FINAL_STATUSES, LABELS, RunStatus, api_flags, can_transition, sources_of

ALLOWED = {
    "PENDING_VERSION -> QUEUED",
    "PENDING_VERSION -> DELAYED",
    "PENDING_VERSION -> CANCELED",
    "PENDING_VERSION -> EXPIRED",
    "DELAYED -> QUEUED",
    "DELAYED -> CANCELED",
    "DELAYED -> EXPIRED",
    "QUEUED -> DEQUEUED",
    "QUEUED -> PENDING_VERSION",
    "QUEUED -> CANCELED",
    "QUEUED -> EXPIRED",
    "QUEUED -> SYSTEM_FAILURE",
    "DEQUEUED -> EXECUTING",
    "DEQUEUED -> QUEUED",
    "DEQUEUED -> CANCELED",
    "DEQUEUED -> SYSTEM_FAILURE",
    "EXECUTING -> COMPLETED",
    "EXECUTING -> FAILED",
    "EXECUTING -> QUEUED",
    "EXECUTING -> WAITING",
    "EXECUTING -> CANCELED",
    "EXECUTING -> CRASHED",
    "EXECUTING -> SYSTEM_FAILURE",
    "EXECUTING -> TIMED_OUT",
    "WAITING -> QUEUED",
    "WAITING -> CANCELED",
    "WAITING -> SYSTEM_FAILURE",
    "WAITING -> TIMED_OUT",
}

ALL_PAIRS = list(itertools.product([s.value for s in RunStatus], repeat=2))


def test_there_are_exactly_the_13_statuses_of_the_wire_protocol() -> None:
    assert [s.value for s in RunStatus] == [
        "PENDING_VERSION",
        "DELAYED",
        "QUEUED",
        "DEQUEUED",
        "EXECUTING",
        "WAITING",
        "COMPLETED",
        "CANCELED",
        "FAILED",
        "CRASHED",
        "SYSTEM_FAILURE",
        "EXPIRED",
        "TIMED_OUT",
    ]


@pytest.mark.parametrize(("from_status", "to_status"), ALL_PAIRS, ids=[f"{a}->{b}" for a, b in ALL_PAIRS])
def test_transition_is_allowed_exactly_when_listed(from_status: str, to_status: str) -> None:
    assert can_transition(from_status, to_status) == (f"{from_status} -> {to_status}" in ALLOWED)


@pytest.mark.parametrize("final", sorted(FINAL_STATUSES))
def test_final_statuses_never_change(final: str) -> None:
    assert not any(can_transition(final, other) for other in RunStatus)


def test_sources_of_lists_every_status_that_may_reach_the_target() -> None:
    assert sources_of(RunStatus.CANCELED) == [
        "DELAYED",
        "DEQUEUED",
        "EXECUTING",
        "PENDING_VERSION",
        "QUEUED",
        "WAITING",
    ]
    assert sources_of(RunStatus.COMPLETED) == ["EXECUTING"]


def test_dashboard_labels_follow_the_reference() -> None:
    assert LABELS == {
        "PENDING_VERSION": "Pending version",
        "DELAYED": "Delayed",
        "QUEUED": "Queued",
        "DEQUEUED": "Dequeued",
        "EXECUTING": "Executing",
        "WAITING": "Waiting",
        "COMPLETED": "Completed",
        "CANCELED": "Canceled",
        "FAILED": "Failed",
        "CRASHED": "Crashed",
        "SYSTEM_FAILURE": "System failure",
        "EXPIRED": "Expired",
        "TIMED_OUT": "Timed out",
    }
    assert set(DESCRIPTIONS) == set(LABELS)


def test_api_flags_match_the_reference_server_including_its_expired_quirk() -> None:
    assert api_flags("QUEUED")["isQueued"] and not api_flags("QUEUED")["isCompleted"]
    assert api_flags("DEQUEUED")["isExecuting"]
    assert api_flags("CANCELED") == {
        "isQueued": False,
        "isExecuting": False,
        "isWaiting": False,
        "isCompleted": True,
        "isSuccess": False,
        "isFailed": True,
        "isCancelled": True,
    }
    # The reference server counts neither EXPIRED nor TIMED_OUT as completed or failed.
    assert not any(api_flags("EXPIRED").values())
    assert not any(api_flags("TIMED_OUT").values())
