"""Schedules declared in code (`@task(cron=...)`), synced when workers register."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from runs import engine, registry
from runs.models import AuditEntry, Environment, Schedule, ScheduleType
from runs.schedule_spec import ScheduleSpec

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    saved = dict(registry.REGISTRY)
    yield
    registry.REGISTRY.clear()
    registry.REGISTRY.update(saved)


def declared(task_id: str = "nightly-report", **schedule: Any) -> registry.TaskSpec:
    @registry.task(id=task_id, **schedule)
    def report(payload: Any) -> None:
        return None

    spec = registry.get(task_id)
    assert spec is not None
    return spec


def register(*specs: registry.TaskSpec, now: datetime = T0) -> None:
    engine.register_worker(hostname="celery@w1", queues=["runyard.small-1x"], specs=list(specs), now=now)


def test_a_task_declares_a_cron_and_a_time_zone_as_a_string_or_a_dict() -> None:
    spec = declared(cron="0 3 * * *", timezone="Europe/Paris")
    assert spec.schedule == registry.DeclaredSchedule(cron="0 3 * * *", timezone="Europe/Paris")
    given = {"pattern": "@hourly", "timezone": "Asia/Tokyo", "overlap": "skip", "missed": "skip"}
    other = declared("other", cron=given)
    assert other.schedule == registry.DeclaredSchedule("@hourly", "Asia/Tokyo", "skip", "skip")
    assert declared("plain").schedule is None


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"cron": "61 * * * *"}, "cron is not a valid expression"),
        ({"cron": "* * *"}, "cron must have 5 fields"),
        ({"cron": "@hourly", "timezone": "Mars/Base"}, "timezone 'Mars/Base' is not an IANA time zone name"),
        ({"timezone": "Europe/Paris"}, "timezone is only for a task that declares a cron"),
        ({"cron": {"pattern": "@hourly", "window": "5m"}}, "cron takes only pattern, timezone, overlap, missed"),
        ({"cron": {"pattern": "@hourly", "overlap": "never"}}, "cron's overlap must be one of allow, skip"),
    ],
)
def test_a_bad_declared_schedule_is_refused_when_the_task_is_defined(schedule: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        declared(**schedule)


@pytest.mark.django_db
def test_registering_a_worker_creates_the_declared_schedule_in_every_environment(
    dev: Environment, prod: Environment
) -> None:
    register(declared(cron="0 3 * * *", timezone="Europe/Paris"))
    schedules = list(Schedule.objects.order_by("environment__slug"))
    every = sorted(Environment.objects.values_list("slug", flat=True))
    assert {"dev", "prod"} <= set(every)
    assert [(s.environment.slug, s.type, s.deduplication_key) for s in schedules] == [
        (slug, ScheduleType.DECLARATIVE, "declared:nightly-report") for slug in every
    ]
    assert {(s.task_id, s.cron, s.timezone, s.next_fire_at) for s in schedules} == {
        ("nightly-report", "0 3 * * *", "Europe/Paris", datetime(2026, 11, 29, 2, tzinfo=UTC))
    }
    assert AuditEntry.objects.filter(action="schedule.create", username="worker:celery@w1").count() == len(every)


@pytest.mark.django_db
def test_registering_again_with_the_same_cron_changes_nothing(dev: Environment) -> None:
    spec = declared(cron="0 3 * * *")
    register(spec)
    register(spec)
    assert Schedule.objects.count() == Environment.objects.count()
    assert set(AuditEntry.objects.values_list("action", flat=True)) == {"schedule.create"}
    assert AuditEntry.objects.count() == Environment.objects.count()


@pytest.mark.django_db
def test_a_changed_cron_updates_the_declared_schedule(dev: Environment) -> None:
    register(declared(cron="0 3 * * *"))
    first = Schedule.objects.get(environment=dev)
    register(declared(cron="*/15 * * * *"))
    schedule = Schedule.objects.get(environment=dev)
    assert (schedule.id, schedule.cron, schedule.next_fire_at) == (
        first.id,
        "*/15 * * * *",
        datetime(2026, 11, 28, 12, 15, tzinfo=UTC),
    )


@pytest.mark.django_db
def test_a_task_that_no_longer_declares_a_cron_loses_its_declared_schedule(dev: Environment) -> None:
    register(declared(cron="0 3 * * *"))
    imperative, _ = engine.create_schedule(
        environment=dev, spec=ScheduleSpec(task_id="nightly-report", cron="@daily"), actor="sdk", now=T0
    )
    register(declared())
    assert list(Schedule.objects.values_list("id", flat=True)) == [imperative.id]
    entry = AuditEntry.objects.filter(action="schedule.delete", environment_id=dev.pk).get()
    assert (entry.username, entry.reason) == ("worker:celery@w1", "the task no longer declares a cron")


@pytest.mark.django_db
def test_a_worker_not_serving_the_task_leaves_its_declared_schedule(dev: Environment) -> None:
    register(declared(cron="0 3 * * *"))
    register(declared("something-else"))
    assert set(Schedule.objects.values_list("task_id", flat=True)) == {"nightly-report"}


@pytest.mark.django_db
def test_an_operators_deactivation_survives_registration_and_cron_changes(dev: Environment) -> None:
    register(declared(cron="0 3 * * *"))
    schedule = Schedule.objects.get(environment=dev)
    engine.set_schedule_active(environment_id=dev.pk, schedule_id=schedule.id, active=False, actor="user:ops")
    register(declared(cron="0 3 * * *"))
    register(declared(cron="0 4 * * *"))
    schedule.refresh_from_db()
    assert (schedule.active, schedule.next_fire_at, schedule.cron) == (False, None, "0 4 * * *")


@pytest.mark.django_db
def test_an_imperative_schedule_holding_the_declared_key_is_left_alone(dev: Environment) -> None:
    spec = ScheduleSpec(task_id="nightly-report", cron="@daily", deduplication_key="declared:nightly-report")
    mine, _ = engine.create_schedule(environment=dev, spec=spec, actor="sdk", now=T0)
    register(declared(cron="0 3 * * *"))
    assert list(Schedule.objects.filter(environment=dev).values_list("id", "cron", "type")) == [
        (mine.id, "@daily", "IMPERATIVE")
    ]
