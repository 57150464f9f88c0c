"""Plain Celery tasks published in a process of the project become runs the live stack's worker
runs: Delayed with a countdown, completed with their result, retried by self.retry(), canceled
by a revoke, and triggered again from the API with edited args."""

from __future__ import annotations

import json

import pytest

from tests.live import LiveStack

pytestmark = pytest.mark.e2e

PUBLISH = """
import json
from example_tasks import add
from tests.e2e.django_tasks_example import flaky, nap
published = [add.apply_async((2, 3), countdown=60), add.delay(2, 3), flaky.delay(), nap.delay(30)]
print(json.dumps([result.id for result in published]))
"""
REVOKE = """
from celery.result import AsyncResult
AsyncResult({celery_id!r}).revoke()
"""


def last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


def run_id_of(stack: LiveStack, celery_id: str) -> str:
    with stack.db() as db:
        row = db.execute("SELECT id FROM runs_run WHERE celery_id = %s", [celery_id]).fetchone()
    assert row is not None, f"no run of celery id {celery_id}"
    return str(row[0])


def test_published_celery_tasks_are_runs_from_delayed_to_completed_retried_and_canceled(live_stack: LiveStack) -> None:
    delayed_id, added_id, flaky_id, nap_id = json.loads(last_line(live_stack.manage("shell", "-c", PUBLISH)))
    delayed = live_stack.run(run_id_of(live_stack, delayed_id))
    assert (delayed["status"], delayed["taskIdentifier"]) == ("DELAYED", "example.add")
    assert delayed["payload"] == {"args": [2, 3], "kwargs": {}}

    added = live_stack.run_until(run_id_of(live_stack, added_id), lambda r: r["isCompleted"], "to complete")
    assert (added["status"], added["output"]) == ("COMPLETED", 5)

    retried = live_stack.run_until(run_id_of(live_stack, flaky_id), lambda r: r["isCompleted"], "to complete")
    assert (retried["status"], retried["output"], retried["attemptCount"]) == ("COMPLETED", 1, 2)

    napping = run_id_of(live_stack, nap_id)
    live_stack.run_until(napping, lambda r: r["status"] == "EXECUTING", "to execute")
    live_stack.manage("shell", "-c", REVOKE.format(celery_id=nap_id))
    canceled = live_stack.run_until(napping, lambda r: r["isCompleted"], "to be canceled")
    assert canceled["status"] == "CANCELED"

    # The operator's trigger of the same task, with args of their own, reaches its worker too.
    again = live_stack.trigger("example.add", {"args": [40, 2], "kwargs": {}})
    assert live_stack.run_until(again, lambda r: r["isCompleted"], "to complete")["output"] == 42
