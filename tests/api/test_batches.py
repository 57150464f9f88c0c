"""Batches over the wire protocol: create (3.2), the NDJSON items stream (3.3), retrieve (3.10)."""

from __future__ import annotations

import json
import tempfile
from typing import Any

import pytest
from django.core.handlers.asgi import ASGIRequest

from api import batches, jwt
from runs import ratelimit
from runs.models import Batch, BatchItem, BatchStatus, Run
from tests import factories

pytestmark = pytest.mark.django_db

NDJSON = "application/x-ndjson"

# The body the official SDK 4.8.3 sent for tasks.batchTrigger("hello-world", [...]) (reference 3.3).
SDK_ITEMS = [
    {
        "index": 0,
        "task": "hello-world",
        "payload": '{"json":{"i":0}}',
        "options": {
            "queue": {"name": "sdk-check-queue"},
            "concurrencyKey": "c0",
            "payloadType": "application/super+json",
            "ttl": "15m",
            "tags": ["sdkcheck:X", "item-0"],
            "maxAttempts": 2,
            "metadata": {"i": 0},
            "maxDuration": 120,
            "idempotencyKey": "e1c2cd45" + "0" * 52 + "db13",
            "idempotencyKeyTTL": "1h",
            "idempotencyKeyOptions": {"key": "batch-item0-X", "scope": "run"},
            "machine": "medium-1x",
            "priority": 5,
            "region": "us-east-1",
            "payloadSize": 16,
        },
    },
    {
        "index": 1,
        "task": "hello-world",
        "payload": '{"json":{"i":1}}',
        "options": {"payloadType": "application/super+json", "delay": "1h", "tags": "item-1", "payloadSize": 16},
    },
    {
        "index": 2,
        "task": "hello-world",
        "payload": '{"json":{"i":2}}',
        "options": {"payloadType": "application/super+json", "payloadSize": 16},
    },
]


@pytest.fixture(autouse=True)
def setup(db):
    factories.task_definition("hello-world")
    redis = ratelimit.redis_client()
    for pattern in (f"{ratelimit.KEY_PREFIX}:*", "runyard:batch-request:*"):
        for name in redis.scan_iter(pattern):
            redis.delete(name)


def ndjson(items: list[Any], newline: str = "\n") -> bytes:
    return "".join(json.dumps(item) + newline for item in items).encode()


def item(index: int, task: str = "hello-world", **options: Any) -> dict[str, Any]:
    return {
        "index": index,
        "task": task,
        "payload": json.dumps({"json": {"i": index}}),
        "options": {"payloadType": "application/super+json", **options},
    }


def create(api, run_count: int = 3, **body: Any) -> Any:
    return api.post("/api/v3/batches", {"runCount": run_count, "taskIdentifiers": ["hello-world"], **body})


def stream(api, batch_id: str, body: bytes, content_type: str = NDJSON) -> Any:
    path = f"/api/v3/batches/{batch_id}/items"
    return api.client.post(path, data=body, content_type=content_type, headers=api.headers())


def test_create_answers_202_with_the_batch_and_a_token_for_it(api, dev):
    response = create(api, 3)
    assert response.status_code == 202
    body = response.json()
    assert body == {"id": body["id"], "runCount": 3, "isCached": False}
    batch = Batch.objects.get(pk=body["id"])
    assert (
        batch.status == BatchStatus.PENDING and batch.environment == dev and batch.task_identifiers == ["hello-world"]
    )
    claims = jwt.verify(response["x-trigger-jwt"], jwt.environment_secret(dev))
    assert claims["scopes"] == [f"read:batch:{batch.id}"] and claims["sub"] == str(dev.pk)


def test_the_sdks_three_item_stream_creates_three_runs_with_their_options(api):
    batch_id = create(api, 3).json()["id"]
    response = stream(api, batch_id, ndjson(SDK_ITEMS))
    assert response.status_code == 200
    assert response.json() == {"id": batch_id, "itemsAccepted": 3, "itemsDeduplicated": 0, "sealed": True}
    runs = {json.loads(run.payload)["json"]["i"]: run for run in Run.objects.filter(batch_id=batch_id)}
    assert sorted(runs) == [0, 1, 2]
    first = runs[0]
    assert (first.queue, first.concurrency_key, first.ttl, first.max_attempts) == ("sdk-check-queue", "c0", 900, 2)
    assert (first.machine, first.region, first.priority_ms, first.max_duration) == ("medium-1x", "us-east-1", 5000, 120)
    assert first.tags == ["item-0", "sdkcheck:X"] and first.metadata == {"i": 0}
    assert first.idempotency_key == SDK_ITEMS[0]["options"]["idempotencyKey"]
    assert first.idempotency_key_user == "batch-item0-X"
    assert runs[1].status == "DELAYED" and runs[1].tags == ["item-1"]
    assert runs[2].status == "QUEUED" and runs[2].tags == []
    assert {run.trigger_function for run in runs.values()} == {"batchTrigger"}
    assert Batch.objects.get(pk=batch_id).status == BatchStatus.COMPLETED
    assert not BatchItem.objects.filter(batch_id=batch_id).exists()


