"""Parsing trigger requests (payload, task id, options) into what runs.engine.trigger takes.

Pure functions shared by the REST API, the dashboard and the Python SDK. Option keys are
the wire protocol's camelCase (`maxAttempts`); snake_case (`max_attempts`) is accepted too.
Unknown keys are kept in TriggerOptions.raw and otherwise ignored, never rejected: the
official SDK sends keys (payloadSize, lockToVersion, ...) that Runyard does not use.

TriggerOptions, what the engine takes, lives here so that this module imports nothing from
the engine.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from runs import packets, registry
from runs.metadata import MAX_METADATA_BYTES
from runs.textcheck import UnstorableValue, check_json, check_text, too_deep

MAX_TAGS = 10
MAX_TAG_LENGTH = 128
MAX_INT = 2**31 - 1  # PostgreSQL integer columns (ttl, max_duration, max_attempts)
MIN_MAX_DURATION = 5  # seconds; the reference server clamps maxDuration to [5, 2^31-1]
PAYLOAD_TYPES = (packets.SUPERJSON, packets.JSON, packets.TEXT)

DURATION_RE = re.compile(r"^(\d+(w|d|hr|h|m|s))+$")
_DURATION_PART = re.compile(r"(\d+)(w|d|hr|h|m|s)")
_UNIT_SECONDS = {"w": 604800, "d": 86400, "hr": 3600, "h": 3600, "m": 60, "s": 1}


@dataclass(frozen=True)
class Debounce:
    """Fold triggers with the same key into one delayed run (see runs.engine.triggering)."""

    key: str
    delay: int  # seconds
    mode: str = "leading"  # or "trailing": the latest trigger's data wins
    max_delay: int | None = None  # seconds from the run's first trigger


@dataclass
class TriggerOptions:
    """Validated trigger options (runs.options parses them from every entry point)."""

    queue: str | None = None
    concurrency_key: str = ""
    machine: str | None = None
    region: str = ""
    priority: float = 0.0
    max_attempts: int | None = None
    max_duration: int | None = None
    ttl: int | None = None
    delay_until: datetime | None = None
    queue_concurrency_limit: int | None = None
    idempotency_key: str | None = None
    idempotency_key_user: str = ""  # the caller's key before the SDK hashed it
    idempotency_key_ttl: int | None = None  # seconds
    debounce: Debounce | None = None
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    parent_run_id: str | None = None
    resume_parent: bool = False  # the parent waits on this run (triggerAndWait)
    batch_id: str | None = None
    trigger_function: str = "trigger"
    is_test: bool = False
    raw: dict[str, Any] = field(default_factory=dict)  # every option as given, for display
    # A plain Celery task's publish (runs.celery_adoption): its task id, its Celery queue, and
    # the moment it expires (Celery's `expires` counts from publishing, a TTL from queuing).
    celery_id: str = ""
    celery_queue: str = ""
    expires_at: datetime | None = None
    # Commit without waiting for the WAL flush (outside the caller's transaction only): a
    # PostgreSQL crash within about 0.6 s may lose the run, as a Redis crash loses a Celery
    # message. For plain Celery publishes, which promised no more (docs/celery-tasks.md).
    async_commit: bool = False
    schedule_id: str = ""  # the schedule that fired the run (runs.engine.schedules), never an option


class OptionError(ValueError):
    """A rejected trigger input; `message` names the field and the rule it breaks."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.field, self.message, self.status = field, message, status


# --- durations ----------------------------------------------------------------------------


def parse_duration(text: str) -> int | None:
    """Seconds of a duration like "1h30m" or "7d" (grammar of the reference); None if invalid."""
    if len(text) > 100 or not DURATION_RE.match(text):
        return None
    return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))


