"""Two creates of one new deduplication key at once make one schedule (replicas of an app
that each create their schedule at startup do exactly this)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection, transaction

from runs import engine
from runs.models import AuditEntry, Schedule
from runs.schedule_spec import ScheduleSpec
from tests import factories

SPEC = ScheduleSpec(task_id="hello-world", cron="@daily", deduplication_key="startup")


def lock_waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        row = cursor.fetchone()
    return int(row[0]) if row else 0


@pytest.mark.django_db(transaction=True)
def test_a_create_that_waited_on_another_create_of_its_key_updates_that_schedule() -> None:
    env = factories.environment("dev")
    inserted, release = threading.Event(), threading.Event()
    second: dict[str, Any] = {}

    def first_create() -> None:
        try:
            with transaction.atomic():
                engine.create_schedule(environment=env, spec=SPEC, actor="a")
                inserted.set()
                release.wait(30)  # the insert stays uncommitted while the second create runs
        finally:
            connection.close()

    def second_create() -> None:
        try:
            second["result"] = engine.create_schedule(
                environment=env, spec=SPEC.with_changes(cron="@hourly"), actor="b"
            )
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            second["error"] = exc
        finally:
            connection.close()

    first = threading.Thread(target=first_create)
    first.start()
    assert inserted.wait(30)
    other = threading.Thread(target=second_create)
    other.start()
    deadline = time.monotonic() + 30
    while lock_waiters() == 0:  # the second insert waits on the first's unique key
        assert time.monotonic() < deadline, "the second create never waited on the first"
        threading.Event().wait(0.01)
    release.set()
    first.join(30)
    other.join(30)
    assert "error" not in second, second.get("error")
    schedule, created = second["result"]
    assert created is False
    stored = Schedule.objects.get(environment=env, deduplication_key="startup")
    assert (stored.pk, stored.cron) == (schedule.pk, "@hourly")
    actions = sorted(AuditEntry.objects.filter(target=stored.pk).values_list("action", flat=True))
    assert actions == ["schedule.create", "schedule.update"]


@pytest.mark.django_db(transaction=True)
def test_eight_concurrent_creates_of_one_key_make_one_schedule() -> None:
    env = factories.environment("dev")

    def create(n: int) -> str:
        try:
            return engine.create_schedule(environment=env, spec=SPEC.with_changes(external_id=str(n)), actor="t")[0].pk
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = set(pool.map(create, range(8)))
    assert len(ids) == 1
    assert Schedule.objects.filter(deduplication_key="startup").count() == 1
