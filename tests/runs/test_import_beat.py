"""`manage.py import_beat`: celery beat's entries become imperative schedules, once, with what
cannot be carried over said rather than approximated."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from celery import current_app
from celery.schedules import BaseSchedule, crontab, schedule
from django.core.management import CommandError, call_command

from runs import beat
from runs.models import AuditEntry, Environment, Schedule, ScheduleType

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def paris_now() -> datetime:
    return datetime.now(ZoneInfo("Europe/Paris"))


class PaydaySchedule(BaseSchedule):
    """A project's own beat schedule class (as solar or a custom one): no cron says it."""


BEAT = {
    "weekday-report": {
        "task": "reports.send",
        "schedule": crontab(minute=30, hour=7, day_of_week="mon-fri", nowfun=paris_now),
        "args": ("daily",),
        "kwargs": {"to": "ops@example.com"},
        "options": {"expires": 600, "priority": 5, "queue": "reports"},
    },
    "poll-quarterly-hour": {"task": "feeds.poll", "schedule": timedelta(minutes=15)},
    "hourly-cleanup": {"task": "db.cleanup", "schedule": schedule(run_every=3600.0)},
    "every-six-hours": {"task": "db.vacuum", "schedule": 6 * 3600},
    "heartbeat": {"task": "ping", "schedule": 45.0},
    "odd-interval": {"task": "ping", "schedule": timedelta(minutes=7)},
    "payday": {"task": "payroll.run", "schedule": PaydaySchedule()},
}


@pytest.fixture(autouse=True)
def beat_settings(settings: Any) -> Iterator[None]:
    current_app.conf.beat_schedule  # noqa: B018 - load the app's conf before the override, not within it
    settings.CELERY_BEAT_SCHEDULE = BEAT
    with time_machine.travel(T0, tick=False):
        yield


def run(*args: str) -> str:
    out = StringIO()
    call_command("import_beat", *args, stdout=out)
    return out.getvalue()


def by_key(key: str) -> Schedule:
    return Schedule.objects.get(deduplication_key=f"beat:{key}")


def test_crontab_and_interval_entries_become_imperative_schedules(dev: Environment) -> None:
    output = run()
    report = by_key("weekday-report")
    assert (report.task_id, report.cron, report.timezone) == ("reports.send", "30 7 * * mon-fri", "Europe/Paris")
    assert report.type == ScheduleType.IMPERATIVE and report.environment == dev and report.active
    assert report.payload == {"args": ["daily"], "kwargs": {"to": "ops@example.com"}}
    assert report.options == {"ttl": 600, "priority": 5}
    assert report.next_fire_at == datetime(2026, 11, 30, 6, 30, tzinfo=UTC)  # 07:30 in Paris, Monday
    assert (by_key("poll-quarterly-hour").cron, by_key("poll-quarterly-hour").timezone) == ("*/15 * * * *", "UTC")
    assert by_key("hourly-cleanup").cron == "0 * * * *"
    assert by_key("every-six-hours").cron == "0 */6 * * *"
    assert by_key("poll-quarterly-hour").payload == {"args": [], "kwargs": {}}
    assert "4 created, 0 updated, 0 unchanged, 3 skipped (environment dev)." in output
    assert "note: the option queue='reports' is not kept" in output
    actions = set(AuditEntry.objects.values_list("action", "username"))
    assert actions == {("schedule.create", "import_beat")}


def test_entries_without_an_equivalent_are_reported_with_the_reason_and_not_made(dev: Environment) -> None:
    output = run()
    assert "skipped 'heartbeat' (CELERY_BEAT_SCHEDULE): every 45 seconds: cron fires on whole minutes" in output
    assert "skipped 'odd-interval' (CELERY_BEAT_SCHEDULE): every 420 seconds (7 minutes)" in output
    assert "skipped 'payday' (CELERY_BEAT_SCHEDULE): a PaydaySchedule schedule has no cron equivalent" in output
    assert not Schedule.objects.filter(deduplication_key__in=["beat:heartbeat", "beat:odd-interval", "beat:payday"])


def test_importing_twice_changes_nothing_and_a_changed_entry_is_updated(dev: Environment, settings: Any) -> None:
    run()
    ids = set(Schedule.objects.values_list("id", flat=True))
    assert "0 created, 0 updated, 4 unchanged, 3 skipped" in run()
    assert set(Schedule.objects.values_list("id", flat=True)) == ids
    settings.CELERY_BEAT_SCHEDULE = BEAT | {"poll-quarterly-hour": {"task": "feeds.poll", "schedule": 1800}}
    assert "0 created, 1 updated, 3 unchanged, 3 skipped" in run()
    assert by_key("poll-quarterly-hour").cron == "*/30 * * * *"
    assert set(Schedule.objects.values_list("id", flat=True)) == ids
    assert AuditEntry.objects.filter(action="schedule.update").count() == 1