def format_duration(seconds: int) -> str:
    """The reference's stringifyDuration: 600 -> "10m", 3661 -> "1h1m1s" ("" for 0)."""
    parts = []
    for unit in ("w", "d", "h", "m", "s"):
        count, seconds = divmod(seconds, _UNIT_SECONDS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


# --- task id and payload ------------------------------------------------------------------


def parse_task_id(task_id: str) -> str:
    """The task id as given, if it could ever name a registered task."""
    if not registry.TASK_ID_RE.match(task_id):
        raise OptionError("taskId", "taskId must be 1-128 characters of letters, digits and _-./:")
    return task_id


def parse_payload(payload: Any, payload_type: Any) -> tuple[str, str]:
    """(data, content type) to store: strings verbatim after a check against their type."""
    if not isinstance(payload, str):
        # A JSON value in the body itself (not the SDK's serialized string) is stored as JSON,
        # its NULs escaped.
        try:
            check_json(payload, "payload", nul=False)
        except UnstorableValue as exc:
            raise OptionError(exc.field, exc.message) from exc
        return packets.encode(payload)
    content_type = packets.JSON if payload_type is None else payload_type
    if content_type not in PAYLOAD_TYPES:
        raise OptionError("payloadType", f"options.payloadType must be one of {', '.join(PAYLOAD_TYPES)}")
    try:
        check_text(payload, "payload")
        if payload and content_type != packets.TEXT:
            # A NUL escaped inside the JSON text is stored as the escape: allowed.
            check_json(packets.decode(payload, content_type), "payload", nul=False)
    except packets.PacketTooDeep as exc:
        raise OptionError("payload", too_deep("payload").message) from exc
    except packets.PacketError as exc:
        raise OptionError("payload", f"payload is not valid {content_type}: {exc}") from exc
    except UnstorableValue as exc:
        raise OptionError(exc.field, exc.message) from exc
    return payload, content_type


# --- options ------------------------------------------------------------------------------


def camel_case(key: str) -> str:
    head, *rest = key.split("_")
    camel = head + "".join(part[:1].upper() + part[1:] for part in rest)
    return "idempotencyKeyTTL" if camel == "idempotencyKeyTtl" else camel


def parse_delay(value: Any, now: datetime) -> datetime:
    """When a run delayed by `value` is due: a duration from now, an ISO date or a datetime.

    Dates without an offset are UTC. Raises OptionError (422) for garbage or a past time.
    """
    when: datetime | None = None
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, str) and (seconds := parse_duration(value)) is not None:
        with contextlib.suppress(OverflowError):  # past year 9999: no such date
            when = now + timedelta(seconds=seconds)
    elif isinstance(value, str) and len(value) <= 100:
        with contextlib.suppress(ValueError):
            when = datetime.fromisoformat(value.strip())
    if when is None:
        raise OptionError("delay", f'Invalid delay {value!r}: use a duration like "1h30m" or an ISO 8601 date', 422)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if when <= now:
        raise OptionError("delay", f"Invalid delay {value!r}: {when.isoformat()} is not in the future", 422)
    return when