def test_a_short_stream_answers_unsealed_with_enqueued_and_expected_counts(api):
    batch_id = create(api, 3).json()["id"]
    response = stream(api, batch_id, ndjson([item(0), item(1)]))
    assert response.status_code == 200
    assert response.json() == {
        "id": batch_id,
        "itemsAccepted": 2,
        "itemsDeduplicated": 0,
        "sealed": False,
        "enqueuedCount": 2,
        "expectedCount": 3,
    }
    assert not Run.objects.exists()


def test_a_resent_stream_is_deduplicated_by_index(api):
    batch_id = create(api, 3).json()["id"]
    stream(api, batch_id, ndjson([item(0), item(1)]))
    response = stream(api, batch_id, ndjson([item(0), item(1), item(2)]))
    assert response.json() == {"id": batch_id, "itemsAccepted": 1, "itemsDeduplicated": 2, "sealed": True}
    assert Run.objects.filter(batch_id=batch_id).count() == 3


def test_a_stream_resent_after_sealing_answers_sealed_with_zero_counts(api):
    batch_id = create(api, 3).json()["id"]
    stream(api, batch_id, ndjson([item(0), item(1), item(2)]))
    again = stream(api, batch_id, ndjson([item(0), item(1), item(2)]))
    assert again.status_code == 200
    assert again.json() == {"id": batch_id, "itemsAccepted": 0, "itemsDeduplicated": 0, "sealed": True}
    assert Run.objects.count() == 3


def test_a_repeated_index_in_one_stream_counts_as_deduplicated(api):
    batch_id = create(api, 2).json()["id"]
    response = stream(api, batch_id, ndjson([item(0), item(0), item(1)]))
    assert response.json()["itemsAccepted"] == 2 and response.json()["itemsDeduplicated"] == 1


@pytest.mark.parametrize("run_count", [0, -1, 2.5, "3", True, None])
def test_a_run_count_that_is_not_a_positive_integer_is_400(api, run_count):
    response = api.post("/api/v3/batches", {"runCount": run_count})
    assert response.status_code == 400 and "runCount" in response.json()["error"]


def test_a_run_count_over_a_thousand_is_400_naming_the_limit(api):
    response = create(api, 1001)
    assert response.status_code == 400
    assert "1,000" in response.json()["error"]
    assert not Batch.objects.exists()


def test_a_thousand_items_are_allowed(api):
    assert create(api, 1000).status_code == 202


@pytest.mark.parametrize(
    "body",
    [
        {"taskIdentifiers": []},
        {"taskIdentifiers": ["hello-world", ""]},
        {"taskIdentifiers": "hello-world"},
        {"idempotencyKey": 5},
        {"resumeParentOnCompletion": "yes"},
        {"parentRunId": 7},
    ],
)
def test_a_malformed_create_body_is_400(api, body):
    response = api.post("/api/v3/batches", {"runCount": 1, **body})
    assert response.status_code == 400, response.json()
    assert not Batch.objects.exists()


def test_a_repeated_batch_key_answers_200_cached_with_the_same_batch(api):
    key = {"idempotencyKey": "edb98" + "1" * 59, "idempotencyKeyOptions": {"key": "batch-key-X", "scope": "run"}}
    first = create(api, 2, **key)
    assert first.status_code == 202 and first.json()["idempotencyKey"] == "batch-key-X"
    again = create(api, 2, **key)
    assert again.status_code == 200
    assert again.json() == {"id": first.json()["id"], "runCount": 2, "isCached": True, "idempotencyKey": "batch-key-X"}
    assert again["x-trigger-jwt"]
    assert Batch.objects.count() == 1


def test_a_batch_key_of_another_environment_is_a_different_batch(api, prod_api):
    first = create(api, 1, idempotencyKey="k" * 64).json()
    other = create(prod_api, 1, idempotencyKey="k" * 64)
    assert other.status_code == 202 and other.json()["id"] != first["id"]


