"""Schema-driven fuzzing of every API operation: no 5xx, and every response fits the document.

schemathesis reads /api/openapi.json from the Django WSGI application and calls it
in-process (the test database, a real API key). Examples are bounded and derandomized, so
the test is fast and the same on every run.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from runs import engine, ratelimit
from runs.models import Run
from runs.packets import SUPERJSON
from runs.registry import Retry
from runs.schedule_spec import ScheduleSpec
from runs.sdk import batch, tasks
from tests import factories


@schemathesis.serializer("application/x-ndjson", "application/ndjson")
def ndjson(ctx: Any, value: Any) -> bytes:
    """A list of items as the SDK streams them: one JSON document per line."""
    items = value if isinstance(value, list) else [value]
    return "".join(json.dumps(item) + "\n" for item in items).encode()


schema = schemathesis.openapi.from_wsgi("/api/openapi.json", get_wsgi_application())


@pytest.fixture
def real_ids(api_key: str) -> dict[str, str]:
    """Ids that exist, so the fuzzer also sees the shapes of real runs, batches and schedules: a
    delayed run with every option, a completed one, a failed one (with a stack trace), a batch
    and a schedule with every field."""
    delayed = tasks.trigger("hello-world", {"n": 1}, {"delay": "1h", "tags": ["a"], "metadata": {"m": 1}, "ttl": 60})
    handle = batch.trigger([{"id": "hello-world", "payload": i} for i in range(2)])
    completed, failed = handle.run_ids
    engine.admit(now=timezone.now())
    for run_id, ok in ((completed, True), (failed, False)):
        attempt = engine.start_attempt(run_id=run_id, worker="fuzz")
        assert attempt is not None
        if ok:
            engine.complete_attempt(run_id=run_id, attempt=attempt.number, output='{"json":2}', output_type=SUPERJSON)
        else:
            error = {"message": "boom", "name": "ValueError", "stackTrace": "Traceback ..."}
            engine.fail_attempt(run_id=run_id, attempt=attempt.number, error=error, retry=Retry(max_attempts=1))
    spec = ScheduleSpec(
        task_id="hello-world", cron="@hourly", timezone="Europe/Paris", external_id="e", deduplication_key="d"
    )
    schedule, _ = engine.create_schedule(environment=factories.environment("dev"), spec=spec, actor="fuzz")
    Run.objects.filter(pk=delayed.id).update(schedule_id=schedule.id)
    return {"runId": ",".join([delayed.id, completed, failed]), "batchId": handle.batch_id, "scheduleId": schedule.id}


@pytest.fixture
def api_key(db: None) -> Iterator[str]:
    """A dev key; the WSGI handler must not close the test's connection (as Django's test
    Client, it is kept open across requests so the test transaction survives)."""
    factories.task_definition("hello-world")
    refill_batch_buckets()
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield factories.api_key("dev")
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
        refill_batch_buckets()  # the fuzzer empties them: later tests start full


def refill_batch_buckets() -> None:
    redis = ratelimit.redis_client()
    for name in redis.scan_iter(f"{ratelimit.KEY_PREFIX}:*"):
        redis.delete(name)


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_operation_answers_a_server_error_or_breaks_its_schema(
    case: schemathesis.Case, api_key: str, real_ids: dict[str, str]
) -> None:
    checks = [not_a_server_error, response_schema_conformance]
    headers = {"Authorization": f"Bearer {api_key}"}
    case.call_and_validate(headers=headers, checks=checks)
    # Generated ids hardly ever exist: the same request again on a run or batch that does.
    if case.path_parameters and set(case.path_parameters) & set(real_ids):
        # Which real run: picked by the generated value, so the choice is as repeatable as it is.
        generated = str(case.path_parameters.get("runId", ""))
        runs = real_ids["runId"].split(",")
        real = {**real_ids, "runId": runs[zlib.crc32(generated.encode()) % len(runs)]}
        case.path_parameters.update({k: v for k, v in real.items() if k in case.path_parameters})
        case.call_and_validate(headers=headers, checks=checks)
