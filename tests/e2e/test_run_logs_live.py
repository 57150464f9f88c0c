"""Run logs on the live stack: what tasks log and print reaches GET /api/v1/runs/{id}/logs from
real Celery workers (prefork and threads pools), for @task functions and plain Celery tasks,
while the run executes and once it has finished."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.test_celery_tasks_live import last_line, run_id_of
from tests.live import EXTRA_REGION, LiveStack, poll

pytestmark = pytest.mark.e2e

PUBLISH_ADD = """
import json
from example_tasks import add
print(json.dumps(add.delay(2, 3).id))
"""


def logs_of(stack: LiveStack, run_id: str, query: str = "") -> list[dict[str, Any]]:
    """Every line of the run, following the cursor."""
    lines: list[dict[str, Any]] = []
    cursor = ""
    while True:
        response = stack.api("GET", f"/api/v1/runs/{run_id}/logs?limit=1000{query}{cursor}")
        assert response.status_code == 200, response.text
        answer = response.json()
        lines += answer["data"]
        if answer["pagination"]["next"] is None:
            return lines
        cursor = f"&cursor={answer['pagination']['next']}"


def test_hello_world_logs_its_greeting_and_printed_line_on_the_prefork_worker(live_stack: LiveStack) -> None:
    run_id = live_stack.trigger("hello-world", {"name": "Ada"})
    live_stack.run_until(run_id, lambda run: run["status"] == "COMPLETED", "to complete")
    lines = [(line["level"], line["logger"], line["message"]) for line in logs_of(live_stack, run_id)]
    assert ("INFO", "example_tasks", "Greeting Ada") in lines
    assert ("INFO", "stdout", "hello-world done") in lines


def test_concurrent_runs_on_a_threads_worker_keep_their_own_lines_in_order(live_stack: LiveStack) -> None:
    queue = f"runyard.small-1x.{EXTRA_REGION}"  # the stack's region queue: no other worker serves it
    with live_stack.extra_worker("threads", "-P", "threads", "--concurrency", "4", "-Q", queue) as hostname:
        run_ids = [
            live_stack.trigger("log-lines", {"lines": 20, "interval": 0.01}, region=EXTRA_REGION) for _ in range(8)
        ]
        for run_id in run_ids:
            live_stack.run_until(run_id, lambda run: run["status"] == "COMPLETED", "to complete", timeout=60)
        with live_stack.db() as db:
            rows = db.execute("SELECT id, worker FROM runs_run WHERE id = ANY(%s)", [run_ids]).fetchall()
            attempts = db.execute(
                "SELECT count(*) FROM runs_runattempt a JOIN runs_runattempt b ON a.run_id < b.run_id"
                " AND a.started_at < b.finished_at AND b.started_at < a.finished_at"
                " WHERE a.run_id = ANY(%s) AND b.run_id = ANY(%s)",
                [run_ids, run_ids],
            ).fetchone()
    assert {worker for _, worker in rows} == {hostname}, rows
    assert attempts is not None and attempts[0] > 0  # some ran at the same time, in threads of one process
    for run_id in run_ids:
        lines = logs_of(live_stack, run_id)
        assert [line["message"] for line in lines] == [f"line {n} of 20" for n in range(1, 21)], run_id
        assert [line["extra"] for line in lines] == [{"line": n} for n in range(1, 21)]


def test_a_plain_celery_tasks_run_holds_what_it_logged(live_stack: LiveStack) -> None:
    celery_id = json.loads(last_line(live_stack.manage("shell", "-c", PUBLISH_ADD)))
    run_id = run_id_of(live_stack, celery_id)
    live_stack.run_until(run_id, lambda run: run["status"] == "COMPLETED", "to complete")
    assert "adding 2 and 3" in [line["message"] for line in logs_of(live_stack, run_id)]


def test_an_executing_runs_lines_arrive_before_it_ends_and_all_of_them_once_it_has(live_stack: LiveStack) -> None:
    run_id = live_stack.trigger("log-lines", {"lines": 30, "interval": 0.1})
    live_stack.run_until(run_id, lambda run: run["status"] == "EXECUTING", "to execute")
    # The writer flushes every 0.5 s of a 3 s run: some lines while it still executes.
    some = poll(lambda: logs_of(live_stack, run_id), lambda lines: len(lines) > 0, "a first line", 10)
    assert live_stack.run(run_id)["status"] == "EXECUTING"
    assert 0 < len(some) < 30
    live_stack.run_until(run_id, lambda run: run["status"] == "COMPLETED", "to complete")
    assert [line["message"] for line in logs_of(live_stack, run_id)] == [f"line {n} of 30" for n in range(1, 31)]
