"""The runs list's filters: parsed from the URL's query string, applied as one Q.

The same filters serve the page, its websocket (which runs are new or changed on screen) and
bulk actions (every run matching the filters), so all three agree on what "matching" means.

Query parameters (repeat a multi-valued one: `?status=QUEUED&status=EXECUTING`):
  status, task, tag (any of the tags)      several values each
  from, to                                  created range, ISO dates or date-times (UTC unless
                                            an offset is given); `to` alone is inclusive of that minute
  period                                    created within the last 15m, 1h, 6h, 1d, 7d, 30d,
                                            or any duration like "90m"
  batch, queue, machine, region, idempotency, id, schedule   one value each
  root=1                                    root runs only (no parent)
  logs                                      runs whose logs have words starting with each word
                                            given (runs.logsearch), at most 200 characters
  log_errors=1                              runs with a log line at ERROR or above

A value that makes no sense is reported in `errors` (field -> message) and ignored.

Every filter is meant to be cheap at a million runs: the list is read newest first through
run_env_created (or run_env_status / run_env_task / the tags GIN index, the batch and parent
foreign key indexes, the primary key, run_env_schedule), and the other filters narrow that scan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.http import QueryDict
from django.utils.dateparse import parse_date, parse_datetime

from runs import logs, logsearch, registry
from runs.models import Queue, Run, TaskDefinition
from runs.options import parse_duration
from runs.states import COLOURS, DESCRIPTIONS, LABELS, RunStatus

PERIODS = ["15m", "1h", "6h", "1d", "7d", "30d"]
MULTI = ("status", "task", "tag")
SINGLE = ("batch", "queue", "machine", "region", "idempotency", "id", "schedule")
MAX_VALUE_LENGTH = 256
MAX_VALUES = 50
MAX_TASK_CHOICES = 200  # distinct task ids offered by the task filter
PREFIXES = {
    "id": ("run_", "Run ids start with run_"),
    "batch": ("batch_", "Batch ids start with batch_"),
    "schedule": ("sched_", "Schedule ids start with sched_"),
}


@dataclass(frozen=True)
class RunFilters:
    status: tuple[str, ...] = ()
    task: tuple[str, ...] = ()
    tag: tuple[str, ...] = ()
    created_from: datetime | None = None
    created_to: datetime | None = None
    period: str = ""
    batch: str = ""
    queue: str = ""
    machine: str = ""
    region: str = ""
    idempotency: str = ""
    id: str = ""
    schedule: str = ""  # the schedule whose ticks made the runs
    root: bool = False
    logs: str = ""
    log_errors: bool = False
    # Text of from/to as given, to refill the form.
    raw_from: str = ""
    raw_to: str = ""
    errors: dict[str, str] = field(default_factory=dict, compare=False)
    now: datetime | None = field(default=None, compare=False)  # what `period` counts back from

    @classmethod
    def from_query(cls, query: QueryDict | Mapping[str, Any], now: datetime) -> RunFilters:
        """Parse a query string (a QueryDict, or a dict of lists/strings as stored by bulk actions)."""
        errors: dict[str, str] = {}
        values: dict[str, Any] = {"now": now}
        for name in MULTI:
            given = [value.strip()[:MAX_VALUE_LENGTH] for value in _values(query, name, errors) if value.strip()]
            values[name] = tuple(dict.fromkeys(given))[:MAX_VALUES]
        values["status"] = tuple(dict.fromkeys(status.upper() for status in values["status"]))
        unknown = [status for status in values["status"] if status not in RunStatus.values]
        if unknown:
            errors["status"] = f"Unknown status {', '.join(unknown)}: pick from the list"
            values["status"] = tuple(status for status in values["status"] if status in RunStatus.values)
        for name in SINGLE:
            values[name] = _value(query, name, errors)[:MAX_VALUE_LENGTH]
            prefix, rule = PREFIXES.get(name, ("", ""))
            if values[name] and not values[name].startswith(prefix):
                errors[name] = f"{rule}: {values[name]!r} is not one"
                values[name] = ""
        if values["machine"] and values["machine"] not in registry.MACHINES:
            errors["machine"] = f"Unknown machine {values['machine']!r}: one of {', '.join(registry.MACHINES)}"
            values["machine"] = ""
        values["root"] = _value(query, "root", errors) in ("1", "true", "on")
        values["logs"] = _logs_text(_value(query, "logs", errors), errors)
        values["log_errors"] = _value(query, "log_errors", errors) in ("1", "true", "on")
        values.update(_created_range(query, errors))
        values["period"] = _period(_value(query, "period", errors), now, errors)
        return cls(errors=errors, **values)

    def q(self) -> Q:
        """The runs matching every filter (within whichever environment the caller scopes to)."""
        q = self.q_except_status()
        if self.status:
            q &= Q(status__in=self.status)
        return q

    def q_except_status(self) -> Q:
        """Every filter but the status: what a run is, rather than where it has got to."""
        q = Q()
        if self.task:
            q &= Q(task_identifier__in=self.task)
        if self.tag:
            q &= Q(tags__overlap=list(self.tag))
        if self.created_from is not None:
            q &= Q(created_at__gte=self.created_from)
        if self.created_to is not None:
            q &= Q(created_at__lt=self.created_to)
        if self.period and (since := period_start(self.period, self.now or datetime.now(UTC))) is not None:
            q &= Q(created_at__gte=since)
        columns = (("batch", "batch_id"), ("queue", "queue"), ("machine", "machine"), ("region", "region"))
        for name, column in (*columns, ("schedule", "schedule_id")):
            if value := getattr(self, name):
                q &= Q(**{column: value})
        if self.idempotency:
            # The caller's own key when the SDK sent one, else the key as given (until released).
            q &= Q(idempotency_key_user=self.idempotency) | Q(idempotency_key=self.idempotency)
        if self.id:
            q &= Q(pk=self.id)
        if self.root:
            q &= Q(parent__isnull=True)
        if self.logs or self.log_errors:
            q &= logs.runs_matching(self.logs, errors=self.log_errors)
        return q

    def matches_status(self, status: str) -> bool:
        return not self.status or status in self.status

    def params(self) -> list[tuple[str, str]]:
        """The filters as query parameters, in a stable order (for links, the socket and storage)."""
        items: list[tuple[str, str]] = [(name, value) for name in MULTI for value in getattr(self, name)]
        if self.raw_from and "from" not in self.errors:
            items.append(("from", self.raw_from))
        if self.raw_to and "to" not in self.errors:
            items.append(("to", self.raw_to))
        if self.period:
            items.append(("period", self.period))
        items += [(name, getattr(self, name)) for name in SINGLE if getattr(self, name)]
        if self.root:
            items.append(("root", "1"))
        if self.logs:
            items.append(("logs", self.logs))
        if self.log_errors:
            items.append(("log_errors", "1"))
        return items

    def as_dict(self) -> dict[str, list[str]]:
        """For BulkAction.filters: from_query(as_dict(), now) gives these filters back."""
        stored: dict[str, list[str]] = {}
        for name, value in self.params():
            stored.setdefault(name, []).append(value)
        return stored

    def query_string(self) -> str:
        return urlencode(self.params())

    def query_string_without(self, name: str, value: str | None = None) -> str:
        """The query string with parameter `name` dropped (only its `value`, if given)."""
        return urlencode([(key, v) for key, v in self.params() if key != name or (value is not None and v != value)])

    @property
    def active(self) -> bool:
        return bool(self.params())

    @property
    def more_active(self) -> int:
        """How many of the filters behind "More filters" are set (so the form opens on them)."""
        return len(self.tag) + sum(1 for name in SINGLE if getattr(self, name))


def _created_range(query: QueryDict | Mapping[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, end in (("from", False), ("to", True)):
        text = _value(query, name, errors)[:MAX_VALUE_LENGTH]
        values[f"raw_{name}"] = text
        if text:
            parsed = parse_when(text, end=end)
            if parsed is None:
                errors[name] = f"{text!r} is not a date or date-time like 2026-11-28 or 2026-11-28 14:30"
            values[f"created_{name}"] = parsed
    start_at, end_at = values.get("created_from"), values.get("created_to")
    if start_at is not None and end_at is not None and end_at <= start_at:
        errors["to"] = "Must be later than From"
        values["created_to"] = None
    return values


def _logs_text(text: str, errors: dict[str, str]) -> str:
    if len(text) > logsearch.MAX_SEARCH_LENGTH:
        errors["logs"] = f"At most {logsearch.MAX_SEARCH_LENGTH} characters: this text has {len(text)}"
    elif text and logsearch.tsquery(text) is None:
        errors["logs"] = f"{text!r} has no word to search for: give letters or digits"
    else:
        return text
    return ""


def _period(text: str, now: datetime, errors: dict[str, str]) -> str:
    if not text:
        return ""
    if parse_duration(text) is None:
        errors["period"] = f"{text!r} is not a duration like 1h or 7d"
    elif not parse_duration(text) or period_start(text, now) is None:
        errors["period"] = f"{text!r} is not a period we can count back from now: use 1s to 100 years"
    else:
        return text
    return ""


def period_start(period: str, now: datetime) -> datetime | None:
    """When a period counted back from now starts; None if it is no duration or reaches past year 1."""
    seconds = parse_duration(period)
    if seconds is None:
        return None
    try:
        return now - timedelta(seconds=seconds)
    except OverflowError:
        return None


def parse_when(text: str, *, end: bool = False) -> datetime | None:
    """An ISO date or date-time; a bare date is that day's start (or, with end, the next day's)."""
    try:
        # A bare date first: parse_datetime would take it for midnight.
        day = parse_date(text) if len(text) <= 10 else None
        if day is not None:
            at = datetime(day.year, day.month, day.day) + (timedelta(days=1) if end else timedelta())
        else:
            parsed = parse_datetime(text)
            if parsed is None:
                return None
            at = parsed
            if end and at.second == 0 and at.microsecond == 0 and len(text) <= 16:
                at += timedelta(minutes=1)  # "to 14:30" includes runs created during 14:30
    except (ValueError, OverflowError):
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _values(query: QueryDict | Mapping[str, Any], name: str, errors: dict[str, str]) -> list[str]:
    if isinstance(query, QueryDict):
        values = query.getlist(name)
    else:
        value: Any = query.get(name, [])
        values = [str(item) for item in value] if isinstance(value, list | tuple) else [str(value)]
    if any("\x00" in value for value in values):
        # PostgreSQL text cannot hold NUL: no run could match, and the query would fail.
        errors[name] = "Must not contain NUL characters"
        return [value for value in values if "\x00" not in value]
    return values


def _value(query: QueryDict | Mapping[str, Any], name: str, errors: dict[str, str]) -> str:
    values = _values(query, name, errors)
    return values[-1].strip() if values else ""


# --- what the filter bar offers --------------------------------------------------------------


def status_choices() -> list[dict[str, str]]:
    """Every status with its label, colour and meaning, in the order of the ledger."""
    return [
        {"value": status, "label": LABELS[status], "colour": COLOURS[status], "description": DESCRIPTIONS[status]}
        for status in RunStatus.values
    ]


def task_choices(environment_id: int, selected: tuple[str, ...] = ()) -> list[str]:
    """Task ids to offer: every defined task, every task seen in the environment's runs, the selected ones."""
    defined = TaskDefinition.objects.values_list("task_id", flat=True)[:MAX_TASK_CHOICES]
    return sorted({*defined, *seen_tasks(environment_id), *selected})


