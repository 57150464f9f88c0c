"""Schedules as the API and the Python SDK give them: the reference's ScheduleObject.

One shape for both, so the SDK's in-process mode returns exactly what its remote mode reads
from the API. Runyard's own fields (payload, options, overlap, missed, upcoming) follow the
reference's; the official SDK's zod schema ignores keys it does not know.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from runs import cron
from runs.models import Environment, Schedule
from runs.schedule_spec import ScheduleSpec, ScheduleSpecError, parse_schedule

DEFAULT_PER_PAGE = 10
MAX_PER_PAGE = 100
MAX_PAGE = 1_000_000  # keeps the offset within what PostgreSQL takes


def item(schedule: Schedule, environment: Environment, now: datetime) -> dict[str, Any]:
    """The ScheduleObject of a schedule of `environment`."""
    upcoming = cron.next_times(schedule.cron, schedule.timezone, now, cron.UPCOMING) if schedule.active else []
    data: dict[str, Any] = {
        "id": schedule.id,
        "type": schedule.type,
        "task": schedule.task_id,
        "active": schedule.active,
        "generator": {"type": "CRON", "expression": schedule.cron, "description": cron.describe(schedule.cron)},
        "timezone": schedule.timezone,
        # The tick the engine fires next: in the past only while no engine has caught up yet.
        "nextRun": _date(schedule.next_fire_at),
        # The reference lists every environment a schedule runs in, and a user's name only for
        # a person's own development environment; a Runyard schedule has one, shared by a team.
        "environments": [{"id": str(environment.pk), "type": environment.kind}],
        "payload": schedule.payload,
        "options": schedule.options,
        "overlap": schedule.overlap,
        "missed": schedule.missed,
        "upcoming": [_date(moment) for moment in upcoming],
    }
    # Absent rather than null: the fields are optional in the reference's schema.
    if schedule.deduplication_key is not None:
        data["deduplicationKey"] = schedule.deduplication_key
    if schedule.external_id is not None:
        data["externalId"] = schedule.external_id
    return data


def items(schedules: list[Schedule], environment: Environment, now: datetime) -> list[dict[str, Any]]:
    return [item(schedule, environment, now) for schedule in schedules]


def page(environment: Environment, number: int, per_page: int, now: datetime) -> dict[str, Any]:
    """ListSchedulesResult: a page of the environment's schedules, newest first, as the
    reference pages them (page and perPage, a count of every schedule)."""
    found = Schedule.objects.filter(environment=environment).order_by("-created_at", "-id")
    count = found.count()
    rows = list(found[(number - 1) * per_page : number * per_page])
    pagination = {"currentPage": number, "totalPages": -(-count // per_page), "count": count}
    return {"data": items(rows, environment, now), "pagination": pagination}


def run_schedule(schedule: Schedule) -> dict[str, Any]:
    """RunScheduleDetails: the schedule a run was fired by, as a retrieved run shows it."""
    data: dict[str, Any] = {
        "id": schedule.id,
        "generator": {"type": "CRON", "expression": schedule.cron, "description": cron.describe(schedule.cron)},
    }
    if schedule.external_id is not None:
        data["externalId"] = schedule.external_id
    if schedule.deduplication_key is not None:
        data["deduplicationKey"] = schedule.deduplication_key
    return data


def spec_of(schedule: Schedule) -> ScheduleSpec:
    """The spec a schedule was made from: the base of an update that leaves fields out."""
    return ScheduleSpec(
        task_id=schedule.task_id,
        cron=schedule.cron,
        timezone=schedule.timezone,
        external_id=schedule.external_id,
        deduplication_key=schedule.deduplication_key,
        payload=schedule.payload,
        options=dict(schedule.options or {}),
        active=schedule.active,
        overlap=schedule.overlap,
        missed=schedule.missed,
    )


def timezones(*, exclude_utc: bool = False) -> list[str]:
    """Every time zone a schedule takes, sorted, "UTC" first (as the reference lists them)."""
    names = sorted(cron.timezones() - {"UTC"})
    return names if exclude_utc else ["UTC", *names]


def _date(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def update_spec(schedule: Schedule, data: object) -> ScheduleSpec:
    """The spec of an update (PUT) as the reference takes it: task and cron are required, and
    a time zone or external id left out goes back to UTC or none. Runyard's own fields left
    out keep their values, so an update from the official SDK (which knows none of them)
    does not wipe them. Raises ScheduleSpecError."""
    if not isinstance(data, dict):
        raise ScheduleSpecError("body", "the schedule must be a JSON object")
    for name in ("task", "cron"):
        if data.get(name) is None:
            raise ScheduleSpecError(name, f"{name} is required")
    base = spec_of(schedule).with_changes(timezone="UTC", external_id=None)
    return parse_schedule(data, base=base)
