"""celery beat's periodic tasks as Runyard schedules (what `manage.py import_beat` imports).

Reads CELERY_BEAT_SCHEDULE (and the Celery app's beat_schedule) and, when it is installed,
django-celery-beat's PeriodicTask rows. Nothing from the engine: each entry becomes a
ScheduleSpec, or the reason it cannot be one.

A crontab maps field for field onto a cron expression. An interval maps only when cron can
fire at that even interval: a whole number of minutes dividing an hour, of hours dividing a
day, or one day. beat counts an interval from the last run while cron counts from the clock,
so "every 15 minutes" fires at :00, :15, :30 and :45 instead of 15 minutes after beat
started. Anything else (45 seconds, 7 minutes, solar events) is refused with the reason,
never rounded to something close.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta, tzinfo
from typing import Any

from celery import current_app
from celery.schedules import crontab
from celery.schedules import schedule as interval
from django.apps import apps
from django.conf import settings

from runs import cron
from runs.schedule_spec import ScheduleSpec, ScheduleSpecError, parse_schedule

KEY_PREFIX = "beat:"  # deduplication key of an imported entry: importing again updates it
# apply_async options beat passes on that a schedule's runs keep: expires -> ttl, priority.
KEPT_OPTIONS = ("expires", "priority")
QUEUE_NOTE = (
    "the option queue={queue!r} is not kept: a plain Celery task's runs go to the queue its router picks "
    "(task_routes, or the task's own queue)"
)


class Unimportable(ValueError):
    """An entry that has no equivalent Runyard schedule; the message says why."""


@dataclass
class Entry:
    """One beat entry, converted: a spec, or why not."""

    name: str
    source: str  # "CELERY_BEAT_SCHEDULE" or "django-celery-beat"
    spec: ScheduleSpec | None = None
    reason: str = ""  # why it is not importable
    notes: list[str] = field(default_factory=list)  # what of it is not carried over

    @property
    def key(self) -> str:
        return KEY_PREFIX + self.name


def entries() -> list[Entry]:
    """Every beat entry there is: the settings', then django-celery-beat's (which wins on a
    name in both: its DatabaseScheduler copies the settings' entries into rows at start)."""
    found: dict[str, Entry] = {}
    for name, entry in settings_schedule().items():
        found[name] = convert(str(name), entry, source="CELERY_BEAT_SCHEDULE")
    for converted in periodic_tasks():
        found[converted.name] = converted
    return list(found.values())


def settings_schedule() -> dict[str, Any]:
    """CELERY_BEAT_SCHEDULE, over the app's beat_schedule (set in code, e.g. app.conf.beat_schedule)."""
    from_app = dict(getattr(current_app.conf, "beat_schedule", None) or {})
    return from_app | dict(getattr(settings, "CELERY_BEAT_SCHEDULE", None) or {})


def convert(name: str, entry: Any, *, source: str, when: tuple[str, str] | None = None) -> Entry:
    """One entry as a spec (`when`: its cron and time zone, if not its "schedule")."""
    converted = Entry(name=name, source=source)
    try:
        if not isinstance(entry, Mapping):
            raise Unimportable("the entry is not a dict with task and schedule")
        expression, zone = when or cron_of(entry.get("schedule"))
        options, converted.notes = trigger_options(entry.get("options") or {})
        payload = {"args": list(entry.get("args") or ()), "kwargs": dict(entry.get("kwargs") or {})}
        data = {
            "task": entry.get("task"),
            "cron": expression,
            "timezone": zone,
            "payload": payload,
            "options": options,
            "deduplicationKey": KEY_PREFIX + name,
            "active": entry.get("enabled", True) is not False,
        }
        converted.spec = parse_schedule(data)
    except Unimportable as exc:
        converted.reason = str(exc)
    except ScheduleSpecError as exc:
        converted.reason = exc.message
    except (TypeError, ValueError) as exc:
        converted.reason = f"its arguments are not a list and a dict: {exc}"
    return converted


def cron_of(given: Any) -> tuple[str, str]:
    """The cron expression and time zone of a beat schedule. Raises Unimportable."""
    if isinstance(given, crontab):
        # A crontab's nowfun (say, lambda: datetime.now(ZoneInfo("Europe/Paris"))) sets its zone.
        nowfun = vars(given).get("nowfun")
        return crontab_expression(given), zone_name(nowfun().tzinfo if nowfun else given.tz)
    if isinstance(given, interval):
        return every(vars(given)["run_every"]), zone_name(given.tz)
    if isinstance(given, timedelta):
        return every(given), app_zone()
    if isinstance(given, int | float) and not isinstance(given, bool):
        if not math.isfinite(given):
            raise Unimportable(f"{given!r} is not a number of seconds")
        return every(timedelta(seconds=given)), app_zone()
    kind = type(given).__name__
    raise Unimportable(f"a {kind} schedule has no cron equivalent: only crontab and intervals are imported")


def crontab_expression(given: crontab) -> str:
    # The fields as written (the stubs do not declare them): cron reads them alike.
    written = vars(given)
    names = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
    return checked(" ".join(cron_field(written[f"_orig_{name}"]) for name in names))


def checked(expression: str) -> str:
    try:
        return cron.clean(expression)
    except cron.CronError as exc:
        raise Unimportable(f"crontab {expression!r} is not a cron expression Runyard takes: {exc.message}") from None


def cron_field(value: Any) -> str:
    if isinstance(value, str):
        return value.replace(" ", "") or "*"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Iterable):
        return ",".join(str(part) for part in sorted(value))
    raise Unimportable(f"crontab field {value!r} is neither text, a number nor a set of numbers")