def seen_tasks(environment_id: int, limit: int = MAX_TASK_CHOICES) -> list[str]:
    """The distinct task ids of an environment's runs.

    A loose index scan over run_env_task: one index probe per distinct task id, so it stays
    cheap at millions of runs, where SELECT DISTINCT would read the whole index.
    """
    table = Run._meta.db_table
    sql = f"""
        WITH RECURSIVE seen(task) AS (
            (SELECT task_identifier FROM {table} WHERE environment_id = %s ORDER BY task_identifier LIMIT 1)
            UNION ALL
            SELECT (SELECT task_identifier FROM {table}
                    WHERE environment_id = %s AND task_identifier > seen.task
                    ORDER BY task_identifier LIMIT 1)
            FROM seen WHERE seen.task IS NOT NULL
        )
        SELECT task FROM seen WHERE task IS NOT NULL LIMIT %s
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [environment_id, environment_id, limit])
        return [row[0] for row in cursor.fetchall()]


def queue_choices(environment_id: int) -> list[str]:
    """The environment's queue names (one Queue row each), for the queue field's suggestions."""
    return list(
        Queue.objects.filter(environment_id=environment_id).order_by("name").values_list("name", flat=True)[:200]
    )


def region_choices() -> list[str]:
    return list(settings.RUNYARD_REGIONS)


def period_choices(current: str) -> list[str]:
    """The preset periods, and the current one if it is not a preset (given in the URL)."""
    return PERIODS if not current or current in PERIODS else [*PERIODS, current]
