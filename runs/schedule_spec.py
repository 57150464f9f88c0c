"""What a schedule is made of, parsed from any entry point (REST API, dashboard, SDKs, code).

Pure: nothing from the engine or the database. Keys are the wire protocol's camelCase
(`externalId`); snake_case is accepted too. Errors name the field and the rule.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from runs import cron
from runs.models import Missed, Overlap, Schedule
from runs.options import OptionError, camel_case, parse_task_id, parse_trigger_options
from runs.textcheck import UnstorableValue, check_json, check_text

MAX_KEY_LENGTH = 256  # externalId and deduplicationKey
MAX_PAYLOAD_BYTES = 256 * 1024
# Options a schedule's runs cannot take: each tick is its own run, made by the engine.
REFUSED_OPTIONS = ("parentRunId", "resumeParentOnCompletion", "delay", "debounce", "idempotencyKey")
FIELDS = (
    "task",
    "cron",
    "timezone",
    "externalId",
    "deduplicationKey",
    "payload",
    "options",
    "active",
    "overlap",
    "missed",
    "window",
)


class ScheduleSpecError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


@dataclass(frozen=True)
class ScheduleSpec:
    task_id: str
    cron: str
    timezone: str = "UTC"
    external_id: str | None = None
    deduplication_key: str | None = None
    payload: Any = None  # the caller's JSON, given to each run beside the tick's details
    options: dict[str, Any] = field(default_factory=dict)  # trigger options, as given
    active: bool = True
    overlap: str = Overlap.ALLOW
    missed: str = Missed.ONCE

    def with_changes(self, **changes: Any) -> ScheduleSpec:
        return replace(self, **changes)


def parse_schedule(data: object, *, base: ScheduleSpec | None = None) -> ScheduleSpec:
    """A checked ScheduleSpec from a JSON object. With `base`, keys left out keep its values
    (an update); without, `task` and `cron` are required. Raises ScheduleSpecError."""
    if not isinstance(data, Mapping):
        raise ScheduleSpecError("body", "the schedule must be a JSON object")
    given = {camel_case(str(key)): value for key, value in data.items()}
    if base is None:
        for name in ("task", "cron"):
            if given.get(name) is None:
                raise ScheduleSpecError(name, f"{name} is required")
    spec = base or ScheduleSpec(task_id="", cron="")
    changes: dict[str, Any] = {}
    for name, value in given.items():
        if name not in FIELDS or (value is None and name in ("task", "cron", "timezone")):
            continue  # unknown keys are ignored, as trigger options' are
        key, parsed = _PARSERS[name](value)
        if key:
            changes[key] = parsed
    return spec.with_changes(**changes)


def spec_of(schedule: Schedule) -> ScheduleSpec:
    """What a stored schedule is made of: the base of an edit, or what a new spec is compared with."""
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


def _task(value: Any) -> tuple[str, Any]:
    if not isinstance(value, str):
        raise ScheduleSpecError("task", "task must be a task identifier string")
    try:
        return "task_id", parse_task_id(value)
    except OptionError as exc:
        raise ScheduleSpecError("task", exc.message.replace("taskId", "task")) from None


def _cron(value: Any) -> tuple[str, Any]:
    try:
        return "cron", cron.clean(value)
    except cron.CronError as exc:
        raise ScheduleSpecError(exc.field, exc.message) from None


def _timezone(value: Any) -> tuple[str, Any]:
    try:
        return "timezone", cron.parse_timezone(value)
    except cron.CronError as exc:
        raise ScheduleSpecError(exc.field, exc.message) from None


def _key(name: str, attribute: str) -> Any:
    def parse(value: Any) -> tuple[str, Any]:
        if value is None or value == "":
            return attribute, None
        if not isinstance(value, str) or len(value) > MAX_KEY_LENGTH:
            raise ScheduleSpecError(name, f"{name} must be a string of at most {MAX_KEY_LENGTH} characters")
        try:
            check_text(value, name)
        except UnstorableValue as exc:
            raise ScheduleSpecError(name, exc.message) from None
        return attribute, value

    return parse


def _payload(value: Any) -> tuple[str, Any]:
    try:
        check_json(value, "payload")
    except UnstorableValue as exc:
        raise ScheduleSpecError(exc.field, exc.message) from None
    if len(json.dumps(value)) > MAX_PAYLOAD_BYTES:
        raise ScheduleSpecError("payload", "payload must be at most 256 KiB of JSON")
    return "payload", value


def _options(value: Any) -> tuple[str, Any]:
    if value is None:
        return "options", {}
    if not isinstance(value, Mapping):
        raise ScheduleSpecError("options", "options must be a JSON object of trigger options")
    for name in value:
        if camel_case(str(name)) in REFUSED_OPTIONS:
            raise ScheduleSpecError(f"options.{name}", f"options.{name} cannot be set on a schedule")
    try:
        parse_trigger_options(dict(value))
    except OptionError as exc:
        raise ScheduleSpecError(
            exc.field if exc.field.startswith("options") else f"options.{exc.field}", exc.message
        ) from None
    return "options", dict(value)


def _active(value: Any) -> tuple[str, Any]:
    if not isinstance(value, bool):
        raise ScheduleSpecError("active", "active must be true or false")
    return "active", value


def _choice(name: str, choices: Any) -> Any:
    allowed = [str(choice) for choice in choices]

    def parse(value: Any) -> tuple[str, Any]:
        if value not in allowed:
            raise ScheduleSpecError(name, f"{name} must be one of {', '.join(allowed)}")
        return name, value

    return parse


def _window(value: Any) -> tuple[str, Any]:
    # The reference spreads a schedule's runs over a window after each tick; Runyard fires at
    # the tick, and says so rather than keep a setting it would not honour.
    if value in (None, ""):
        return "", None
    raise ScheduleSpecError("window", "window is not supported: Runyard fires each tick at its time")


_PARSERS = {
    "task": _task,
    "cron": _cron,
    "timezone": _timezone,
    "externalId": _key("externalId", "external_id"),
    "deduplicationKey": _key("deduplicationKey", "deduplication_key"),
    "payload": _payload,
    "options": _options,
    "active": _active,
    "overlap": _choice("overlap", Overlap),
    "missed": _choice("missed", Missed),
    "window": _window,
}
