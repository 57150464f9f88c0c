"""Redis restarted empty three times while 500 runs are delayed, queued, dequeued and executing:
Redis holds no only copy of anything, so every run still completes; none is lost.

The worker lives through every restart. Celery 5.7 alone exits at one of them, mostly the second
or third: see runs/consumer.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from dashboard import embedded
from runs.states import FINAL_STATUSES as FINAL
from tests.faults.conftest import events, status_of
from tests.live import LiveStack, poll

pytestmark = [pytest.mark.fault, pytest.mark.e2e]

RUNS = 500
FINISH_TIMEOUT = 180.0


def batch_trigger(stack: LiveStack, items: list[dict[str, object]]) -> list[str]:
    """batch.trigger over the wire: create, stream NDJSON, read back the run ids."""
    created = stack.api("POST", "/api/v3/batches", {"runCount": len(items), "taskIdentifiers": ["hello-world"]})
    assert created.status_code == 202, created.text
    batch_id = created.json()["id"]
    lines = [json.dumps({"index": index, **item}) for index, item in enumerate(items)]
    streamed = requests.post(
        f"{stack.base_url}/api/v3/batches/{batch_id}/items",
        data="\n".join(lines).encode(),
        headers={"Authorization": f"Bearer {stack.api_key}", "Content-Type": "application/x-ndjson"},
        timeout=60,
    )
    assert streamed.status_code == 200 and streamed.json()["sealed"], streamed.text
    runs: list[str] = stack.api("GET", f"/api/v2/batches/{batch_id}").json()["runs"]
    return runs


def statuses(stack: LiveStack, run_ids: list[str]) -> dict[str, int]:
    with stack.db() as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM runs_run WHERE id = ANY(%s) GROUP BY status", (run_ids,)
        ).fetchall()
    return {status: count for status, count in rows}


def statuses_while_up(stack: LiveStack, run_ids: list[str]) -> dict[str, int]:
    """statuses(), failing at once if a process of the stack has exited."""
    assert stack.processes is not None
    exited = stack.processes.exited()
    assert exited is None, f"{exited[0]} exited with code {exited[1]}: see its log below"
    return statuses(stack, run_ids)


def restart_redis_empty(var: Path) -> None:
    embedded.stop_redis(var)
    poll(lambda: not embedded._redis_answers(embedded.redis_socket(var)), bool, "Redis to stop", 10)
    time.sleep(1)
    embedded.ensure_redis(var)  # the same socket, nothing in it


def test_no_run_is_lost_when_redis_restarts_empty(fault_stack: LiveStack, fault_var: Path) -> None:
    payload = {"payloadType": "application/super+json"}
    items: list[dict[str, object]] = []
    for index in range(RUNS):
        options: dict[str, object] = dict(payload)
        if index % 3 == 0:
            options["delay"] = "3s"  # still DELAYED when Redis goes
        items.append({"task": "hello-world", "payload": json.dumps({"json": {"name": str(index)}}), "options": options})
    run_ids = batch_trigger(fault_stack, items)
    assert len(run_ids) == RUNS
    in_flight = []
    for finished in (20, 150, 280):
        poll(
            lambda: statuses_while_up(fault_stack, run_ids),
            lambda seen: seen.get("COMPLETED", 0) >= finished,  # noqa: B023 - used within the loop
            f"{finished} runs to finish",
            60,
        )
        in_flight.append(statuses(fault_stack, run_ids))
        restart_redis_empty(fault_var)

    final = poll(
        lambda: statuses_while_up(fault_stack, run_ids),
        lambda seen: seen.get("COMPLETED", 0) == RUNS,
        f"all {RUNS} runs to complete (in flight when Redis went: {in_flight})",
        FINISH_TIMEOUT,
        interval=1.0,
    )
    assert final == {"COMPLETED": RUNS}
    for seen in in_flight:
        assert set(seen) - {"COMPLETED"}, f"Redis went when nothing was in flight: {in_flight}"


def test_a_run_executing_while_redis_restarts_completes_and_the_worker_goes_on(
    fault_stack: LiveStack, fault_var: Path, tmp_path: Path
) -> None:
    pidfile = tmp_path / "sleep.pid"
    sleeper = fault_stack.trigger("fault-sleep", {"pidfile": str(pidfile), "seconds": 4}, maxAttempts=1)
    poll(lambda: status_of(fault_stack, sleeper), lambda status: status == "EXECUTING", "the run to execute", 60)

    restart_redis_empty(fault_var)  # the worker acks the run, when it ends, on a connection it lost

    assert poll(
        lambda: statuses_while_up(fault_stack, [sleeper]), lambda seen: set(seen) <= FINAL, "the run to end", 60
    ) == {"COMPLETED": 1}
    after = fault_stack.trigger("hello-world", {"name": "after"})
    poll(lambda: statuses_while_up(fault_stack, [after]), lambda seen: set(seen) <= FINAL, "a run after it", 60)
    assert statuses_while_up(fault_stack, [sleeper, after]) == {"COMPLETED": 2}
    assert [to for _, to, _ in events(fault_stack, sleeper)].count("EXECUTING") == 1
