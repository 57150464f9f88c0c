"""PostgreSQL stopped: the API answers 503 with a clear JSON error (not a 500, not a hang),
and after it is back web, worker and engine recover by themselves."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from runs.states import FINAL_STATUSES
from tests.faults.conftest import start_postgres, stop_postgres
from tests.live import LiveStack, poll

pytestmark = [pytest.mark.fault, pytest.mark.e2e]

ANSWER_WITHIN = 5.0  # seconds: an outage is reported, not waited out
RECOVER_TIMEOUT = 30.0


def test_the_api_answers_503_while_postgres_is_down_and_everything_recovers(
    fault_stack: LiveStack, fault_var: Path
) -> None:
    before = fault_stack.trigger("hello-world", {"name": "before"})
    fault_stack.run_until(before, lambda run: run["status"] == "COMPLETED", "complete", RECOVER_TIMEOUT)
    database_url = fault_stack.env["DATABASE_URL"]

    stop_postgres(fault_var)
    try:
        for method, path, body in [
            ("POST", "/api/v1/tasks/hello-world/trigger", {"payload": '{"json":{}}'}),
            ("GET", f"/api/v3/runs/{before}", None),
            ("GET", "/api/v1/runs", None),
        ]:
            started = time.monotonic()
            response = fault_stack.api(method, path, body)
            assert time.monotonic() - started < ANSWER_WITHIN
            assert response.status_code == 503, (path, response.status_code, response.text)
            assert response.headers["Content-Type"] == "application/json"
            assert response.json() == {"error": "The database is unavailable; retry in a few seconds"}
            assert response.headers["Retry-After"] == "5"
        health = requests.get(f"{fault_stack.base_url}/healthz", timeout=ANSWER_WITHIN)
        assert health.status_code == 503 and health.json()["database"]["ok"] is False
        time.sleep(1)  # the worker and engine notice too: their loops fail and retry
    finally:
        assert start_postgres(fault_var) == database_url

    # No process was restarted: each reconnects on its own.
    assert fault_stack.processes is not None and fault_stack.processes.exited() is None
    body = {"payload": '{"json":{"name":"after"}}', "options": {"payloadType": "application/super+json"}}
    after = poll(
        lambda: fault_stack.api("POST", "/api/v1/tasks/hello-world/trigger", body),
        lambda response: response.status_code == 200,
        "web to trigger again",
        RECOVER_TIMEOUT,
    ).json()["id"]
    run = fault_stack.run_until(after, lambda run: run["status"] in FINAL_STATUSES, "finish", RECOVER_TIMEOUT)
    assert run["status"] == "COMPLETED" and run["output"] == {"message": "Hello, after!"}
    delayed = fault_stack.trigger("hello-world", {"name": "delayed"}, delay="1s")
    run = fault_stack.run_until(delayed, lambda run: run["status"] in FINAL_STATUSES, "finish", RECOVER_TIMEOUT)
    assert run["status"] == "COMPLETED"
    assert fault_stack.processes.exited() is None
    # The engine listens for wake-ups again (else it would only poll from now on).
    poll(lambda: listeners(fault_stack), lambda count: count >= 1, "the engine to LISTEN again", RECOVER_TIMEOUT)


def listeners(stack: LiveStack) -> int:
    with stack.db() as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN runyard_engine'").fetchone()
    return int(row[0]) if row else 0
