"""Two engines at once, one of them SIGKILLed while both admit runs: no run is admitted twice or run
twice, a queue's concurrency limit is never exceeded, and every run still completes."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from dashboard.management import launcher
from tests.live import LiveStack, poll

pytestmark = [pytest.mark.fault, pytest.mark.e2e]

RUNS = 100
LIMIT = 1
QUEUE = "fault-one-at-a-time"
ACTIVE = {"DEQUEUED", "EXECUTING"}


def timeline(stack: LiveStack, run_ids: list[str]) -> list[tuple[str, datetime, str, str]]:
    with stack.db() as conn:
        rows = conn.execute(
            "SELECT run_id, at, from_status, to_status FROM runs_runevent WHERE run_id = ANY(%s) ORDER BY at, id",
            (run_ids,),
        ).fetchall()
    return [(row[0], row[1], row[2], row[3]) for row in rows]


def most_at_once(events: list[tuple[str, datetime, str, str]]) -> int:
    """The most runs holding a slot at any moment: +1 entering DEQUEUED, -1 leaving the
    active statuses (a slot freed at the same instant counts as freed first)."""
    steps = []
    for _, at, frm, to in events:
        if to in ACTIVE and frm not in ACTIVE:
            steps.append((at, 1))
        elif frm in ACTIVE and to not in ACTIVE:
            steps.append((at, -1))
    running = peak = 0
    for _, step in sorted(steps):
        running += step
        peak = max(peak, running)
    return peak


def completed(stack: LiveStack, run_ids: list[str]) -> int:
    with stack.db() as conn:
        row = conn.execute(
            "SELECT count(*) FROM runs_run WHERE id = ANY(%s) AND status = 'COMPLETED'", (run_ids,)
        ).fetchone()
    return int(row[0]) if row else 0


def test_two_engines_and_one_killed_mid_dispatch_admit_each_run_once_within_the_limit(
    fault_stack: LiveStack, fault_var: Path
) -> None:
    second = launcher.Processes(fault_stack.env)
    with (fault_var / "logs" / "engine-2.log").open("w") as log:
        second.start("engine-2", launcher.commands(0)["engine"], log)
    try:
        options = {"queue": {"name": QUEUE, "concurrencyLimit": LIMIT}, "payloadType": "application/super+json"}
        body = {"payload": json.dumps({"json": {"seconds": 0.05}}), "options": options}
        run_ids = []
        for _ in range(RUNS):
            response = fault_stack.api("POST", "/api/v1/tasks/sleep/trigger", body)
            assert response.status_code == 200, response.text
            run_ids.append(response.json()["id"])
        poll(lambda: completed(fault_stack, run_ids), lambda done: done >= 10, "10 runs to complete", 60)
        assert second.exited() is None
        os.kill(second.running["engine-2"].pid, signal.SIGKILL)  # whatever it was doing
        poll(lambda: completed(fault_stack, run_ids), lambda done: done == RUNS, f"all {RUNS} to complete", 180, 1.0)
    finally:
        second.stop()

    events = timeline(fault_stack, run_ids)
    assert most_at_once(events) == LIMIT
    starts = Counter(run for run, _, _, to in events if to == "EXECUTING")
    assert set(starts.values()) == {1}, "a run was started twice"
    admissions = Counter(run for run, _, frm, to in events if (frm, to) == ("QUEUED", "DEQUEUED"))
    requeued = Counter(run for run, _, frm, to in events if (frm, to) == ("DEQUEUED", "QUEUED"))
    for run in run_ids:  # admitted again only after the engine took a lost admission back
        assert admissions[run] == 1 + requeued[run], (run, admissions[run], requeued[run])
    assert Counter(to for _, _, _, to in events)["COMPLETED"] == RUNS
