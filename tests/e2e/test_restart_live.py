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
