"""Request body caps of the API: JSON actions 1 MiB, trigger and packet uploads the payload
limit (10 MB), batch item streams their own limit; refused before the view reads anything."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from runs import packets, storage
from runs.models import Batch, BatchStatus, Run
from tests import factories
from tests.api.test_batches import NDJSON, create, item, ndjson
from tests.asgi import chunked_post

pytestmark = pytest.mark.django_db

MiB = 1024 * 1024
PATH = "trigger/packet_bodysize/payload.json"


def test_a_trigger_over_10_mb_is_refused_from_its_headers_before_anything_else(client: Client) -> None:
    # No API key either: the size alone decides, and the 2 real bytes are never read.
    answer = client.post(
        "/api/v1/tasks/hello-world/trigger", "{}", content_type="application/json", CONTENT_LENGTH=str(10 * MiB + 1)
    )
    assert answer.status_code == 413
    assert answer.json() == {"error": "Payload is too large: the limit is 10 MB"}


def test_a_trigger_of_5_mib_is_accepted_above_the_1_mib_default(api: Any) -> None:
    payload = json.dumps({"json": "x" * (5 * MiB)})
    answer = api.trigger(body={"payload": payload, "options": {"payloadType": "application/super+json"}})
    assert answer.status_code == 200, answer.content
    assert Run.objects.filter(pk=answer.json()["id"]).exists()


def signed_put_url(api: Any) -> str:
    answer = api.client.put(f"/api/v2/packets/{PATH}", content_type="application/json", headers=api.headers())
    return str(answer.json()["presignedUrl"])


def test_a_packet_upload_of_5_mib_is_stored_and_one_over_10_mb_refused_from_its_headers(api: Any) -> None:
    url, key = signed_put_url(api), packets.storage_key(factories.environment("dev").pk, PATH)
    declared = Client().put(url, data="x", content_type="text/plain", CONTENT_LENGTH=str(10 * MiB + 1))
    assert declared.status_code == 413
    assert declared.json() == {"error": "Payload is too large: the limit is 10 MB"}
    assert not storage.exists(key)
    assert Client().put(url, data="y" * (5 * MiB), content_type="text/plain").status_code == 200
    assert len(storage.get(key)[0]) == 5 * MiB


def test_a_json_action_over_1_mib_is_413_naming_the_limit(api: Any) -> None:
    answer = api.post("/api/v3/batches", {"runCount": 1, "pad": "x" * MiB})
    assert answer.status_code == 413
    assert answer.json() == {"error": "Request body is too large: the limit is 1 MB"}
    assert not Batch.objects.exists()


def lines(count: int, pad: int) -> bytes:
    return ndjson([{**item(index), "payload": json.dumps({"json": {"pad": "p" * pad}})} for index in range(count)])


def test_a_chunked_batch_stream_within_its_limit_is_accepted_above_the_1_mib_default(api: Any) -> None:
    batch_id = create(api, 100).json()["id"]
    body = lines(100, 30_000)
    assert len(body) > 2 * MiB
    headers = {"authorization": f"Bearer {api.key}", "content-type": NDJSON}
    answer = chunked_post(f"/api/v3/batches/{batch_id}/items", body, headers)
    assert answer.status == 200, answer.body
    assert answer.json()["itemsAccepted"] == 100 and answer.json()["sealed"] is True


def test_a_chunked_batch_stream_over_its_limit_is_413_and_stages_nothing(api: Any, settings: Any) -> None:
    settings.RUNYARD_MAX_BATCH_STREAM_BYTES = 64 * 1024
    batch_id = create(api, 10).json()["id"]
    headers = {"authorization": f"Bearer {api.key}", "content-type": NDJSON}
    answer = chunked_post(f"/api/v3/batches/{batch_id}/items", lines(10, 10_000), headers)
    assert answer.status == 413
    assert answer.json() == {"error": "Batch items stream is too large: the limit is 64 KB"}
    batch = Batch.objects.get(pk=batch_id)
    assert batch.status == BatchStatus.PENDING and not batch.items.exists()


def test_a_batch_stream_over_256_mib_is_refused_from_its_headers(api: Any) -> None:
    batch_id = create(api, 1).json()["id"]
    path = f"/api/v3/batches/{batch_id}/items"
    answer = api.client.post(
        path, data=ndjson([item(0)]), content_type=NDJSON, headers=api.headers(), CONTENT_LENGTH=str(256 * MiB + 1)
    )
    assert answer.status_code == 413
    assert answer.json() == {"error": "Batch items stream is too large: the limit is 256 MB"}
