"""A parent that waits on its children holds no worker slot (real worker with one slot)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

import pytest

from tests.live import LiveStack

pytestmark = pytest.mark.e2e


@contextlib.contextmanager
def single_slot_worker(stack: LiveStack) -> Iterator[str]:
    """Replace the stack's worker by one with --concurrency=1; the stack is restarted after."""
    assert stack.processes is not None
    main = stack.processes.running["worker"]
    os.killpg(main.pid, signal.SIGTERM)
    main.wait(30)
    try:
        with stack.extra_worker("single", "--concurrency=1") as hostname:
            yield hostname
    finally:
        stack.restart()


def test_a_parent_waiting_on_three_children_completes_on_a_worker_with_one_slot(live_stack: LiveStack) -> None:
    with single_slot_worker(live_stack) as hostname, live_stack.db() as db:
        parent_id = live_stack.trigger("fan-out", {"n": 3})
        parent = live_stack.run_until(parent_id, lambda r: r["status"] in {"COMPLETED", "FAILED"}, "to finish", 90)
        assert parent["status"] == "COMPLETED", parent
        assert parent["output"] == {"outputs": [{"message": f"Hello, child {i}!"} for i in range(3)]}
        children = parent["relatedRuns"]["children"]
        assert len(children) == 3 and {c["status"] for c in children} == {"COMPLETED"}
        statuses = [
            row[0]
            for row in db.execute("SELECT to_status FROM runs_runevent WHERE run_id = %s ORDER BY id", (parent_id,))
        ]
        assert statuses[:4] == ["QUEUED", "DEQUEUED", "EXECUTING", "WAITING"] and statuses[-1] == "COMPLETED"
        workers = {
            row[0]
            for row in db.execute(
                "SELECT DISTINCT a.worker FROM runs_runattempt a JOIN runs_run r ON r.id = a.run_id "
                "WHERE r.id = %s OR r.parent_id = %s",
                (parent_id, parent_id),
            )
        }
        assert workers == {hostname}