def test_a_retried_create_with_the_same_request_key_answers_the_same_batch(api):
    headers = {"x-trigger-request-idempotency-key": "5a0e2b8e-3f5c-4f4e-9f77-2c1f0a6a1d11"}
    first = api.post("/api/v3/batches", {"runCount": 3}, **headers)
    again = api.post("/api/v3/batches", {"runCount": 3}, **headers)
    assert first.status_code == again.status_code == 202
    assert again.json() == {"id": first.json()["id"], "runCount": 3, "isCached": False}
    assert Batch.objects.count() == 1
    assert api.post("/api/v3/batches", {"runCount": 3}).json()["id"] != first.json()["id"]


def test_a_retry_while_the_first_attempt_is_still_creating_is_a_503_the_sdk_retries(api, dev):
    ratelimit.redis_client().set(f"runyard:batch-request:{dev.pk}:in-flight", b"-", ex=60)
    response = api.post("/api/v3/batches", {"runCount": 1}, **{"x-trigger-request-idempotency-key": "in-flight"})
    assert response.status_code == 503 and not Batch.objects.exists()


def test_a_request_key_is_scoped_to_its_environment(api, prod_api):
    headers = {"x-trigger-request-idempotency-key": "same-key"}
    first = api.post("/api/v3/batches", {"runCount": 1}, **headers).json()["id"]
    other = prod_api.post("/api/v3/batches", {"runCount": 1}, **headers).json()["id"]
    assert first != other and Batch.objects.count() == 2


def test_a_refused_create_does_not_hold_its_request_key(api):
    headers = {"x-trigger-request-idempotency-key": "key-after-400"}
    assert api.post("/api/v3/batches", {"runCount": 1001}, **headers).status_code == 400
    assert api.post("/api/v3/batches", {"runCount": 1}, **headers).status_code == 202


def test_an_overlong_request_key_is_400(api):
    response = api.post("/api/v3/batches", {"runCount": 1}, **{"x-trigger-request-idempotency-key": "k" * 129})
    assert response.status_code == 400


def test_a_batch_inside_a_parent_run_makes_children_that_resume_it(api):
    parent = factories.run("hello-world")
    body = {"runCount": 2, "parentRunId": parent.id, "resumeParentOnCompletion": True}
    batch_id = api.post("/api/v3/batches", body).json()["id"]
    stream(api, batch_id, ndjson([item(0), item(1)]))
    children = Run.objects.filter(batch_id=batch_id)
    assert {(run.parent_id, run.trigger_function) for run in children} == {(parent.id, "batchTriggerAndWait")}


def test_an_invalid_item_is_422_naming_its_index_and_no_run_is_created(api):
    batch_id = create(api, 3).json()["id"]
    response = stream(api, batch_id, ndjson([item(0), item(1), item(2, machine="huge-9x")]))
    assert response.status_code == 422
    error = response.json()["error"]
    assert "Batch item 2" in error and "machine" in error
    assert not Run.objects.exists()
    batch = Batch.objects.get(pk=batch_id)
    assert batch.status == BatchStatus.ABORTED
    assert not batch.items.exists()  # nothing of the refused request stays staged
    detail = api.get(f"/api/v2/batches/{batch_id}").json()
    assert detail["status"] == "ABORTED" and detail["runs"] == []
    assert detail["processing"]["errors"] == [
        {"index": 2, "taskIdentifier": "hello-world", "error": error.removeprefix("Batch item 2: ")}
    ]


def test_an_invalid_item_aborts_a_batch_even_when_it_could_not_seal_yet(api):
    batch_id = create(api, 5).json()["id"]
    response = stream(api, batch_id, ndjson([item(0), item(1, tags=["t"] * 3 + [f"x{n}" for n in range(10)])]))
    assert response.status_code == 422 and "Batch item 1" in response.json()["error"]
    assert Batch.objects.get(pk=batch_id).status == BatchStatus.ABORTED


def test_items_for_an_aborted_batch_are_422(api):
    batch_id = create(api, 1).json()["id"]
    stream(api, batch_id, ndjson([item(0, maxAttempts=0)]))
    response = stream(api, batch_id, ndjson([item(0)]))
    assert response.status_code == 422 and "aborted" in response.json()["error"]
    assert not Run.objects.exists()


