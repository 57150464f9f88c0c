"""schedules.* of the Python SDK: the same verbs, results and errors in-process (test
database, the engine called directly) and remote (the REST API of a live stack)."""

from __future__ import annotations

import secrets
from datetime import datetime

import pytest

from runs import engine, sdk
from runs.models import ScheduleType
from runs.schedule_spec import ScheduleSpec
from runs.sdk import ScheduleInfo
from tests import factories
from tests.sdk.test_python_sdk_logs import error_of
from tests.sdk.test_python_sdk_remote import mode  # noqa: F401 - the mode fixture

pytestmark = pytest.mark.django_db  # the in-process mode's database (the remote mode leaves it alone)


def test_schedules_are_created_once_per_key_changed_paused_and_deleted_in_both_modes(mode: str) -> None:  # noqa: F811
    key = f"py-{secrets.token_hex(4)}"  # the live stack's schedules outlive a test
    created = sdk.schedules.create(
        "hello-world", "0 9 * * *", timezone="Europe/Paris", external_id="user-1", deduplication_key=key
    )
    try:
        assert isinstance(created, ScheduleInfo) and created.id.startswith("sched_")
        assert (created.type, created.task, created.active, created.cron) == (
            "IMPERATIVE",
            "hello-world",
            True,
            "0 9 * * *",
        )
        assert (created.cron_description, created.timezone, created.external_id) == (
            "At 09:00 AM",
            "Europe/Paris",
            "user-1",
        )
        assert isinstance(created.next_run, datetime) and created.next_run == created.upcoming[0]
        assert len(created.upcoming) == 5 and created.environments[0]["type"] == "DEVELOPMENT"
        again = sdk.schedules.create(
            "hello-world", "30 2 * * *", deduplication_key=key, payload={"report": "daily"}, overlap="skip"
        )
        assert again.id == created.id and again.cron == "30 2 * * *"
        assert (again.payload, again.overlap, again.missed) == ({"report": "daily"}, "skip", "once")
        retrieved = sdk.schedules.retrieve(created.id)
        assert (retrieved.id, retrieved.cron, retrieved.payload) == (created.id, "30 2 * * *", {"report": "daily"})
        updated = sdk.schedules.update(created.id, "hello-world", "*/5 * * * *", external_id="user-2")
        assert (updated.cron, updated.cron_description, updated.external_id) == (
            "*/5 * * * *",
            "Every 5 minutes",
            "user-2",
        )
        assert (updated.timezone, updated.deduplication_key, updated.payload) == ("UTC", key, {"report": "daily"})
        off = sdk.schedules.deactivate(created.id)
        assert (off.active, off.next_run, off.upcoming) == (False, None, [])
        assert sdk.schedules.activate(created.id).next_run is not None
        page = sdk.schedules.list(per_page=100)
        assert created.id in [schedule.id for schedule in page.schedules]
        assert page.current_page == 1 and page.count >= 1
    finally:
        assert sdk.schedules.delete(created.id) == created.id
    assert error_of(lambda: sdk.schedules.retrieve(created.id)) == ("NotFoundError", "")


def test_bad_schedules_are_refused_naming_the_field_in_both_modes(mode: str) -> None:  # noqa: F811
    assert error_of(lambda: sdk.schedules.create("hello-world", "61 * * * *")) == ("ValidationError", "cron")
    assert error_of(lambda: sdk.schedules.create("hello-world", "@daily", timezone="Mars/Base")) == (
        "ValidationError",
        "timezone",
    )
    assert error_of(lambda: sdk.schedules.create("hello-world", "@daily", overlap="never")) == (
        "ValidationError",
        "overlap",
    )
    assert error_of(lambda: sdk.schedules.create("hello-world", "@daily", options={"delay": "1h"})) == (
        "ValidationError",
        "options.delay",
    )
    assert error_of(lambda: sdk.schedules.update("sched_nope", "hello-world", "@daily")) == ("NotFoundError", "")
    assert error_of(lambda: sdk.schedules.activate("sched_nope")) == ("NotFoundError", "")
    assert error_of(lambda: sdk.schedules.delete("sched_nope")) == ("NotFoundError", "")
    assert error_of(lambda: sdk.schedules.list(per_page=101)) == ("ValidationError", "perPage")


def test_the_time_zones_are_the_same_in_both_modes(mode: str) -> None:  # noqa: F811
    zones = sdk.schedules.timezones()
    assert zones[0] == "UTC" and "Europe/Paris" in zones
    assert sdk.schedules.timezones(exclude_utc=True) == zones[1:]


def test_a_schedule_declared_in_code_is_not_changed_through_the_sdk() -> None:
    spec = ScheduleSpec(task_id="hello-world", cron="@daily", deduplication_key="declared:hello-world")
    declared, _ = engine.create_schedule(
        environment=factories.environment("dev"), spec=spec, actor="worker", type=ScheduleType.DECLARATIVE
    )
    assert error_of(lambda: sdk.schedules.update(declared.id, "hello-world", "@hourly")) == ("ValidationError", "")
    assert error_of(lambda: sdk.schedules.delete(declared.id)) == ("ValidationError", "")
    taken = error_of(lambda: sdk.schedules.create("hello-world", "@hourly", deduplication_key="declared:hello-world"))
    assert taken == ("ValidationError", "deduplicationKey")
    assert sdk.schedules.retrieve(declared.id).cron == "@daily"


def test_runs_list_finds_the_runs_a_schedule_fired() -> None:
    fired = factories.run(schedule_id="sched_a")
    factories.run()
    assert [run.id for run in sdk.runs.list(schedule="sched_a")] == [fired.id]
    assert list(sdk.runs.list(schedule="sched_none")) == []
