"""Runs live in the database, not in any process: stopping and starting every process of
the stack (web, worker, engine) loses nothing."""

from __future__ import annotations

import pytest

from runs.states import FINAL_STATUSES
from tests.live import LiveStack

pytestmark = pytest.mark.e2e

FINISH_TIMEOUT = 30.0


def test_a_delayed_run_survives_a_restart_of_every_process_and_still_runs_when_rescheduled(
    live_stack: LiveStack,
) -> None:
    run_id = live_stack.trigger("hello-world", {"name": "Rip"}, delay="30d")
    before = live_stack.run(run_id)
    assert before["status"] == "DELAYED", before

    live_stack.restart()

    after = live_stack.run(run_id)
    assert after["status"] == "DELAYED", after
    assert after["delayedUntil"] == before["delayedUntil"]
    response = live_stack.api("POST", f"/api/v1/runs/{run_id}/reschedule", {"delay": "1s"})
    assert response.status_code == 200, response.text
    run = live_stack.run_until(run_id, lambda run: run["status"] in FINAL_STATUSES, "to finish", FINISH_TIMEOUT)
    assert run["status"] == "COMPLETED", run
    assert run["output"] == {"message": "Hello, Rip!"}


def test_a_task_and_an_environment_pause_survive_a_restart_of_every_process_and_the_worker_registering_anew(
    live_stack: LiveStack,
) -> None:
    try:
        assert live_stack.api("POST", "/api/v1/tasks/hello-world/pause", {"reason": "e2e"}).status_code == 200
        assert live_stack.api("POST", "/api/v1/environment/pause", {"reason": "e2e"}).status_code == 200
        held = live_stack.trigger("hello-world", {"name": "Held"})

        live_stack.restart()  # returns once the worker has registered its tasks again

        task = live_stack.api("GET", "/api/v1/tasks/hello-world/pause").json()
        environment = live_stack.api("GET", "/api/v1/environment/pause").json()
        assert (task["paused"], task["reason"], environment["paused"], environment["reason"]) == (
            True,
            "e2e",
            True,
            "e2e",
        )
        assert live_stack.run(held)["status"] == "QUEUED"
        live_stack.api("POST", "/api/v1/environment/resume")
        # A witness of the same engine: once a run of another task has finished, the engine has
        # admitted since the restart, and still not the paused task's run.
        witness = live_stack.trigger("hello-world-2", {"name": "Witness"})
        live_stack.run_until(witness, lambda run: run["status"] in FINAL_STATUSES, "to finish", FINISH_TIMEOUT)
        assert live_stack.run(held)["status"] == "QUEUED"
    finally:
        live_stack.api("POST", "/api/v1/environment/resume")
        live_stack.api("POST", "/api/v1/tasks/hello-world/resume")
    run = live_stack.run_until(held, lambda run: run["status"] in FINAL_STATUSES, "to finish", FINISH_TIMEOUT)
    assert run["status"] == "COMPLETED", run
