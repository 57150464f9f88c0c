"""The runs list's filters: parsed from the URL's query string, applied as one Q.

The same filters serve the page, its websocket (which runs are new or changed on screen) and
bulk actions (every run matching the filters), so all three agree on what "matching" means.

Query parameters (repeat a multi-valued one: `?status=QUEUED&status=EXECUTING`):
  status, task, tag (any of the tags)      several values each
  from, to                                  created range, ISO dates or date-times (UTC unless
                                            an offset is given); `to` alone is inclusive of that minute
  period                                    created within the last 15m, 1h, 6h, 1d, 7d, 30d,
                                            or any duration like "90m"
  batch, queue, machine, region, idempotency, id   one value each
  root=1                                    root runs only (no parent)

A value that makes no sense is reported in `errors` (field -> message) and ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.db.models import Q
from django.http import QueryDict
from django.utils.dateparse import parse_date, parse_datetime

from runs import registry
from runs.options import parse_duration
from runs.states import RunStatus

PERIODS = ["15m", "1h", "6h", "1d", "7d", "30d"]
MULTI = ("status", "task", "tag")
SINGLE = ("batch", "queue", "machine", "region", "idempotency", "id")
MAX_VALUE_LENGTH = 256
MAX_VALUES = 50


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
    root: bool = False
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
            given = [value.strip()[:MAX_VALUE_LENGTH] for value in _get_list(query, name) if value.strip()]
            values[name] = tuple(dict.fromkeys(given))[:MAX_VALUES]
        unknown = [status for status in values["status"] if status not in RunStatus.values]
        if unknown:
            errors["status"] = f"Unknown status {', '.join(unknown)}"
            values["status"] = tuple(status for status in values["status"] if status in RunStatus.values)
        for name in SINGLE:
            values[name] = _get(query, name).strip()[:MAX_VALUE_LENGTH]
        if values["machine"] and values["machine"] not in registry.MACHINES:
            errors["machine"] = f"Unknown machine {values['machine']!r}: one of {', '.join(registry.MACHINES)}"
            values["machine"] = ""
        values["root"] = _get(query, "root") in ("1", "true", "on")
        for name, end in (("from", False), ("to", True)):
            text = _get(query, name).strip()
            values[f"raw_{name}"] = text
            if text:
                parsed = parse_when(text, end=end)
                if parsed is None:
                    errors[name] = f"{text!r} is not a date or date-time like 2026-11-28 or 2026-11-28T14:30"
                values[f"created_{name}"] = parsed
        period = _get(query, "period").strip()
        if period:
            if parse_duration(period) is None:
                errors["period"] = f"{period!r} is not a duration like 1h or 7d"
            else:
                values["period"] = period
        return cls(errors=errors, **values)

    def q(self) -> Q:
        """The runs matching every filter (within whichever environment the caller scopes to)."""
        q = Q()
        if self.status:
            q &= Q(status__in=self.status)
        if self.task:
            q &= Q(task_identifier__in=self.task)
        if self.tag:
            q &= Q(tags__overlap=list(self.tag))
        if self.created_from is not None:
            q &= Q(created_at__gte=self.created_from)
        if self.created_to is not None:
            q &= Q(created_at__lt=self.created_to)
        if self.period and (seconds := parse_duration(self.period)) is not None:
            q &= Q(created_at__gte=(self.now or datetime.now(UTC)) - timedelta(seconds=seconds))
        for name, column in (
            ("batch", "batch_id"),
            ("queue", "queue"),
            ("machine", "machine"),
            ("region", "region"),
            ("idempotency", "idempotency_key_user"),
            ("id", "id"),
        ):
            if value := getattr(self, name):
                q &= Q(**{column: value})
        if self.root:
            q &= Q(parent__isnull=True)
        return q

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
        return items

    def as_dict(self) -> dict[str, list[str]]:
        """For BulkAction.filters: from_query(as_dict(), now) gives these filters back."""
        stored: dict[str, list[str]] = {}
        for name, value in self.params():
            stored.setdefault(name, []).append(value)
        return stored

    def query_string(self) -> str:
        return urlencode(self.params())

    @property
    def active(self) -> bool:
        return bool(self.params())


def parse_when(text: str, *, end: bool = False) -> datetime | None:
    """An ISO date or date-time; a bare date is that day's start (or, with end, the next day's)."""
    try:
        at = parse_datetime(text)
        if at is None:
            day = parse_date(text)
            if day is None:
                return None
            at = datetime(day.year, day.month, day.day) + (timedelta(days=1) if end else timedelta())
        elif end and at.second == 0 and at.microsecond == 0 and len(text) <= 16:
            at += timedelta(minutes=1)  # "to 14:30" includes runs created during 14:30
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _get_list(query: QueryDict | Mapping[str, Any], name: str) -> list[str]:
    if isinstance(query, QueryDict):
        return query.getlist(name)
    value: Any = query.get(name, [])
    return [str(item) for item in value] if isinstance(value, list | tuple) else [str(value)]


def _get(query: QueryDict | Mapping[str, Any], name: str) -> str:
    values = _get_list(query, name)
    return values[-1] if values else ""
