"""The trigger and batch hot paths (issue #8): few round trips, the same rows as the ORM wrote.

A trigger without keys is two queries in autocommit (the API key with the task's definition,
one statement writing the run, its first timeline event and its queue and waking the engine);
a 1,000-item batch stream writes each chunk with one statement.
"""

from __future__ import annotations

import json
from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bench.batch import ndjson_items
from runs import events
from runs.models import Queue, Run, RunEvent
from tests import factories

TRIGGER_BODY = {"payload": '{"json":{"hello":"world"}}', "options": {"payloadType": "application/super+json"}}


@pytest.fixture
def hello_world(db):
    return factories.task_definition("hello-world", queue="greetings", concurrency_limit=3, max_attempts=4)


def test_a_trigger_is_two_queries_and_no_transaction(api, hello_world):
    assert api.trigger(body=TRIGGER_BODY).status_code == 200  # the key's last_used_at is written once
    with CaptureQueriesContext(connection) as queries:
        response = api.trigger(body=TRIGGER_BODY)
    assert response.status_code == 200, response.json()
    statements = [query["sql"] for query in queries.captured_queries]
    # Was 8 (BEGIN, queue SELECT, 2 INSERTs, NOTIFY, COMMIT), then 3 (the key and the task apart).
    assert len(statements) == 2, "\n".join(statements)
    assert "runs_apikey" in statements[0] and "runs_taskdefinition" in statements[0]
    assert not any(sql.startswith(("BEGIN", "SAVEPOINT", "COMMIT")) for sql in statements)
    assert "pg_notify" in statements[-1]


def test_a_run_written_in_one_statement_reads_back_as_the_orm_wrote_it(api, hello_world):
    now = timezone.now()
    metadata = {"quote": 'it\'s "ok"', "unicode": "héllo ✓", "nested": {"list": [1, 2.5, None, True]}, "n": None}
    options = {
        "payloadType": "application/super+json",
        "tags": ["b-tag", "a-tag"],
        "metadata": metadata,
        "ttl": "10m",
        "delay": "1h",
        "priority": 2,
        "concurrencyKey": "user-1",
        "region": "eu",
    }
    response = api.trigger(body={"payload": '{"json":{"x":"\\u0000-free"}}', "options": options})
    assert response.status_code == 200, response.json()
    run = Run.objects.get(pk=response.json()["id"])
    assert run.status == "DELAYED" and run.queue == "greetings" and run.max_attempts == 4
    assert run.tags == ["a-tag", "b-tag"] and run.metadata == metadata and run.options == options
    assert run.payload == '{"json":{"x":"\\u0000-free"}}' and run.ttl == 600 and run.priority_ms == 2000
    assert run.concurrency_key == "user-1" and run.region == "eu" and run.trigger_source == "api"
    assert run.created_at == run.updated_at and abs(run.created_at - now) < timedelta(seconds=5)
    assert run.delay_until == run.created_at + timedelta(hours=1)  # to the microsecond
    assert run.idempotency_key is None and run.error is None and run.debounce is None
    (event,) = RunEvent.objects.filter(run=run)
    assert (event.from_status, event.to_status, event.reason) == ("", "DELAYED", "triggered with a delay")
    assert event.at == run.created_at and event.data == {} and event.actor.startswith("api:")
    # The queue is created on first use with the limit the task declares, and kept.
    assert Queue.objects.get(environment=run.environment, name="greetings").concurrency_limit == 3
    assert api.trigger(body=TRIGGER_BODY).status_code == 200
    assert Queue.objects.filter(name="greetings").count() == 1


def test_a_queue_limit_given_at_trigger_time_still_becomes_the_queues_limit(api, hello_world):
    body = {**TRIGGER_BODY, "options": {"queue": {"name": "limited", "concurrencyLimit": 7}}}
    assert api.trigger(body=body).status_code == 200
    assert Queue.objects.get(name="limited").concurrency_limit == 7


@pytest.mark.django_db(transaction=True)
def test_a_trigger_wakes_the_engine_when_its_run_is_committed(api):
    factories.task_definition("hello-world")
    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as listener:
        listener.execute(f"LISTEN {events.ENGINE_CHANNEL}")
        response = api.trigger(body=TRIGGER_BODY)
        assert response.status_code == 200
        woken = list(listener.notifies(timeout=5, stop_after=1))
    assert [note.channel for note in woken] == [events.ENGINE_CHANNEL]
    assert Run.objects.get(pk=response.json()["id"]).status == "QUEUED"


def test_a_thousand_item_batch_stream_takes_a_few_queries_per_chunk(api, settings):
    factories.task_definition("bench-noop")
    settings.RUNYARD_BATCH_RATE_LIMIT_MAX = 10_000
    created = api.post("/api/v3/batches", {"runCount": 1000, "taskIdentifiers": ["bench-noop"]})
    assert created.status_code in (200, 202), created.json()
    body = b"".join(ndjson_items(1000))
    with CaptureQueriesContext(connection) as queries:
        response = api.client.post(
            f"/api/v3/batches/{created.json()['id']}/items",
            data=body,
            content_type="application/x-ndjson",
            headers=api.headers(),
        )
    assert response.json()["sealed"] is True, response.json()
    assert len(queries.captured_queries) <= 60  # was 95: two counts around every staged chunk, compiled INSERTs
    runs = Run.objects.filter(batch_id=created.json()["id"])
    assert runs.count() == 1000 and RunEvent.objects.filter(run__in=runs).count() == 1000
    run = runs.get(tags=["item-7"])
    assert json.loads(run.payload) == {"json": {"n": 7}} and run.status == "QUEUED"


def test_a_repeated_batch_stream_counts_the_items_it_already_staged(api, settings):
    factories.task_definition("bench-noop")
    created = api.post("/api/v3/batches", {"runCount": 3, "taskIdentifiers": ["bench-noop"]})
    path = f"/api/v3/batches/{created.json()['id']}/items"
    lines = list(ndjson_items(3))

    def stream(*items: bytes) -> dict[str, object]:
        data = b"".join(items)
        headers = api.headers()
        return api.client.post(path, data=data, content_type="application/x-ndjson", headers=headers).json()

    first = stream(lines[0], lines[1], lines[0])
    assert (first["itemsAccepted"], first["itemsDeduplicated"], first["sealed"]) == (2, 1, False)
    second = stream(*lines)
    assert (second["itemsAccepted"], second["itemsDeduplicated"], second["sealed"]) == (1, 2, True)
