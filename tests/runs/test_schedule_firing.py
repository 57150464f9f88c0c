"""How the engine fires schedules' ticks: once each, with the scheduled payload, missed ticks
and overlap by the schedule's policy, across daylight saving changes."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.conf import settings

from runs import engine, packets
from runs.engine.scheduler import next_due
from runs.engine.schedules import MISSED_GRACE, celery_arguments
from runs.models import AuditEntry, Environment, Run, RunEvent, Schedule, ScheduleTick
from runs.schedule_spec import ScheduleSpec
from runs.states import RunStatus
from tests import factories

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def frozen_clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def hourly(environment: Environment, now: datetime = T0, **changes: Any) -> Schedule:
    factories.task_definition("hello-world")
    spec = ScheduleSpec(task_id="hello-world", cron="0 * * * *").with_changes(**changes)
    schedule, _ = engine.create_schedule(environment=environment, spec=spec, actor="user:ops", now=now)
    return schedule


def tick_at(clock: time_machine.Traveller, moment: datetime) -> None:
    clock.move_to(moment)
    engine.tick(now=moment)


def scheduled(run: Run) -> dict[str, Any]:
    assert run.payload_type == packets.SUPERJSON
    value = json.loads(run.payload)
    return {"payload": value["json"], "dates": sorted(value["meta"]["values"])}


def runs_of(schedule: Schedule) -> list[Run]:
    return list(Run.objects.filter(schedule_id=schedule.id).order_by("created_at", "id"))


def test_each_tick_fires_once_with_the_scheduled_payload_and_moves_next_fire_at_on(
    dev: Environment, frozen_clock: time_machine.Traveller
) -> None:
    schedule = hourly(dev, external_id="user-1", payload={"name": "Ada"})
    tick_at(frozen_clock, utc(2026, 11, 28, 12, 59))
    assert not runs_of(schedule)
    tick_at(frozen_clock, utc(2026, 11, 28, 13, 0, 0, 3000))
    tick_at(frozen_clock, utc(2026, 11, 28, 13, 0, 1))  # the same tick again: nothing more
    first = runs_of(schedule)
    assert len(first) == 1
    run = first[0]
    assert (run.schedule_id, run.trigger_source, run.task_identifier) == (schedule.id, "schedule", "hello-world")
    assert scheduled(run)["payload"] == {
        "scheduleId": schedule.id,
        "type": "IMPERATIVE",
        "timestamp": "2026-11-28T13:00:00.000Z",
        "externalId": "user-1",
        "timezone": "UTC",
        "upcoming": [f"2026-11-28T{hour}:00:00.000Z" for hour in (14, 15, 16, 17, 18)],
        "payload": {"name": "Ada"},
    }
    assert scheduled(run)["dates"] == ["timestamp", *(f"upcoming.{i}" for i in range(5))]
    schedule.refresh_from_db()
    assert (schedule.next_fire_at, schedule.last_fired_at, schedule.last_run_id) == (
        utc(2026, 11, 28, 14),
        utc(2026, 11, 28, 13),
        run.id,
    )
    tick_at(frozen_clock, utc(2026, 11, 28, 14, 0, 2))
    second = runs_of(schedule)[1]
    assert scheduled(second)["payload"]["lastTimestamp"] == "2026-11-28T13:00:00.000Z"
    assert "lastTimestamp" in scheduled(second)["dates"]
    ticks = list(ScheduleTick.objects.order_by("at").values_list("at", "run_id", "skipped"))
    assert ticks == [(utc(2026, 11, 28, 13), run.id, ""), (utc(2026, 11, 28, 14), second.id, "")]


def test_the_runs_timeline_names_its_schedule_and_tick(dev: Environment, frozen_clock: time_machine.Traveller) -> None:
    schedule = hourly(dev)
    tick_at(frozen_clock, utc(2026, 11, 28, 13))
    event = RunEvent.objects.filter(run=runs_of(schedule)[0], data__schedule=schedule.id).get()
    assert event.data == {"schedule": schedule.id, "tick": "2026-11-28T13:00:00.000Z"}
    assert event.reason == f"fired by schedule {schedule.id}: tick at 2026-11-28T13:00:00.000Z"
    assert event.actor == f"schedule:{schedule.id}"


def test_the_next_due_time_includes_the_next_tick(dev: Environment) -> None:
    hourly(dev)
    assert next_due(after=T0) == utc(2026, 11, 28, 13)


def test_the_schedules_trigger_options_apply_to_its_runs(
    dev: Environment, frozen_clock: time_machine.Traveller
) -> None:
    schedule = hourly(dev, options={"tags": ["nightly"], "ttl": "10m", "machine": "large-1x"})
    tick_at(frozen_clock, utc(2026, 11, 28, 13))
    run = runs_of(schedule)[0]
    assert (run.tags, run.ttl, run.machine) == (["nightly"], 600, "large-1x")


def test_an_inactive_schedule_never_fires(dev: Environment, frozen_clock: time_machine.Traveller) -> None:
    schedule = hourly(dev)
    engine.set_schedule_active(environment_id=dev.pk, schedule_id=schedule.id, active=False, actor="sdk", now=T0)
    for hour in (13, 14, 15):
        tick_at(frozen_clock, utc(2026, 11, 28, hour))
    assert not runs_of(schedule)
    assert not ScheduleTick.objects.exists()


# --- missed ticks -------------------------------------------------------------------------


def test_ticks_missed_while_no_engine_ran_fire_once_for_the_latest(
    dev: Environment, frozen_clock: time_machine.Traveller
) -> None:
    schedule = hourly(dev)
    tick_at(frozen_clock, utc(2026, 11, 28, 17, 20))  # 13:00 to 17:00 passed with no engine
    runs = runs_of(schedule)
    assert len(runs) == 1
    assert scheduled(runs[0])["payload"]["timestamp"] == "2026-11-28T17:00:00.000Z"
    assert list(ScheduleTick.objects.values_list("at", "run_id")) == [(utc(2026, 11, 28, 17), runs[0].id)]
    event = RunEvent.objects.get(run=runs[0], data__schedule=schedule.id)
    assert "5 ticks missed while no engine ran (2026-11-28T13:00:00.000Z to 2026-11-28T17:00:00.000Z)" in (event.reason)
    schedule.refresh_from_db()
    assert schedule.next_fire_at == utc(2026, 11, 28, 18)
    tick_at(frozen_clock, utc(2026, 11, 28, 17, 30))
    assert len(runs_of(schedule)) == 1


def test_missed_ticks_of_a_skip_schedule_are_recorded_as_skipped_and_not_fired(
    dev: Environment, frozen_clock: time_machine.Traveller
) -> None:
    schedule = hourly(dev, missed="skip")
    tick_at(frozen_clock, utc(2026, 11, 28, 17, 20))
    assert not runs_of(schedule)
    tick = ScheduleTick.objects.get()
    assert (tick.at, tick.run_id) == (utc(2026, 11, 28, 17), "")
    assert tick.skipped == (
        "5 ticks missed while no engine ran (2026-11-28T13:00:00.000Z to 2026-11-28T17:00:00.000Z): skipped"
    )
    tick_at(frozen_clock, utc(2026, 11, 28, 18))  # the next tick fires as usual
    assert [scheduled(r)["payload"]["timestamp"] for r in runs_of(schedule)] == ["2026-11-28T18:00:00.000Z"]


def test_a_skip_schedule_fires_its_latest_tick_when_it_is_on_time(
    dev: Environment, frozen_clock: time_machine.Traveller
) -> None:
    schedule = hourly(dev, missed="skip")
    tick_at(frozen_clock, utc(2026, 11, 28, 15, 0, 30))  # 13:00 and 14:00 missed, 15:00 on time
    assert [scheduled(r)["payload"]["timestamp"] for r in runs_of(schedule)] == ["2026-11-28T15:00:00.000Z"]
    skipped = ScheduleTick.objects.exclude(skipped="").get()
    assert skipped.at == utc(2026, 11, 28, 14)
    assert skipped.skipped.startswith("2 ticks missed while no engine ran")


def test_a_tick_handled_within_the_grace_is_on_time_and_one_past_it_is_missed(
    dev: Environment, frozen_clock: time_machine.Traveller
) -> None:
    on_time = hourly(dev, missed="skip", deduplication_key="a")
    tick_at(frozen_clock, utc(2026, 11, 28, 13) + MISSED_GRACE)
    assert len(runs_of(on_time)) == 1
    late = hourly(dev, utc(2026, 11, 28, 13, 5), missed="skip", deduplication_key="b")  # due at 14:00
    tick_at(frozen_clock, utc(2026, 11, 28, 14) + MISSED_GRACE + timedelta(seconds=1))
    assert not runs_of(late)
    assert ScheduleTick.objects.get(schedule=late).skipped.startswith("1 tick missed")


# --- overlap ------------------------------------------------------------------------------


def test_overlap_skip_records_the_tick_skipped_while_the_previous_run_is_unfinished(
    dev: Environment, frozen_clock: time_machine.Traveller
) -> None:
    schedule = hourly(dev, overlap="skip")
    tick_at(frozen_clock, utc(2026, 11, 28, 13))
    first = runs_of(schedule)[0]
    assert first.status == RunStatus.DEQUEUED  # admitted by the same tick
    engine.start_attempt(run_id=first.id, worker="w1")
    engine.heartbeat(run_id=first.id, attempt=1, now=utc(2026, 11, 28, 14))  # its worker is alive
    tick_at(frozen_clock, utc(2026, 11, 28, 14))
    assert runs_of(schedule) == [first]
    tick = ScheduleTick.objects.get(at=utc(2026, 11, 28, 14))
    assert (tick.run_id, tick.skipped) == ("", f"previous run {first.id} is still EXECUTING")
    schedule.refresh_from_db()
    assert schedule.next_fire_at == utc(2026, 11, 28, 15)
    engine.cancel_run(run_id=first.id, actor="user:ops")
    tick_at(frozen_clock, utc(2026, 11, 28, 15))
    assert len(runs_of(schedule)) == 2


def test_overlap_allow_fires_while_the_previous_run_is_unfinished(
    dev: Environment, frozen_clock: time_machine.Traveller
) -> None:
    schedule = hourly(dev, overlap="allow")
    tick_at(frozen_clock, utc(2026, 11, 28, 13))
    engine.start_attempt(run_id=runs_of(schedule)[0].id, worker="w1")
    engine.heartbeat(run_id=runs_of(schedule)[0].id, attempt=1, now=utc(2026, 11, 28, 14))
    tick_at(frozen_clock, utc(2026, 11, 28, 14))
    assert len(runs_of(schedule)) == 2
    assert not ScheduleTick.objects.exclude(skipped="").exists()


# --- run now ------------------------------------------------------------------------------


def test_run_now_fires_once_outside_the_cron_and_leaves_the_next_tick(
    dev: Environment, frozen_clock: time_machine.Traveller
) -> None:
    schedule = hourly(dev)
    frozen_clock.move_to(utc(2026, 11, 28, 12, 10))
    run = engine.run_schedule_now(environment_id=dev.pk, schedule_id=schedule.id, actor="user:ops")
    assert run.schedule_id == schedule.id
    assert scheduled(run)["payload"]["timestamp"] == "2026-11-28T12:10:00.000Z"
    schedule.refresh_from_db()
    assert (schedule.next_fire_at, schedule.last_fired_at, schedule.last_run_id) == (
        utc(2026, 11, 28, 13),
        None,
        run.id,
    )
    entry = AuditEntry.objects.get(action="schedule.run_now")
    assert (entry.target, entry.username, entry.data["run"]) == (schedule.id, "ops", run.id)
    assert not ScheduleTick.objects.exists()
    tick_at(frozen_clock, utc(2026, 11, 28, 13))
    assert len(runs_of(schedule)) == 2


def test_run_now_of_another_environments_schedule_is_not_found(dev: Environment, prod: Environment) -> None:
    schedule = hourly(prod)
    with pytest.raises(engine.ScheduleNotFound):
        engine.run_schedule_now(environment_id=dev.pk, schedule_id=schedule.id, actor="user:ops")
    assert not Run.objects.exists()


# --- daylight saving ------------------------------------------------------------------------


def test_a_schedule_at_a_time_the_spring_change_skips_fires_once_that_night(
    dev: Environment, frozen_clock: time_machine.Traveller
) -> None:
    factories.task_definition("hello-world")
    spec = ScheduleSpec(task_id="hello-world", cron="30 2 * * *", timezone="Europe/Berlin")
    start = utc(2026, 3, 28, 12)
    schedule, _ = engine.create_schedule(environment=dev, spec=spec, actor="sdk", now=start)
    moment = start
    while moment < utc(2026, 3, 29, 12):  # the engine waking every 10 minutes through the night
        tick_at(frozen_clock, moment)
        moment += timedelta(minutes=10)
    runs = runs_of(schedule)
    assert [scheduled(r)["payload"]["timestamp"] for r in runs] == ["2026-03-29T01:00:00.000Z"]  # 03:00 CEST
    assert scheduled(runs[0])["payload"]["timezone"] == "Europe/Berlin"


# --- plain Celery tasks ------------------------------------------------------------------------


def test_a_plain_celery_task_gets_the_schedules_payload_as_its_arguments(
    dev: Environment, frozen_clock: time_machine.Traveller
) -> None:
    factories.task_definition("billing.invoice", celery_queue="celery")
    spec = ScheduleSpec(task_id="billing.invoice", cron="0 * * * *", payload={"args": [1], "kwargs": {"dry": True}})
    with_args, _ = engine.create_schedule(environment=dev, spec=spec, actor="sdk", now=T0)
    bare, _ = engine.create_schedule(environment=dev, spec=spec.with_changes(payload=None), actor="sdk", now=T0)
    tick_at(frozen_clock, utc(2026, 11, 28, 13))
    assert [(r.payload_type, json.loads(r.payload)) for r in runs_of(with_args) + runs_of(bare)] == [
        ("application/json", {"args": [1], "kwargs": {"dry": True}}),
        ("application/json", {"args": [], "kwargs": {}}),
    ]


# --- what the official SDK reads ---------------------------------------------------------------

READ_LIKE_THE_SDK = """
const { parsePacket } = require("@trigger.dev/core/v3/utils/ioSerialization");
const [data, dataType] = process.argv.slice(1);
parsePacket({ data, dataType }).then((payload) => {
  const dates = [payload.timestamp, payload.lastTimestamp, ...payload.upcoming];
  console.log(JSON.stringify({ dates: dates.every((d) => d instanceof Date), first: payload.upcoming[0] }));
});
"""


@pytest.mark.skipif(not shutil.which("node"), reason="needs Node for the official SDK")
def test_the_official_sdk_reads_the_scheduled_payloads_times_as_dates(
    dev: Environment, frozen_clock: time_machine.Traveller
) -> None:
    schedule = hourly(dev)
    tick_at(frozen_clock, utc(2026, 11, 28, 13))
    tick_at(frozen_clock, utc(2026, 11, 28, 14))
    run = runs_of(schedule)[1]
    result = subprocess.run(
        ["node", "-e", READ_LIKE_THE_SDK, run.payload, run.payload_type],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout) == {"dates": True, "first": "2026-11-28T15:00:00.000Z"}


def test_a_tick_whose_options_no_longer_parse_is_skipped_with_the_reason(
    dev: Environment, frozen_clock: time_machine.Traveller
) -> None:
    schedule = hourly(dev)
    Schedule.objects.filter(pk=schedule.pk).update(options={"ttl": "ever"})  # stored by an older version
    tick_at(frozen_clock, utc(2026, 11, 28, 13))
    assert not runs_of(schedule)
    tick = ScheduleTick.objects.get()
    assert tick.skipped.startswith("cannot trigger hello-world: options.ttl must be")
    schedule.refresh_from_db()
    assert schedule.next_fire_at == utc(2026, 11, 28, 14)


@pytest.mark.parametrize(
    ("payload", "arguments"),
    [
        (None, {"args": [], "kwargs": {}}),
        ({"args": [1, 2]}, {"args": [1, 2], "kwargs": {}}),
        ({"kwargs": {"a": 1}}, {"args": [], "kwargs": {"a": 1}}),
        ({"args": "x"}, {"args": [{"args": "x"}], "kwargs": {}}),
        ({"name": "Ada"}, {"args": [{"name": "Ada"}], "kwargs": {}}),
        ([1, 2], {"args": [[1, 2]], "kwargs": {}}),
    ],
)
def test_a_schedules_payload_becomes_a_celery_tasks_arguments(payload: Any, arguments: dict[str, Any]) -> None:
    assert celery_arguments(payload) == arguments


def test_a_tick_already_recorded_is_never_fired_again(dev: Environment, frozen_clock: time_machine.Traveller) -> None:
    schedule = hourly(dev)
    ScheduleTick.objects.create(schedule=schedule, at=utc(2026, 11, 28, 13), recorded_at=T0, run_id="run_earlier")
    tick_at(frozen_clock, utc(2026, 11, 28, 13))
    assert not runs_of(schedule)  # the run made before the tick's INSERT failed is rolled back with it
    schedule.refresh_from_db()
    assert schedule.next_fire_at == utc(2026, 11, 28, 14)
    assert list(ScheduleTick.objects.values_list("run_id", flat=True)) == ["run_earlier"]
