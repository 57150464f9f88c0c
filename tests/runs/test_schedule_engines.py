"""Several engines firing the same schedules: each tick fires exactly once, and an engine killed
while it holds a tick leaves it to the next engine, which fires it once."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.db import connection

from runs import engine
from runs.models import Environment, Run, Schedule, ScheduleTick
from runs.schedule_spec import ScheduleSpec
from tests import factories
from tests.live import database_url

pytestmark = pytest.mark.django_db(transaction=True)  # each engine has its own connection

T0 = datetime(2026, 11, 28, 12, 0, 30, tzinfo=UTC)
SCHEDULES = 150  # more than one engine tick fires (FIRE_BATCH): both engines get work
TICKS = [datetime(2026, 11, 28, 12, minute, 0, 5000, tzinfo=UTC) for minute in (1, 2, 3)]

HOLDING_ENGINE = """
import sys
import django

django.setup()
from datetime import datetime
from django.db import transaction
from runs.engine import schedules

now = datetime.fromisoformat(sys.argv[1])
with transaction.atomic():
    fired = sum(schedules._fire_locked(schedule_id, now) for schedule_id in sys.argv[2:])
    print(fired, flush=True)
    sys.stdin.read()  # holds the claim (the row locks, the uncommitted runs) until it is killed
"""


def every_minute(environment: Environment, count: int) -> list[Schedule]:
    factories.task_definition("hello-world")
    spec = ScheduleSpec(task_id="hello-world", cron="* * * * *")
    return [engine.create_schedule(environment=environment, spec=spec, actor="sdk", now=T0)[0] for _ in range(count)]


def engine_thread(now: datetime, start: threading.Barrier, fired: list[int], errors: list[BaseException]) -> None:
    try:
        start.wait(timeout=30)
        # The tick's schedule step (the rest of engine.tick would send the runs to Celery).
        while Schedule.objects.filter(next_fire_at__lte=now).exists():
            fired.append(engine.fire_due_schedules(now=now))
    except BaseException as exc:  # noqa: BLE001 - reported by the test
        errors.append(exc)
    finally:
        connection.close()


def test_two_engines_ticking_at_the_same_moment_fire_each_tick_exactly_once(dev: Environment) -> None:
    schedules = every_minute(dev, SCHEDULES)
    by_engine: list[list[int]] = [[], []]
    for now in TICKS:
        start, errors = threading.Barrier(2), []
        engines = [threading.Thread(target=engine_thread, args=(now, start, own, errors)) for own in by_engine]
        for thread in engines:
            thread.start()
        for thread in engines:
            thread.join(timeout=120)
        assert not errors
    assert all(sum(own) > 0 for own in by_engine), "both engines fired ticks"
    assert sum(map(sum, by_engine)) == SCHEDULES * len(TICKS)
    fired = Counter(Run.objects.values_list("schedule_id", flat=True))
    assert fired == {schedule.id: len(TICKS) for schedule in schedules}
    ticks = Counter(ScheduleTick.objects.values_list("schedule_id", "at"))
    assert len(ticks) == SCHEDULES * len(TICKS) and set(ticks.values()) == {1}
    assert set(ScheduleTick.objects.values_list("run_id", flat=True)) == set(Run.objects.values_list("id", flat=True))


@pytest.fixture
def holding_engine(dev: Environment) -> Iterator[tuple[subprocess.Popen[str], list[Schedule]]]:
    """An engine process that has fired the schedules' 12:01 tick and holds its transaction open."""
    schedules = every_minute(dev, 3)
    env = {**os.environ, "DATABASE_URL": database_url(settings.DATABASE_URL, connection.settings_dict["NAME"])}
    args = [sys.executable, "-c", HOLDING_ENGINE, TICKS[0].isoformat(), *(s.id for s in schedules)]
    child = subprocess.Popen(args, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield child, schedules
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=30)


def first_line(child: subprocess.Popen[str], timeout: float) -> str:
    assert child.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(child.stdout, selectors.EVENT_READ)
        assert selector.select(timeout), f"no output from the engine process in {timeout}s"
    return child.stdout.readline().strip()


def fire_until(now: datetime, done: int, timeout: float) -> int:
    """engine.tick until it has fired `done` schedules' ticks or the deadline passes."""
    deadline = datetime.now(UTC) + timedelta(seconds=timeout)
    fired = 0
    while fired < done and datetime.now(UTC) < deadline:
        fired += engine.fire_due_schedules(now=now)
    return fired


def test_an_engine_killed_while_holding_a_tick_leaves_it_to_another_that_fires_it_once(
    holding_engine: tuple[subprocess.Popen[str], list[Schedule]],
) -> None:
    child, schedules = holding_engine
    assert first_line(child, 60) == "3"  # it made three runs, not yet committed
    assert engine.fire_due_schedules(now=TICKS[0]) == 0  # locked: skipped, not waited for
    assert not Run.objects.exists() and not ScheduleTick.objects.exists()

    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert fire_until(TICKS[0], 3, timeout=60) == 3  # PostgreSQL rolled the dead engine's work back

    runs = list(Run.objects.values_list("schedule_id", "id"))
    assert sorted(schedule_id for schedule_id, _ in runs) == sorted(s.id for s in schedules)
    ticks = set(ScheduleTick.objects.values_list("schedule_id", "run_id"))
    assert ticks == set(runs)  # no run without its tick, no tick without its run
    assert engine.fire_due_schedules(now=TICKS[0]) == 0
