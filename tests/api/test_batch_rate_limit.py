"""The batch rate limit on POST /api/v3/batches: 429s the SDK can act on (reference 2.5, 2.6)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from runs import ratelimit
from runs.models import Batch

pytestmark = pytest.mark.django_db

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


@pytest.fixture(autouse=True)
def small_bucket(db, settings):
    """10 tokens, 2 more every 10 s; every test starts with full buckets at NOW."""
    settings.RUNYARD_BATCH_RATE_LIMIT_MAX = 10
    settings.RUNYARD_BATCH_RATE_LIMIT_REFILL = 2
    settings.RUNYARD_BATCH_RATE_LIMIT_INTERVAL = "10s"
    redis = ratelimit.redis_client()
    for pattern in (f"{ratelimit.KEY_PREFIX}:*", "runyard:batch-request:*"):
        for name in redis.scan_iter(pattern):
            redis.delete(name)
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def create(api, run_count: int, **headers: str):
    return api.post("/api/v3/batches", {"runCount": run_count}, **headers)


def test_over_the_limit_is_429_with_the_headers_the_sdk_reads(api):
    assert create(api, 8).status_code == 202
    response = create(api, 5)  # 2 left: 3 more needed, two refills away
    assert response.status_code == 429
    assert "rate limit" in response.json()["error"]
    assert response["x-ratelimit-limit"] == "10"
    assert response["x-ratelimit-remaining"] == "2"
    assert response["x-ratelimit-reset"] == str(NOW_MS + 20_000)  # epoch milliseconds, in the future
    assert response["retry-after"] == "20"
    assert "x-should-retry" not in response  # 20 s: the SDK's own wait-and-retry is the right thing
    assert Batch.objects.count() == 1


def test_tokens_refill_over_time(api, small_bucket):
    create(api, 10)
    assert create(api, 5).status_code == 429
    small_bucket.shift(timedelta(seconds=19))
    assert create(api, 5).status_code == 429
    small_bucket.shift(timedelta(seconds=11))  # three refills: 6 tokens
    assert create(api, 5).status_code == 202
    response = create(api, 2)
    assert response.status_code == 429 and response["x-ratelimit-remaining"] == "1"


def test_a_reset_far_away_tells_the_sdk_not_to_retry(api):
    create(api, 10)
    response = create(api, 10)  # five refills: 50 s
    assert response["x-ratelimit-reset"] == str(NOW_MS + 50_000)
    assert response["retry-after"] == "50"
    assert response["x-should-retry"] == "false"


def test_retry_after_rounds_up_to_whole_seconds(api, small_bucket):
    create(api, 10)
    small_bucket.shift(timedelta(milliseconds=9_500))
    response = create(api, 1)
    assert response["x-ratelimit-reset"] == str(NOW_MS + 10_000)
    assert response["retry-after"] == "1"


def test_a_refused_create_takes_no_tokens(api):
    create(api, 6)
    assert create(api, 5).status_code == 429
    assert create(api, 4).status_code == 202


def test_a_batch_larger_than_the_bucket_is_400_naming_the_limit(api):
    response = create(api, 11)
    assert response.status_code == 400
    assert "limit of 10 items" in response.json()["error"]
    assert create(api, 10).status_code == 202  # and took nothing


def test_a_repeated_batch_key_costs_nothing(api):
    body = {"runCount": 10, "idempotencyKey": "k" * 64}
    assert api.post("/api/v3/batches", body).status_code == 202
    again = api.post("/api/v3/batches", body)
    assert again.status_code == 200 and again.json()["isCached"] is True


def test_a_request_retried_after_a_429_creates_its_batch_once_tokens_are_back(api, small_bucket):
    headers = {"x-trigger-request-idempotency-key": "retry-me"}
    create(api, 10)
    assert create(api, 4, **headers).status_code == 429
    small_bucket.shift(timedelta(seconds=20))
    first = create(api, 4, **headers)
    assert first.status_code == 202
    assert create(api, 4, **headers).json()["id"] == first.json()["id"]  # a replay is not charged again


def test_each_environment_has_its_own_bucket(api, prod_api):
    create(api, 10)
    assert create(api, 1).status_code == 429
    assert create(prod_api, 10).status_code == 202


def test_streaming_items_is_not_charged_again(api):
    batch_id = create(api, 10).json()["id"]
    lines = "".join(f'{{"index":{i},"task":"hello-world"}}\n' for i in range(10)).encode()
    path = f"/api/v3/batches/{batch_id}/items"
    response = api.client.post(path, data=lines, content_type="application/x-ndjson", headers=api.headers())
    assert response.status_code == 200 and response.json()["sealed"] is True