@pytest.mark.parametrize(
    ("line", "rule"),
    [
        ({"index": 1, "payload": "{}"}, "task"),
        ({"index": 1, "task": "bad task id"}, "taskId"),
        ({"index": 1, "task": "hello-world", "payload": "not json", "options": {"payloadType": "application/json"}},
         "payload"),
        ({"index": 1, "task": "hello-world", "options": "fast"}, "options"),
        ({"index": 1, "task": "hello-world", "options": {"delay": "yesterday"}}, "delay"),
    ],
)  # fmt: skip
def test_an_item_breaking_a_rule_is_422_naming_index_and_rule(api, line, rule):
    batch_id = create(api, 2).json()["id"]
    response = stream(api, batch_id, ndjson([item(0), line]))
    assert response.status_code == 422
    assert "Batch item 1" in response.json()["error"] and rule in response.json()["error"]
    assert Batch.objects.get(pk=batch_id).status == BatchStatus.ABORTED


@pytest.mark.parametrize("line", [{"task": "hello-world"}, {"index": -1, "task": "x"}, {"index": "1"}, [1, 2]])
def test_an_item_without_a_usable_index_is_422_naming_its_line(api, line):
    batch_id = create(api, 2).json()["id"]
    response = stream(api, batch_id, ndjson([item(0), line]))
    assert response.status_code == 422 and "line 2" in response.json()["error"]


def test_an_index_past_the_run_count_is_422(api):
    batch_id = create(api, 2).json()["id"]
    response = stream(api, batch_id, ndjson([item(0), item(2)]))
    assert response.status_code == 422 and "Batch item 2" in response.json()["error"]
    assert Batch.objects.get(pk=batch_id).status == BatchStatus.ABORTED


def test_an_unparseable_line_is_400_naming_the_index(api):
    batch_id = create(api, 3).json()["id"]
    body = ndjson([item(0)]) + b'{"index":1,"task":"hello-world","payload":\n' + ndjson([item(2)])
    response = stream(api, batch_id, body)
    assert response.status_code == 400
    assert response.json()["error"].startswith("Batch item 1: not valid JSON")
    assert not Run.objects.exists() and Batch.objects.get(pk=batch_id).status == BatchStatus.ABORTED


def test_an_unparseable_line_without_an_index_names_its_line(api):
    batch_id = create(api, 3).json()["id"]
    response = stream(api, batch_id, ndjson([item(0)]) + b"garbage\n")
    assert response.status_code == 400 and "line 2" in response.json()["error"]


def test_an_item_over_3_mib_is_413_naming_its_index(api):
    batch_id = create(api, 2).json()["id"]
    big = {
        "index": 1,
        "task": "hello-world",
        "payload": "x" * (3 * 1024 * 1024),
        "options": {"payloadType": "text/plain"},
    }
    response = stream(api, batch_id, ndjson([item(0), big]))
    assert response.status_code == 413
    assert "Batch item 1" in response.json()["error"] and "3 MiB" in response.json()["error"]
    assert Batch.objects.get(pk=batch_id).status == BatchStatus.ABORTED


def test_an_item_just_under_3_mib_is_accepted(api):
    batch_id = create(api, 1).json()["id"]
    line = {"index": 0, "task": "hello-world", "payload": "", "options": {"payloadType": "text/plain"}}
    line["payload"] = "x" * (3 * 1024 * 1024 - len(json.dumps(line)))
    response = stream(api, batch_id, ndjson([line]))
    assert response.status_code == 200 and response.json()["sealed"] is True