def every(run_every: timedelta) -> str:
    """The cron expression firing every `run_every`, when cron can. Raises Unimportable."""
    seconds = run_every.total_seconds()
    minutes, rest = divmod(seconds, 60)
    shown = f"every {seconds:g} seconds"
    if rest or minutes < 1:
        raise Unimportable(f"{shown}: cron fires on whole minutes, so it has no equivalent")
    minutes = int(minutes)
    if minutes < 60 and 60 % minutes == 0:
        return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
    hours, rest_minutes = divmod(minutes, 60)
    if not rest_minutes and hours < 24 and 24 % hours == 0:
        return "0 * * * *" if hours == 1 else f"0 */{hours} * * *"
    if minutes == 24 * 60:
        return "0 0 * * *"
    raise Unimportable(
        f"{shown} ({minutes} minutes): cron fires at even intervals only of minutes dividing an hour, "
        "hours dividing a day, or one day; write the crontab you mean instead"
    )


def zone_name(zone: Any) -> str:
    """The IANA name of a Celery time zone (zoneinfo, pytz or a fixed UTC)."""
    if zone is None:
        return "UTC"
    name = getattr(zone, "key", None) or getattr(zone, "zone", None) or str(zone)
    if name in cron.timezones():
        return str(name)
    if isinstance(zone, tzinfo) and zone.utcoffset(None) == timedelta(0):
        return "UTC"
    raise Unimportable(f"its time zone {name!r} has no IANA name")


def app_zone() -> str:
    return zone_name(current_app.timezone)


def trigger_options(given: Any) -> tuple[dict[str, Any], list[str]]:
    """The trigger options of beat's apply_async options, and notes on the ones not kept."""
    if not isinstance(given, Mapping):
        raise Unimportable("its options are not a dict")
    options: dict[str, Any] = {}
    notes: list[str] = []
    for name, value in given.items():
        if name == "expires" and isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            options["ttl"] = math.ceil(value)  # beat counts expires from each publish, as ttl counts from each run
        elif name == "priority" and isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            if value:
                options["priority"] = value  # as a publish's priority maps (runs.celery_adoption)
        elif name == "queue":
            notes.append(QUEUE_NOTE.format(queue=value))
        else:
            notes.append(f"the option {name}={value!r} is not kept")
    return options, notes


# --- django-celery-beat ----------------------------------------------------------------------


def periodic_tasks() -> list[Entry]:
    """django-celery-beat's periodic tasks, when the app is installed."""
    if not apps.is_installed("django_celery_beat"):
        return []
    from django_celery_beat.models import PeriodicTask

    return [periodic_task(row) for row in PeriodicTask.objects.select_related("crontab", "interval").order_by("name")]


PERIODS = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1, "microseconds": 1e-6}


def periodic_task(row: Any) -> Entry:
    source = "django-celery-beat"
    try:
        if row.one_off:
            raise Unimportable("a one-off task runs once: it is not a schedule")
        when = row_when(row)
        args, kwargs = json.loads(row.args or "[]"), json.loads(row.kwargs or "{}")
    except Unimportable as exc:
        return Entry(name=row.name, source=source, reason=str(exc))
    except ValueError as exc:
        return Entry(name=row.name, source=source, reason=f"its args or kwargs are not JSON: {exc}")
    given = (
        ("queue", row.queue),
        ("priority", row.priority),
        ("expires", row.expire_seconds),
        ("exchange", row.exchange),
        ("routing_key", row.routing_key),
    )
    options = {name: value for name, value in given if value not in (None, "")}
    entry = {"task": row.task, "args": args, "kwargs": kwargs, "options": options, "enabled": bool(row.enabled)}
    converted = convert(row.name, entry, source=source, when=when)
    if row.expires:
        converted.notes.append("its expires date is not kept: deactivate the schedule then instead")
    if row.start_time:
        converted.notes.append("its start time is not kept: the schedule fires from its first tick after the import")
    return converted


def row_when(row: Any) -> tuple[str, str]:
    """The cron expression and time zone of a PeriodicTask. Raises Unimportable."""
    if row.crontab is not None:
        c = row.crontab
        fields = (c.minute, c.hour, c.day_of_month, c.month_of_year, c.day_of_week)
        return checked(" ".join(cron_field(value) for value in fields)), zone_name(c.timezone)
    if row.interval is not None:
        return every(timedelta(seconds=row.interval.every * PERIODS.get(row.interval.period, 0))), app_zone()
    raise Unimportable("a solar or clocked schedule has no cron equivalent: only crontab and intervals are imported")
