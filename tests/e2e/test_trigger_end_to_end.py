"""A run triggered over the REST API, exactly as the official SDK sends it, through real
web, worker and engine processes."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
import requests

from runs.states import FINAL_STATUSES
from tests.live import LiveStack

pytestmark = pytest.mark.e2e

FINISH_TIMEOUT = 30.0


def trigger(stack: LiveStack, task_id: str, payload: Any, key: str | None = None) -> requests.Response:
    """POST the body and headers `tasks.trigger(task_id, payload)` of @trigger.dev/sdk sends."""
    packet = json.dumps({"json": payload}, separators=(",", ":"))
    body = {"payload": packet, "options": {"payloadType": "application/super+json", "payloadSize": len(packet)}}
    return requests.post(
        f"{stack.base_url}/api/v1/tasks/{task_id}/trigger",
        data=json.dumps(body, separators=(",", ":")),
        headers={"Authorization": f"Bearer {key or stack.api_key}", "Content-Type": "application/json"},
        timeout=10,
    )


def finished_run(stack: LiveStack, run_id: str) -> dict[str, Any]:
    """Poll GET /api/v3/runs/{id} until the run is final; returns its last body."""
    deadline = time.monotonic() + FINISH_TIMEOUT
    while True:
        response = requests.get(
            f"{stack.base_url}/api/v3/runs/{run_id}", headers={"Authorization": f"Bearer {stack.api_key}"}, timeout=10
        )
        assert response.status_code == 200, response.text
        run: dict[str, Any] = response.json()
        if run["status"] in FINAL_STATUSES:
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run['status']} after {FINISH_TIMEOUT:g}s"
        time.sleep(0.2)


def triggered_run_id(response: requests.Response) -> str:
    assert response.status_code == 200, response.text
    run_id: str = response.json()["id"]
    assert run_id.startswith("run_")
    assert response.headers.get("x-trigger-jwt")
    return run_id


def test_hello_world_triggered_like_the_sdk_completes_with_its_greeting(live_stack: LiveStack) -> None:
    run_id = triggered_run_id(trigger(live_stack, "hello-world", {"name": "Ada"}))

    run = finished_run(live_stack, run_id)

    assert run["status"] == "COMPLETED", run
    assert run["output"] == {"message": "Hello, Ada!"}


def test_a_task_that_always_raises_ends_failed_with_the_error_message(live_stack: LiveStack) -> None:
    run_id = triggered_run_id(trigger(live_stack, "always-fails", {}))

    run = finished_run(live_stack, run_id)

    assert run["status"] == "FAILED", run
    assert run["error"]["message"] == "this task always fails"


def test_apikey_create_prints_only_a_key_that_triggers_runs(live_stack: LiveStack) -> None:
    out = live_stack.manage("apikey", "create", "--env", "dev")

    assert re.fullmatch(r"tr_dev_[A-Za-z0-9]+\n", out), out
    triggered_run_id(trigger(live_stack, "hello-world", {"name": "Grace"}, key=out.strip()))
