"""Batches over HTTP exactly as the official SDK sends them: an NDJSON stream with chunked
transfer encoding (no Content-Length), served by real daphne."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from runs.states import FINAL_STATUSES
from tests.live import LiveStack, poll

pytestmark = pytest.mark.e2e


def ndjson_chunks(count: int) -> Iterator[bytes]:
    """One item per chunk, as Node's fetch streams a ReadableStream body."""
    for index in range(count):
        item = {
            "index": index,
            "task": "hello-world",
            "payload": json.dumps({"json": {"name": f"item {index}"}}),
            "options": {"payloadType": "application/super+json", "tags": [f"item-{index}"]},
        }
        yield (json.dumps(item) + "\n").encode()


def test_a_chunked_ndjson_stream_becomes_a_batch_whose_runs_complete(live_stack: LiveStack) -> None:
    created = live_stack.api("POST", "/api/v3/batches", {"runCount": 5, "taskIdentifiers": ["hello-world"]})
    assert created.status_code == 202, created.text
    batch_id = created.json()["id"]
    response = requests.post(
        f"{live_stack.base_url}/api/v3/batches/{batch_id}/items",
        data=ndjson_chunks(5),  # a generator: requests sends Transfer-Encoding: chunked
        headers={"Authorization": f"Bearer {live_stack.api_key}", "Content-Type": "application/x-ndjson"},
        timeout=30,
    )
    assert "Content-Length" not in response.request.headers
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert response.status_code == 200, response.text
    assert response.json() == {"id": batch_id, "itemsAccepted": 5, "itemsDeduplicated": 0, "sealed": True}
    batch = live_stack.api("GET", f"/api/v2/batches/{batch_id}").json()
    assert batch["status"] == "COMPLETED" and len(batch["runs"]) == 5
    runs = [
        live_stack.run_until(run_id, lambda r: r["status"] in FINAL_STATUSES, "to finish") for run_id in batch["runs"]
    ]
    assert [r["output"] for r in runs] == [{"message": f"Hello, item {i}!"} for i in range(5)]
    assert {r["triggerFunction"] for r in runs} == {"batchTrigger"}


def test_a_resent_stream_is_deduplicated_by_index(live_stack: LiveStack) -> None:
    batch_id = live_stack.api("POST", "/api/v3/batches", {"runCount": 3}).json()["id"]
    url = f"{live_stack.base_url}/api/v3/batches/{batch_id}/items"
    headers = {"Authorization": f"Bearer {live_stack.api_key}", "Content-Type": "application/x-ndjson"}
    first = requests.post(url, data=b"".join(ndjson_chunks(2)), headers=headers, timeout=30).json()
    assert first["sealed"] is False and first["expectedCount"] == 3
    again = requests.post(url, data=ndjson_chunks(3), headers=headers, timeout=30).json()
    assert (again["itemsAccepted"], again["itemsDeduplicated"], again["sealed"]) == (1, 2, True)
    poll(
        lambda: live_stack.api("GET", f"/api/v2/batches/{batch_id}").json()["runs"],
        lambda runs: len(runs) == 3,
        "the batch to list 3 runs",
        timeout=10,
    )