def test_a_dry_run_writes_nothing(dev: Environment) -> None:
    output = run("--dry-run")
    assert "would be created 'weekday-report' -> a new schedule: reports.send at '30 7 * * mon-fri'" in output
    assert "Dry run, nothing changed: would have 4 created" in output
    assert not Schedule.objects.exists() and not AuditEntry.objects.exists()


def test_the_environment_is_chosen_by_slug(dev: Environment, prod: Environment) -> None:
    run("--environment", "prod")
    assert set(Schedule.objects.values_list("environment__slug", flat=True)) == {"prod"}
    with pytest.raises(CommandError, match="No environment with slug 'nope'"):
        run("--environment", "nope")


def test_entries_set_on_the_celery_app_are_read_too(dev: Environment, settings: Any) -> None:
    settings.CELERY_BEAT_SCHEDULE = {}
    previous = current_app.conf.beat_schedule
    current_app.conf.beat_schedule = {"from-code": {"task": "app.tick", "schedule": crontab(minute="*/5")}}
    try:
        run()
    finally:
        current_app.conf.beat_schedule = previous
    assert by_key("from-code").cron == "*/5 * * * *"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (timedelta(minutes=1), "* * * * *"),
        (timedelta(minutes=20), "*/20 * * * *"),
        (timedelta(hours=1), "0 * * * *"),
        (timedelta(hours=8), "0 */8 * * *"),
        (timedelta(days=1), "0 0 * * *"),
    ],
)
def test_intervals_that_cron_fires_evenly_map_onto_cron(given: timedelta, expected: str) -> None:
    assert beat.every(given) == expected


@pytest.mark.parametrize(
    "given",
    [timedelta(seconds=30), timedelta(seconds=90), timedelta(minutes=40), timedelta(hours=5), timedelta(days=2)],
)
def test_intervals_cron_cannot_fire_evenly_are_refused(given: timedelta) -> None:
    with pytest.raises(beat.Unimportable):
        beat.every(given)


# --- django-celery-beat ------------------------------------------------------------------------
# Rows shaped as django_celery_beat.models.PeriodicTask (the app is not installed here).


def periodic(name: str, **fields: Any) -> SimpleNamespace:
    row = {
        "name": name,
        "task": "reports.send",
        "enabled": True,
        "one_off": False,
        "crontab": None,
        "interval": None,
        "args": "[]",
        "kwargs": "{}",
        "queue": None,
        "priority": None,
        "expire_seconds": None,
        "expires": None,
        "exchange": None,
        "routing_key": None,
        "start_time": None,
        **fields,
    }
    return SimpleNamespace(**row)


def test_periodic_task_rows_convert_like_settings_entries() -> None:
    tab = SimpleNamespace(
        minute="0", hour="8", day_of_month="*", month_of_year="*", day_of_week="1", timezone=ZoneInfo("Asia/Tokyo")
    )
    entry = beat.periodic_task(
        periodic("tokyo", crontab=tab, args='["x"]', enabled=False, expire_seconds=60, routing_key="rk", start_time=T0)
    )
    assert entry.spec is not None and entry.source == "django-celery-beat"
    assert (entry.spec.cron, entry.spec.timezone, entry.spec.active) == ("0 8 * * 1", "Asia/Tokyo", False)
    assert entry.spec.payload == {"args": ["x"], "kwargs": {}} and entry.spec.options == {"ttl": 60}
    assert entry.notes == [
        "the option routing_key='rk' is not kept",
        "its start time is not kept: the schedule fires from its first tick after the import",
    ]
    every = beat.periodic_task(periodic("often", interval=SimpleNamespace(every=10, period="minutes")))
    assert every.spec is not None and every.spec.cron == "*/10 * * * *"


def test_periodic_task_rows_without_an_equivalent_say_why() -> None:
    assert "one-off" in beat.periodic_task(periodic("once", one_off=True)).reason
    assert "solar or clocked" in beat.periodic_task(periodic("clocked")).reason
    odd = periodic("odd", interval=SimpleNamespace(every=90, period="seconds"))
    assert "every 90 seconds" in beat.periodic_task(odd).reason
    assert (
        "not JSON"
        in beat.periodic_task(periodic("bad", interval=SimpleNamespace(every=1, period="hours"), args="[")).reason
    )


def test_without_django_celery_beat_installed_there_are_no_rows_to_read() -> None:
    assert beat.periodic_tasks() == []
