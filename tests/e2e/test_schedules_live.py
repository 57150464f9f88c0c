"""A schedule fired by the real engine process: its run goes through the worker and completes
with the scheduled payload."""

from __future__ import annotations

from typing import Any

import pytest

from tests.live import LiveStack, poll

pytestmark = pytest.mark.e2e

# Run in the stack's own environment: a schedule whose next tick is made due now, and the
# engine woken as a change to a schedule wakes it.
MAKE_DUE = """
from datetime import timedelta
from django.utils import timezone
from runs import engine, events
from runs.models import Environment, Schedule
from runs.schedule_spec import ScheduleSpec

spec = ScheduleSpec(task_id="hello-world-2", cron="0 0 1 1 *", external_id="e2e", payload={"n": 1})
schedule, _ = engine.create_schedule(environment=Environment.objects.get(slug="dev"), spec=spec, actor="e2e")
Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=timezone.now() - timedelta(seconds=1))
events.wake_engine()
print(schedule.id)
"""


def scheduled_run(stack: LiveStack, schedule_id: str) -> str | None:
    with stack.db() as conn:
        row = conn.execute("SELECT id FROM runs_run WHERE schedule_id = %s", (schedule_id,)).fetchone()
    return str(row[0]) if row else None


def test_the_engine_fires_a_due_schedule_and_its_run_completes_with_the_scheduled_payload(
    live_stack: LiveStack,
) -> None:
    schedule_id = live_stack.manage("shell", "-c", MAKE_DUE).strip().splitlines()[-1]
    run_id = poll(lambda: scheduled_run(live_stack, schedule_id), bool, f"schedule {schedule_id} to fire", 30)
    assert run_id is not None
    run: dict[str, Any] = live_stack.run_until(run_id, lambda r: r["status"] == "COMPLETED", "to complete")
    received = run["output"]["received"]
    assert (received["scheduleId"], received["externalId"], received["payload"]) == (schedule_id, "e2e", {"n": 1})
    assert len(received["upcoming"]) == 5
    with live_stack.db() as conn:
        ticks = conn.execute("SELECT run_id FROM runs_scheduletick WHERE schedule_id = %s", (schedule_id,)).fetchall()
        due = conn.execute("SELECT next_fire_at > now() FROM runs_schedule WHERE id = %s", (schedule_id,)).fetchone()
    assert ticks == [(run_id,)]
    assert due == (True,)