def test_a_body_over_djangos_in_memory_limit_is_read_line_by_line(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440  # Django's default: request.body would refuse this body
    batch_id = create(api, 1000).json()["id"]
    padding = "p" * 3000
    body = ndjson(
        [{**item(index), "payload": json.dumps({"json": {"i": index, "pad": padding}})} for index in range(1000)]
    )
    assert len(body) > 3_000_000
    response = stream(api, batch_id, body)
    assert response.status_code == 200 and response.json()["itemsAccepted"] == 1000
    assert Run.objects.filter(batch_id=batch_id).count() == 1000


def asgi_request(api, batch_id: str, data: bytes, content_type: str = NDJSON) -> tuple[ASGIRequest, Any]:
    """The request daphne hands Django for a chunked body: spooled to a file, no Content-Length."""
    body = tempfile.SpooledTemporaryFile(max_size=64 * 1024)  # noqa: SIM115 - the request owns it, as under daphne
    body.write(data)
    body.seek(0)
    headers = [(b"authorization", f"Bearer {api.key}".encode()), (b"content-type", content_type.encode())]
    scope = {
        "type": "http",
        "method": "POST",
        "path": f"/api/v3/batches/{batch_id}/items",
        "query_string": b"",
        "headers": [*headers, (b"transfer-encoding", b"chunked")],
    }
    request = ASGIRequest(scope, body)
    assert "CONTENT_LENGTH" not in request.META
    return request, body


def test_a_chunked_body_as_daphne_hands_it_over_is_read(api):
    batch_id = create(api, 300).json()["id"]
    request, body = asgi_request(api, batch_id, ndjson([item(index) for index in range(300)]))
    response = batches.stream_batch_items(request, batch_id=batch_id)
    assert response.status_code == 200, response.content
    assert json.loads(response.content)["sealed"] is True
    assert Run.objects.filter(batch_id=batch_id).count() == 300
    assert body.read() == b""


@pytest.mark.parametrize(
    ("lines", "content_type", "status"),
    [([item(0, machine="huge-9x"), item(1)], NDJSON, 422), ([item(0)], "application/json", 415)],
)
def test_an_error_is_answered_only_after_the_body_was_read_to_its_end(api, lines, content_type, status):
    batch_id = create(api, 2).json()["id"]
    request, body = asgi_request(api, batch_id, ndjson(lines * 500), content_type)
    assert batches.stream_batch_items(request, batch_id=batch_id).status_code == status
    assert body.tell() == len(ndjson(lines * 500)) and body.read() == b""


def test_blank_lines_and_crlf_are_ignored(api):
    batch_id = create(api, 2).json()["id"]
    body = b"\n" + ndjson([item(0)], newline="\r\n") + b"   \n\n" + json.dumps(item(1)).encode()
    response = stream(api, batch_id, body)
    assert response.status_code == 200 and response.json()["itemsAccepted"] == 2 and response.json()["sealed"]


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "application/x-ndjson-ish"])
def test_a_wrong_content_type_is_415(api, content_type):
    batch_id = create(api, 1).json()["id"]
    response = stream(api, batch_id, ndjson([item(0)]), content_type=content_type)
    assert response.status_code == 415 and "application/x-ndjson" in response.json()["error"]
    assert Batch.objects.get(pk=batch_id).status == BatchStatus.PENDING


def test_application_ndjson_with_a_charset_is_accepted(api):
    batch_id = create(api, 1).json()["id"]
    response = stream(api, batch_id, ndjson([item(0)]), content_type="application/ndjson; charset=utf-8")
    assert response.status_code == 200 and response.json()["sealed"] is True


def test_an_unknown_batch_is_a_json_404(api):
    response = stream(api, "batch_doesnotexist0000000000", ndjson([item(0)]))
    assert response.status_code == 404 and response.json() == {"error": "Batch not found"}
    assert api.get("/api/v2/batches/batch_doesnotexist0000000000").status_code == 404


def test_a_batch_of_another_environment_is_404(api, prod_api):
    batch_id = create(api, 1).json()["id"]
    assert stream(prod_api, batch_id, ndjson([item(0)])).status_code == 404
    assert prod_api.get(f"/api/v2/batches/{batch_id}").status_code == 404
    assert Batch.objects.get(pk=batch_id).status == BatchStatus.PENDING


def test_the_batch_endpoints_need_a_key(client):
    assert client.post("/api/v3/batches", data={"runCount": 1}, content_type="application/json").status_code == 401


def test_retrieve_of_a_pending_batch_omits_what_it_does_not_have(api):
    batch_id = create(api, 2).json()["id"]
    body = api.get(f"/api/v2/batches/{batch_id}").json()
    assert body == {
        "id": batch_id,
        "status": "PENDING",
        "createdAt": body["createdAt"],
        "updatedAt": body["updatedAt"],
        "runCount": 2,
        "runs": [],
        "processing": {"errors": []},
    }
    assert body["createdAt"].endswith("+00:00")


def test_retrieve_of_a_completed_batch_lists_its_runs_in_item_order(api):
    key = {"idempotencyKey": "a" * 64, "idempotencyKeyOptions": {"key": "nightly", "scope": "run"}}
    batch_id = create(api, 3, **key).json()["id"]
    stream(api, batch_id, ndjson(list(reversed(SDK_ITEMS))))
    body = api.get(f"/api/v2/batches/{batch_id}").json()
    assert body["status"] == "COMPLETED" and body["idempotencyKey"] == "nightly"
    payloads = [json.loads(Run.objects.get(pk=run_id).payload)["json"]["i"] for run_id in body["runs"]]
    assert payloads == [0, 1, 2]
    assert body["processing"]["completedAt"].endswith("+00:00") and body["processing"]["errors"] == []
    assert None not in body.values() and None not in body["processing"].values()