def parse_trigger_options(raw: Any, now: datetime | None = None) -> TriggerOptions:
    """Validate the options of one trigger. Raises OptionError naming the offending option."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise OptionError("options", "options must be a JSON object")
    given_delay = raw.get("delay")
    if isinstance(given_delay, datetime):  # the Python SDK may pass a datetime
        raw = {**raw, "delay": given_delay.isoformat()}
    _check_storable(raw)
    given = {camel_case(key): value for key, value in raw.items() if value is not None}
    options = TriggerOptions(raw=raw)
    for key, parse in _PARSERS.items():
        if key in given:
            parse(options, given[key])
    if "delay" in given:
        options.delay_until = parse_delay(given["delay"], now or timezone.now())
    return options


def _check_storable(raw: dict[str, Any]) -> None:
    # Every option is kept (Run.options) for display, so it must fit in a jsonb column.
    for key, value in raw.items():
        try:
            check_text(str(key), f"options.{key}")
        except UnstorableValue as exc:
            raise OptionError("options", exc.message) from exc
        try:
            check_json(value, f"options.{key}")
        except UnstorableValue as exc:
            raise OptionError(camel_case(str(key)) or "options", exc.message) from exc
    try:
        json.dumps(raw, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise OptionError("options", "options must contain only JSON values") from exc


def _queue(options: TriggerOptions, value: Any) -> None:
    # The wire sends {"name": ...}; the SDK option and the dashboard form give the plain name.
    name = value.get("name") if isinstance(value, dict) else value
    options.queue = _text("queue.name", name, 256) or None
    limit = value.get("concurrencyLimit") if isinstance(value, dict) else None
    if limit is not None:
        if not _is_whole(limit) or not 0 <= limit <= MAX_INT:
            raise OptionError(
                "queue.concurrencyLimit", "options.queue.concurrencyLimit must be an integer of 0 or more"
            )
        if options.queue is None:
            raise OptionError("queue.name", "options.queue.name is required with options.queue.concurrencyLimit")
        options.queue_concurrency_limit = int(limit)


def _idempotency_key(options: TriggerOptions, value: Any) -> None:
    options.idempotency_key = _text("idempotencyKey", value, 2048) or None


def _idempotency_key_options(options: TriggerOptions, value: Any) -> None:
    # Sent by the official SDK beside the hashed key: the caller's own key, for display.
    if isinstance(value, dict) and isinstance(value.get("key"), str):
        options.idempotency_key_user = value["key"][:2048]


def _idempotency_key_ttl(options: TriggerOptions, value: Any) -> None:
    seconds = parse_duration(value) if isinstance(value, str) else None
    if _is_whole(value) and value > 0:
        seconds = int(value)
    if not seconds or seconds > MAX_INT:
        raise OptionError("idempotencyKeyTTL", 'options.idempotencyKeyTTL must be a duration like "1h" or "7d"', 422)
    options.idempotency_key_ttl = seconds


def _test(options: TriggerOptions, value: Any) -> None:
    if not isinstance(value, bool):
        raise OptionError("test", "options.test must be a boolean")
    options.is_test = value


def _parent_run_id(options: TriggerOptions, value: Any) -> None:
    # Sent by SDKs from inside a running task.
    options.parent_run_id = _text("parentRunId", value, 64) or None


def _resume_parent(options: TriggerOptions, value: Any) -> None:
    if not isinstance(value, bool):
        raise OptionError("resumeParentOnCompletion", "options.resumeParentOnCompletion must be a boolean")
    options.resume_parent = value


def _debounce(options: TriggerOptions, value: Any) -> None:
    if not isinstance(value, dict):
        raise OptionError("debounce", "options.debounce must be an object {key, delay, mode?, maxDelay?}")
    key = _text("debounce.key", value.get("key"), 512)
    if not key:
        raise OptionError("debounce.key", "options.debounce.key must not be empty", 422)
    delay = _debounce_duration("delay", value.get("delay"))
    mode = value.get("mode") or "leading"
    if mode not in ("leading", "trailing"):
        raise OptionError("debounce.mode", 'options.debounce.mode must be "leading" or "trailing"', 422)
    max_delay = None
    given_max = value.get("maxDelay", value.get("max_delay"))
    if given_max is not None:
        max_delay = _debounce_duration("maxDelay", given_max)
        if max_delay <= delay:
            raise OptionError(
                "debounce.maxDelay", "options.debounce.maxDelay must be longer than options.debounce.delay", 422
            )
    options.debounce = Debounce(key=key, delay=delay, mode=mode, max_delay=max_delay)


def _debounce_duration(name: str, value: Any) -> int:
    seconds = parse_duration(value) if isinstance(value, str) else None
    if not seconds or seconds > MAX_INT:
        raise OptionError(
            f"debounce.{name}", f'options.debounce.{name} must be a duration of at least 1s, like "5s" or "1m"', 422
        )
    return seconds


def _concurrency_key(options: TriggerOptions, value: Any) -> None:
    if _is_number(value):
        value = str(int(value)) if _is_whole(value) else str(value)
    options.concurrency_key = _text("concurrencyKey", value, 256)


def _tags(options: TriggerOptions, value: Any) -> None:
    tags = [value] if isinstance(value, str) else value
    if not isinstance(tags, list):
        raise OptionError("tags", "options.tags must be a string or a list of strings")
    unique = list(dict.fromkeys(_text("tags", tag, MAX_TAG_LENGTH) for tag in tags))
    if len(unique) > MAX_TAGS:
        raise OptionError("tags", f"Too many tags: {len(unique)} given, a run can have at most {MAX_TAGS}", 422)
    options.tags = unique


def _metadata(options: TriggerOptions, value: Any) -> None:
    if not isinstance(value, dict):
        raise OptionError("metadata", "options.metadata must be a JSON object")
    if len(json.dumps(value).encode()) > MAX_METADATA_BYTES:
        raise OptionError("metadata", "options.metadata must be at most 256 KiB of JSON", 413)
    options.metadata = value


def _max_attempts(options: TriggerOptions, value: Any) -> None:
    if not _is_whole(value) or not 1 <= value <= MAX_INT:
        raise OptionError("maxAttempts", "options.maxAttempts must be an integer of at least 1")
    options.max_attempts = int(value)


def _max_duration(options: TriggerOptions, value: Any) -> None:
    if not _is_number(value) or (isinstance(value, float) and not math.isfinite(value)):
        raise OptionError("maxDuration", "options.maxDuration must be a number of seconds")
    options.max_duration = min(max(math.ceil(value), MIN_MAX_DURATION), MAX_INT)


def _priority(options: TriggerOptions, value: Any) -> None:
    if not _is_number(value) or not 0 <= value <= MAX_INT:
        raise OptionError("priority", f"options.priority must be a number of seconds from 0 to {MAX_INT}")
    options.priority = float(value)


def _machine(options: TriggerOptions, value: Any) -> None:
    if value not in registry.MACHINES:
        raise OptionError("machine", f"options.machine must be one of {', '.join(registry.MACHINES)}")
    options.machine = value


def _region(options: TriggerOptions, value: Any) -> None:
    options.region = _text("region", value, 64)


def _ttl(options: TriggerOptions, value: Any) -> None:
    seconds = parse_duration(value) if isinstance(value, str) else None
    if _is_whole(value) and value >= 0:
        seconds = int(value)
    if seconds is None or seconds > MAX_INT:
        raise OptionError("ttl", 'options.ttl must be a duration like "10m" or "1h30m", or a number of seconds')
    options.ttl = seconds


_PARSERS = {
    "queue": _queue,
    "concurrencyKey": _concurrency_key,
    "tags": _tags,
    "metadata": _metadata,
    "maxAttempts": _max_attempts,
    "maxDuration": _max_duration,
    "priority": _priority,
    "machine": _machine,
    "region": _region,
    "ttl": _ttl,
    "idempotencyKey": _idempotency_key,
    "idempotencyKeyOptions": _idempotency_key_options,
    "idempotencyKeyTTL": _idempotency_key_ttl,
    "debounce": _debounce,
    "parentRunId": _parent_run_id,
    "test": _test,
    "resumeParentOnCompletion": _resume_parent,
}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_whole(value: Any) -> bool:
    """A number without a fractional part. JSON integers can have hundreds of digits, which
    float() cannot convert (OverflowError): integers are never converted."""
    if isinstance(value, float):
        return value.is_integer()
    return _is_number(value)


def _text(field: str, value: Any, max_length: int) -> str:
    if not isinstance(value, str):
        raise OptionError(field, f"options.{field} must be a string")
    if len(value) > max_length:
        raise OptionError(field, f"options.{field} must be at most {max_length} characters")
    if "\x00" in value:
        raise OptionError(field, f"options.{field} must not contain NUL characters")
    return value
