"""Redis restarted empty while 500 runs are delayed, queued, dequeued and executing: Redis
holds no only copy of anything, so every run still completes; none is lost."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from dashboard import embedded
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
    poll(lambda: statuses(fault_stack, run_ids), lambda seen: seen.get("COMPLETED", 0) >= 20, "some to finish", 60)
    in_flight = statuses(fault_stack, run_ids)

    embedded.stop_redis(fault_var)
    poll(lambda: not embedded._redis_answers(embedded.redis_socket(fault_var)), bool, "Redis to stop", 10)
    time.sleep(1)
    embedded.ensure_redis(fault_var)  # the same socket, nothing in it

    final = poll(
        lambda: statuses(fault_stack, run_ids),
        lambda seen: seen.get("COMPLETED", 0) == RUNS,
        f"all {RUNS} runs to complete (in flight when Redis went: {in_flight})",
        FINISH_TIMEOUT,
        interval=1.0,
    )
    assert final == {"COMPLETED": RUNS}
    assert set(in_flight) - {"COMPLETED"}, f"Redis went when nothing was in flight: {in_flight}"
    assert fault_stack.processes is not None and fault_stack.processes.exited() is None
