"""Draining a real Celery worker: it finishes the run it executes, takes no other (across a
restart too) while another worker of its queue runs them, and takes runs again once undrained.
Nothing is lost."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.live import EXTRA_REGION, LiveStack, poll

pytestmark = pytest.mark.e2e

QUEUE = f"runyard.small-1x.{EXTRA_REGION}"  # the stack's region queue: only this test's workers serve it
WORKER_ARGS = ("--concurrency", "1", "-Q", QUEUE)


def consuming(stack: LiveStack, hostname: str) -> list[str] | None:
    """The queues the worker consumes, as it answers Celery's inspect; None if it does not answer."""
    argv = [sys.executable, "-m", "celery", "-A", "dashboard", "inspect", "active_queues", "-j", "-t", "3"]
    result = subprocess.run([*argv, "-d", hostname], env=stack.env, capture_output=True, text=True, timeout=30)
    try:
        replies = json.loads(result.stdout)
    except json.JSONDecodeError:
        return None
    return sorted(queue["name"] for queue in replies.get(hostname, []))


def operate(stack: LiveStack, verb: str, hostname: str) -> None:
    code = f"from runs import engine; engine.{verb}_worker(hostname={hostname!r}, actor='user:e2e', reason='e2e')"
    stack.manage("shell", "-c", code)


def attempts_by_worker(stack: LiveStack, run_ids: list[str]) -> dict[str, list[str]]:
    with stack.db() as conn:
        rows = conn.execute(
            "SELECT run_id, worker FROM runs_runattempt WHERE run_id = ANY(%s) ORDER BY id", (run_ids,)
        ).fetchall()
    found: dict[str, list[str]] = {}
    for run_id, worker in rows:
        found.setdefault(run_id, []).append(worker)
    return found


def completed(run: dict[str, object]) -> bool:
    return run["status"] == "COMPLETED"


def test_a_drained_worker_finishes_its_run_takes_no_other_and_takes_runs_again_when_undrained(
    live_stack: LiveStack,
) -> None:
    stack = live_stack
    with stack.extra_worker("drained", *WORKER_ARGS) as drained:
        long_run = stack.trigger("sleep", {"seconds": 4}, region=EXTRA_REGION)
        stack.run_until(long_run, lambda run: run["status"] == "EXECUTING", "to execute", 30)
        operate(stack, "drain", drained)
        poll(lambda: consuming(stack, drained), lambda queues: queues == [], "the worker to stop consuming", 30)
        waiting = [stack.trigger("hello-world", {"name": f"n{i}"}, region=EXTRA_REGION) for i in range(3)]
        stack.run_until(long_run, completed, "to complete on the draining worker", 30)
        # The drained worker is idle and alone on the queue: the runs wait for another worker.
        assert {stack.run(run_id)["status"] for run_id in waiting} <= {"QUEUED", "DEQUEUED"}
        with stack.extra_worker("other", *WORKER_ARGS) as other:
            for run_id in waiting:
                stack.run_until(run_id, completed, "to complete on the other worker", 30)
        assert attempts_by_worker(stack, [long_run, *waiting]) == {
            long_run: [drained],
            **{run_id: [other] for run_id in waiting},
        }
    # The same worker started again still drains: its queue's run waits, then runs once undrained.
    with stack.extra_worker("drained", *WORKER_ARGS) as again:
        assert again == drained
        poll(lambda: consuming(stack, again), lambda queues: queues == [], "the restarted worker not to consume", 30)
        later = stack.trigger("hello-world", {"name": "later"}, region=EXTRA_REGION)
        assert stack.run(later)["status"] in {"QUEUED", "DEQUEUED"}
        operate(stack, "undrain", again)
        stack.run_until(later, completed, "to complete once the worker is undrained", 30)
        assert attempts_by_worker(stack, [later]) == {later: [again]}
        assert consuming(stack, again) == [QUEUE]
