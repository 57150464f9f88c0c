"""A worker killed with SIGKILL mid-run: the run is retried, or CRASHED when out of attempts,
within the heartbeat timeout; it is never left EXECUTING and never completes twice."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from runs.states import FINAL_STATUSES
from tests.faults.conftest import (
    WORKER_TIMEOUT,
    events,
    kill_whole_worker,
    pool_processes,
    status_of,
    wait_for_status,
)
from tests.live import LiveStack, poll

pytestmark = [pytest.mark.fault, pytest.mark.e2e]

# The engine notices a silent run WORKER_TIMEOUT after its last heartbeat; it looks every
# poll interval, and this machine is shared: a margin for both.
NOTICED_WITHIN = WORKER_TIMEOUT + 8.0
FINISH_TIMEOUT = 60.0


def start_two(stack: LiveStack, tmp_path: Path) -> tuple[str, str, dict[str, int]]:
    """A run with an attempt to spare and one without, both executing; and their pids."""
    pidfiles = {"spare": tmp_path / "spare.pid", "last": tmp_path / "last.pid"}
    spare = stack.trigger("fault-sleep", {"pidfile": str(pidfiles["spare"]), "seconds": 60}, maxAttempts=2)
    last = stack.trigger("fault-sleep", {"pidfile": str(pidfiles["last"]), "seconds": 60}, maxAttempts=1)
    for run_id in (spare, last):
        wait_for_status(stack, run_id, {"EXECUTING"}, FINISH_TIMEOUT)
    poll(lambda: all(path.exists() and path.read_text() for path in pidfiles.values()), bool, "pid files", 10)
    return spare, last, {name: int(path.read_text()) for name, path in pidfiles.items()}


def assert_recovered(stack: LiveStack, spare: str, last: str, killed_at: datetime) -> None:
    for run_id in (spare, last):
        poll(lambda run_id=run_id: status_of(stack, run_id), lambda s: s != "EXECUTING", "leave EXECUTING", 30)
        left = left_executing_at(stack, run_id)
        noticed = (left - killed_at).total_seconds()
        assert noticed <= NOTICED_WITHIN, f"{run_id} stayed EXECUTING {noticed:.1f}s after the kill"

    assert wait_for_status(stack, last, FINAL_STATUSES, FINISH_TIMEOUT) == "CRASHED"
    assert wait_for_status(stack, spare, FINAL_STATUSES, FINISH_TIMEOUT) == "COMPLETED"
    time.sleep(2 * WORKER_TIMEOUT)  # a redelivered Celery message would have run by now
    assert status_of(stack, last) == "CRASHED" and status_of(stack, spare) == "COMPLETED"

    spare_timeline = events(stack, spare)
    assert [to for _, to, _ in spare_timeline].count("COMPLETED") == 1, spare_timeline
    assert [to for _, to, _ in spare_timeline].count("EXECUTING") == 2, spare_timeline
    assert any(frm == "EXECUTING" and to == "QUEUED" and "stopped responding" in why for frm, to, why in spare_timeline)
    last_timeline = events(stack, last)
    assert [to for _, to, _ in last_timeline][-2:] == ["EXECUTING", "CRASHED"], last_timeline
    assert "COMPLETED" not in [to for _, to, _ in last_timeline]
    detail = stack.run(last)
    assert detail["status"] == "CRASHED" and "stopped responding" in detail["error"]["message"]
    assert stack.run(spare)["output"]["first"] is False  # the second attempt finished it


def left_executing_at(stack: LiveStack, run_id: str) -> datetime:
    with stack.db() as conn:
        row = conn.execute(
            "SELECT min(at) FROM runs_runevent WHERE run_id = %s AND from_status = 'EXECUTING'", (run_id,)
        ).fetchone()
    assert row is not None and row[0] is not None
    at: datetime = row[0]
    return at


def test_pool_processes_killed_mid_run(fault_stack: LiveStack, tmp_path: Path) -> None:
    spare, last, pids = start_two(fault_stack, tmp_path)
    assert set(pids.values()) <= {process.pid for process in pool_processes(fault_stack)}
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)
    killed_at = datetime.now(UTC)
    assert_recovered(fault_stack, spare, last, killed_at)


def test_the_whole_worker_killed_mid_run(fault_stack: LiveStack, tmp_path: Path) -> None:
    """Last in this package: it leaves the stack without its main worker."""
    spare, last, _ = start_two(fault_stack, tmp_path)
    kill_whole_worker(fault_stack)
    killed_at = datetime.now(UTC)
    with fault_stack.extra_worker("rescue"):
        assert_recovered(fault_stack, spare, last, killed_at)
