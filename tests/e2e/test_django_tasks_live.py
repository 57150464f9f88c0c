"""A django-tasks @task enqueued into a live Runyard runs on its worker to COMPLETED."""

from __future__ import annotations

import json

import pytest

from tests.live import LiveStack

pytestmark = pytest.mark.e2e

ENQUEUE = """
import json
from tests.e2e.django_tasks_example import add, shout
print(json.dumps([add.enqueue(2, 3).id, shout.enqueue("hi", times=2).id]))
"""
RESULTS = """
import json
from tests.e2e.django_tasks_example import add, shout
found = [add.get_result({add_id!r}), shout.get_result({shout_id!r})]
print(json.dumps([[r.status, r.return_value, r.args, r.kwargs, len(r.worker_ids)] for r in found]))
"""


def last_line(output: str) -> str:
    """The script's own line: Django's shell may print a banner first."""
    return output.strip().splitlines()[-1]


def test_an_enqueued_task_completes_on_the_worker_with_its_return_value(live_stack: LiveStack) -> None:
    # The enqueuing program is another Django process using the stack's settings and database.
    add_id, shout_id = json.loads(last_line(live_stack.manage("shell", "-c", ENQUEUE)))
    for run_id, output in ((add_id, 5), (shout_id, "HI HI")):
        run = live_stack.run_until(run_id, lambda r: r["isCompleted"], "to complete")
        assert (run["status"], run["output"]) == ("COMPLETED", output)
        assert run["taskIdentifier"].startswith("tests.e2e.django_tasks_example.")
    results = json.loads(last_line(live_stack.manage("shell", "-c", RESULTS.format(add_id=add_id, shout_id=shout_id))))
    assert results == [
        ["SUCCESSFUL", 5, [2, 3], {}, 1],
        ["SUCCESSFUL", "HI HI", ["hi"], {"times": 2}, 1],
    ]
