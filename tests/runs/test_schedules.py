"""Schedules: their cron expressions and time zones, and how operators create and change them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from runs import cron, engine
from runs.models import AuditEntry, Environment, Schedule, ScheduleType
from runs.schedule_spec import ScheduleSpec, ScheduleSpecError, parse_schedule

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


# --- cron -------------------------------------------------------------------------------


def test_nicknames_mean_what_cron_means() -> None:
    assert cron.next_times("@hourly", "UTC", utc(2026, 1, 1, 10, 15), 2) == [utc(2026, 1, 1, 11), utc(2026, 1, 1, 12)]
    assert cron.next_time("@daily", "UTC", utc(2026, 1, 1, 10)) == utc(2026, 1, 2)
    assert cron.next_time("@weekly", "UTC", utc(2026, 1, 1)) == utc(2026, 1, 4)  # a Sunday
    assert cron.next_time("@MONTHLY", "UTC", utc(2026, 1, 15)) == utc(2026, 2, 1)


def test_fire_times_are_strictly_after_the_given_time() -> None:
    assert cron.next_time("*/5 * * * *", "UTC", utc(2026, 1, 1, 10, 5)) == utc(2026, 1, 1, 10, 10)


def test_a_time_zone_shifts_the_utc_fire_times() -> None:
    # 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer.
    assert cron.next_time("0 9 * * *", "Europe/Paris", utc(2026, 1, 10)) == utc(2026, 1, 10, 8)
    assert cron.next_time("0 9 * * *", "Europe/Paris", utc(2026, 7, 10)) == utc(2026, 7, 10, 7)


def test_a_time_the_spring_change_skips_fires_once_just_after_it() -> None:
    # Berlin skips 02:00-03:00 on 29 March 2026: cron fires the 02:30 job at 03:00 (01:00 UTC).
    times = cron.next_times("30 2 * * *", "Europe/Berlin", utc(2026, 3, 28, 12), 3)
    assert times == [utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30), utc(2026, 3, 31, 0, 30)]


def test_a_time_the_autumn_change_repeats_fires_once() -> None:
    # Berlin lives 02:00-03:00 twice on 25 October 2026: the 02:30 job fires at the first one.
    times = cron.next_times("30 2 * * *", "Europe/Berlin", utc(2026, 10, 24, 12), 2)
    assert times == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


def test_an_hourly_job_across_the_autumn_change_fires_each_real_hour() -> None:
    times = cron.next_times("0 * * * *", "Europe/Berlin", utc(2026, 10, 24, 23, 30), 4)
    assert times == [utc(2026, 10, 25, 0), utc(2026, 10, 25, 1), utc(2026, 10, 25, 2), utc(2026, 10, 25, 3)]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "cron must be a non-empty string"),
        ("* * *", "cron must have 5 fields"),
        ("* * * * * *", "cron must have 5 fields"),
        ("61 * * * *", "cron is not a valid expression: Bad minute"),
        ("0 0 30 2 *", "cron is not a valid expression"),
        ("@often", "cron nickname must be one of"),
        (5, "cron must be a non-empty string"),
    ],
)
def test_bad_cron_expressions_are_refused_with_the_rule(expression: object, message: str) -> None:
    with pytest.raises(cron.CronError) as caught:
        cron.parse(expression)
    assert caught.value.field == "cron"
    assert caught.value.message.startswith(message)


@pytest.mark.parametrize("name", ["Mars/Base", "", "utc", None, "x" * 500])
def test_only_iana_time_zone_names_are_taken(name: object) -> None:
    with pytest.raises(cron.CronError) as caught:
        cron.parse_timezone(name)
    assert caught.value.field == "timezone"


def test_expressions_are_described_in_words() -> None:
    assert cron.describe("*/5 * * * *") == "Every 5 minutes"
    assert cron.describe("@hourly") == "Every hour"
    assert cron.describe("0 9 * * 1-5") == "At 09:00 AM, Monday through Friday"


# --- the spec -----------------------------------------------------------------------------


def test_a_spec_takes_the_wire_keys_and_keeps_the_cron_as_written() -> None:
    spec = parse_schedule(
        {
            "task": "hello-world",
            "cron": " @hourly ",
            "timezone": "Europe/Paris",
            "externalId": "user-1",
            "deduplication_key": "user-1-hourly",
            "payload": {"name": "Ada"},
            "options": {"ttl": "10m", "tags": ["nightly"]},
            "overlap": "skip",
            "missed": "skip",
            "somethingElse": 1,
        }
    )
    assert spec == ScheduleSpec(
        task_id="hello-world",
        cron="@hourly",
        timezone="Europe/Paris",
        external_id="user-1",
        deduplication_key="user-1-hourly",
        payload={"name": "Ada"},
        options={"ttl": "10m", "tags": ["nightly"]},
        overlap="skip",
        missed="skip",
    )


def test_an_update_keeps_what_it_leaves_out() -> None:
    base = parse_schedule({"task": "a", "cron": "@daily", "timezone": "Asia/Tokyo", "externalId": "x"})
    spec = parse_schedule({"cron": "0 6 * * *"}, base=base)
    assert (spec.task_id, spec.cron, spec.timezone, spec.external_id) == ("a", "0 6 * * *", "Asia/Tokyo", "x")


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ([], "body", "the schedule must be a JSON object"),
        ({"cron": "* * * * *"}, "task", "task is required"),
        ({"task": "a"}, "cron", "cron is required"),
        ({"task": "a b", "cron": "* * * * *"}, "task", "task must be 1-128 characters"),
        ({"task": "a", "cron": "* *"}, "cron", "cron must have 5 fields"),
        ({"task": "a", "cron": "* * * * *", "timezone": "Nowhere"}, "timezone", "timezone 'Nowhere' is not"),
        ({"task": "a", "cron": "* * * * *", "externalId": 5}, "externalId", "externalId must be a string"),
        ({"task": "a", "cron": "* * * * *", "deduplicationKey": "k" * 257}, "deduplicationKey", "deduplicationKey"),
        ({"task": "a", "cron": "* * * * *", "externalId": "a\x00b"}, "externalId", "externalId"),
        ({"task": "a", "cron": "* * * * *", "options": []}, "options", "options must be a JSON object"),
        ({"task": "a", "cron": "* * * * *", "options": {"ttl": "ever"}}, "options.ttl", "options.ttl must be"),
        ({"task": "a", "cron": "* * * * *", "options": {"delay": "1m"}}, "options.delay", "options.delay cannot"),
        ({"task": "a", "cron": "* * * * *", "options": {"debounce": {}}}, "options.debounce", "options.debounce c"),
        ({"task": "a", "cron": "* * * * *", "active": "yes"}, "active", "active must be true or false"),
        ({"task": "a", "cron": "* * * * *", "overlap": "never"}, "overlap", "overlap must be one of allow, skip"),
        ({"task": "a", "cron": "* * * * *", "missed": "all"}, "missed", "missed must be one of once, skip"),
        ({"task": "a", "cron": "* * * * *", "window": "30m"}, "window", "window is not supported"),
        ({"task": "a", "cron": "* * * * *", "payload": {"a": "x" * 300_000}}, "payload", "payload must be at most"),
    ],
)
def test_bad_schedules_are_refused_naming_the_field(data: object, field: str, message: str) -> None:
    with pytest.raises(ScheduleSpecError) as caught:
        parse_schedule(data)
    assert caught.value.field == field
    assert caught.value.message.startswith(message)


# --- the engine's changes -------------------------------------------------------------------


def spec(**changes: object) -> ScheduleSpec:
    return ScheduleSpec(task_id="hello-world", cron="0 * * * *").with_changes(**changes)


@pytest.mark.django_db
def test_a_new_schedule_is_due_at_its_first_tick_and_audited(dev: Environment) -> None:
    schedule, created = engine.create_schedule(environment=dev, spec=spec(), actor="user:ops", now=T0)
    assert created
    assert schedule.id.startswith("sched_")
    assert schedule.type == ScheduleType.IMPERATIVE
    assert schedule.next_fire_at == utc(2026, 11, 28, 13)
    assert engine.upcoming(schedule, now=T0, count=2) == [utc(2026, 11, 28, 13), utc(2026, 11, 28, 14)]
    entry = AuditEntry.objects.get(action="schedule.create")
    assert (entry.username, entry.target, entry.environment_id) == ("ops", schedule.id, dev.pk)


@pytest.mark.django_db
def test_creating_with_the_same_deduplication_key_updates_one_schedule(dev: Environment) -> None:
    first, _ = engine.create_schedule(environment=dev, spec=spec(deduplication_key="k"), actor="sdk", now=T0)
    again, created = engine.create_schedule(
        environment=dev, spec=spec(deduplication_key="k", cron="30 * * * *"), actor="sdk", now=T0
    )
    assert not created
    assert again.id == first.id
    assert Schedule.objects.get().cron == "30 * * * *"
    assert Schedule.objects.get().next_fire_at == utc(2026, 11, 28, 12, 30)


@pytest.mark.django_db
def test_the_same_deduplication_key_in_another_environment_is_another_schedule(
    dev: Environment, prod: Environment
) -> None:
    engine.create_schedule(environment=dev, spec=spec(deduplication_key="k"), actor="sdk", now=T0)
    engine.create_schedule(environment=prod, spec=spec(deduplication_key="k"), actor="sdk", now=T0)
    assert Schedule.objects.count() == 2


@pytest.mark.django_db
def test_a_deactivated_schedule_is_not_due_and_activating_it_fires_nothing_it_missed(dev: Environment) -> None:
    schedule, _ = engine.create_schedule(environment=dev, spec=spec(), actor="sdk", now=T0)
    off = engine.set_schedule_active(environment_id=dev.pk, schedule_id=schedule.id, active=False, actor="sdk", now=T0)
    assert off.next_fire_at is None
    assert engine.upcoming(off, now=T0) == []
    later = utc(2026, 11, 28, 15, 10)
    on = engine.set_schedule_active(environment_id=dev.pk, schedule_id=schedule.id, active=True, actor="sdk", now=later)
    assert on.next_fire_at == utc(2026, 11, 28, 16)
    actions = list(AuditEntry.objects.order_by("at", "id").values_list("action", flat=True))
    assert actions == ["schedule.create", "schedule.deactivate", "schedule.activate"]


@pytest.mark.django_db
def test_an_update_replaces_the_schedule_and_moves_its_next_tick(dev: Environment) -> None:
    schedule, _ = engine.create_schedule(environment=dev, spec=spec(deduplication_key="k"), actor="sdk", now=T0)
    updated = engine.update_schedule(
        environment_id=dev.pk,
        schedule_id=schedule.id,
        spec=spec(cron="0 9 * * *", timezone="America/New_York", external_id="x"),
        actor="sdk",
        now=T0,
    )
    assert updated.next_fire_at == utc(2026, 11, 28, 14)  # 09:00 EST
    assert (updated.external_id, updated.deduplication_key) == ("x", "k")


@pytest.mark.django_db
def test_a_declared_schedule_is_changed_only_by_its_code(dev: Environment) -> None:
    declared, _ = engine.create_schedule(
        environment=dev,
        spec=spec(deduplication_key="declared:hello-world"),
        actor="worker:w1",
        type=ScheduleType.DECLARATIVE,
        now=T0,
    )
    with pytest.raises(engine.DeclarativeSchedule):
        engine.update_schedule(environment_id=dev.pk, schedule_id=declared.id, spec=spec(), actor="sdk")
    with pytest.raises(engine.DeclarativeSchedule):
        engine.delete_schedule(environment_id=dev.pk, schedule_id=declared.id, actor="sdk")
    with pytest.raises(engine.DeclarativeSchedule):
        engine.create_schedule(environment=dev, spec=spec(deduplication_key="declared:hello-world"), actor="sdk")
    engine.set_schedule_active(environment_id=dev.pk, schedule_id=declared.id, active=False, actor="sdk")
    assert Schedule.objects.get().active is False


@pytest.mark.django_db
def test_another_environments_schedule_is_not_found(dev: Environment, prod: Environment) -> None:
    schedule, _ = engine.create_schedule(environment=prod, spec=spec(), actor="sdk", now=T0)
    with pytest.raises(engine.ScheduleNotFound):
        engine.find_schedule(environment_id=dev.pk, schedule_id=schedule.id)
    with pytest.raises(engine.ScheduleNotFound):
        engine.delete_schedule(environment_id=dev.pk, schedule_id=schedule.id, actor="sdk")
    assert Schedule.objects.count() == 1


@pytest.mark.django_db
def test_deleting_a_schedule_is_audited_and_leaves_nothing(dev: Environment) -> None:
    schedule, _ = engine.create_schedule(environment=dev, spec=spec(), actor="sdk", now=T0)
    engine.delete_schedule(environment_id=dev.pk, schedule_id=schedule.id, actor="user:ops", now=T0)
    assert not Schedule.objects.exists()
    assert AuditEntry.objects.filter(action="schedule.delete", target=schedule.id).exists()
