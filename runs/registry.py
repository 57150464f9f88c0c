"""The task registry: `@task` turns a Python function into a Runyard task.

    from runs.registry import task, Retry

    @task(id="send-email", queue="emails", concurrency_limit=5, retry=Retry(max_attempts=3))
    def send_email(payload):
        ...

    @task(id="nightly-report", cron="0 3 * * *", timezone="Europe/Paris")
    def nightly_report(payload):  # the scheduled payload: payload["timestamp"], ...
        ...

Workers import the modules named by RUNYARD_TASK_MODULES and record what they serve in
the database (TaskDefinition), so the web process never imports task code.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import json
import re
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import pydantic
from django.conf import settings

from runs import conf
from runs import cron as crons

MACHINES = ["micro", "small-1x", "small-2x", "medium-1x", "medium-2x", "large-1x", "large-2x"]
DEFAULT_MACHINE = "small-1x"
TASK_ID_RE = re.compile(r"^[a-zA-Z0-9_\-./:]{1,128}$")


@dataclass(frozen=True)
class Retry:
    """Exponential backoff: attempt n waits min(min_timeout * factor**(n-1), max_timeout)."""

    max_attempts: int = 3
    factor: float = 2.0
    min_timeout: float = 1.0  # seconds
    max_timeout: float = 60.0

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return float(min(self.min_timeout * self.factor ** (attempt - 1), self.max_timeout))


class RetryLater(Exception):
    """Raised by a task's call to have its run attempted again in `seconds`, whatever its retry
    policy (a plain Celery task's self.retry() decided it); `cause` is the attempt's error."""

    def __init__(self, seconds: float, cause: BaseException) -> None:
        super().__init__(f"retry in {seconds:g}s")
        self.seconds, self.cause = seconds, cause


@dataclass(frozen=True)
class DeclaredSchedule:
    """A cron schedule a task declares in code (`@task(cron=...)`); workers sync it."""

    cron: str
    timezone: str = "UTC"
    overlap: str = "allow"  # or "skip" while the previous run is unfinished
    missed: str = "once"  # or "skip": ticks missed while no engine ran are not fired


SCHEDULE_KEYS = ("pattern", "timezone", "overlap", "missed")


def declared_schedule(cron: str | dict[str, str] | None, timezone: str | None) -> DeclaredSchedule | None:
    """The schedule of `@task(cron=..., timezone=...)`: cron is an expression, or a dict of
    SCHEDULE_KEYS (the official SDK's `{pattern, timezone}` and the overlap and missed
    policies). Raises ValueError naming the field and the rule."""
    if cron is None:
        if timezone is not None:
            raise ValueError("timezone is only for a task that declares a cron")
        return None
    given: dict[str, Any] = {"pattern": cron} if isinstance(cron, str) else dict(cron)
    unknown = set(given) - set(SCHEDULE_KEYS)
    if unknown:
        raise ValueError(f"cron takes only {', '.join(SCHEDULE_KEYS)}, not {', '.join(sorted(unknown))}")
    if timezone is not None:
        given.setdefault("timezone", timezone)
    for name, choices in (("overlap", ("allow", "skip")), ("missed", ("once", "skip"))):
        if given.get(name, choices[0]) not in choices:
            raise ValueError(f"cron's {name} must be one of {', '.join(choices)}")
    return DeclaredSchedule(
        cron=crons.clean(given.get("pattern")),
        timezone=crons.parse_timezone(given.get("timezone", "UTC")),
        overlap=given.get("overlap", "allow"),
        missed=given.get("missed", "once"),
    )


@dataclass(frozen=True)
class TaskSpec:
    id: str
    fn: Callable[..., Any] = field(repr=False)
    queue: str
    concurrency_limit: int | None
    retry: Retry
    max_duration: int | None
    machine: str
    # The declared type of the payload (the first parameter's annotation) and its JSON schema.
    payload_type: Any = field(default=None, repr=False, compare=False)
    payload_schema: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    signature: str = ""  # how callers call it, when the payload is not its one argument
    module_path: str = ""  # where it is defined, when fn is a wrapper
    celery_queue: str = ""  # a plain Celery task's queue (its router's choice): its workers listen there
    schedule: DeclaredSchedule | None = None  # @task(cron=...): synced when a worker registers

    @property
    def module(self) -> str:
        return self.module_path or f"{self.fn.__module__}.{self.fn.__qualname__}"

    def call(self, payload: Any) -> Any:
        """Call the function with the payload (functions with no parameter get none).

        A payload declared as a pydantic model or a dataclass arrives as one: a payload that
        does not fit raises pydantic.ValidationError, which fails the attempt like any error.
        """
        if not _takes_arguments(self.fn):
            return self.fn()
        if _builds_instances(self.payload_type):
            adapter = payload_adapter(self.payload_type)
            if adapter is not None:
                payload = adapter.validate_python(payload)
        return self.fn(payload)


@functools.cache
def _takes_arguments(fn: Callable[..., Any]) -> bool:
    return bool(inspect.signature(fn).parameters)  # read once: it cost a no-op run a few percent


REGISTRY: dict[str, TaskSpec] = {}


def task(
    *,
    id: str,
    queue: str | None = None,
    concurrency_limit: int | None = None,
    retry: Retry | None = None,
    max_duration: int | None = None,
    machine: str = DEFAULT_MACHINE,
    cron: str | dict[str, str] | None = None,
    timezone: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as task `id` with its defaults; with `cron`, the task
    runs on that schedule in every environment (see declared_schedule)."""
    if not TASK_ID_RE.match(id):
        raise ValueError(f"task id {id!r} must be 1-128 characters of letters, digits and _-./:")
    if machine not in MACHINES:
        raise ValueError(f"machine {machine!r} is not one of {', '.join(MACHINES)}")
    if concurrency_limit is not None and concurrency_limit < 0:
        raise ValueError("concurrency_limit must be 0 or more")
    schedule = declared_schedule(cron, timezone)

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        existing = REGISTRY.get(id)
        if existing is not None and existing.module != f"{fn.__module__}.{fn.__qualname__}":
            raise ValueError(f"task id {id!r} is already registered by {existing.module}")
        payload_type = payload_annotation(fn)
        REGISTRY[id] = TaskSpec(
            id=id,
            fn=fn,
            queue=queue or f"task/{id}",
            concurrency_limit=concurrency_limit,
            retry=retry or Retry(),
            max_duration=max_duration,
            machine=machine,
            payload_type=payload_type,
            payload_schema=payload_schema(payload_type),
            schedule=schedule,
        )
        fn.task_id = id  # type: ignore[attr-defined]  # lets batch.trigger_by_task name the task
        return fn

    return register


def get(task_id: str) -> TaskSpec | None:
    return REGISTRY.get(task_id)


def load_task_modules() -> list[str]:
    """Import every module of RUNYARD_TASK_MODULES; returns the task ids now registered."""
    for name in settings.RUNYARD_TASK_MODULES:
        importlib.import_module(name)
    return sorted(REGISTRY)


def definition_fields(spec: TaskSpec) -> dict[str, Any]:
    """The columns of a TaskDefinition row for this spec."""
    return {
        "queue": spec.queue,
        "concurrency_limit": spec.concurrency_limit,
        "max_attempts": spec.retry.max_attempts,
        "retry": asdict(spec.retry),
        "max_duration": spec.max_duration,
        "machine": spec.machine,
        "module": spec.module,
        "payload_schema": spec.payload_schema,
        "signature": spec.signature,
        "celery_queue": spec.celery_queue,
    }


def celery_queue(machine: str, region: str = "") -> str:
    """The Celery queue that workers for this machine preset (and region) consume.

    Only regions listed in RUNYARD_REGIONS get their own queues (their workers consume
    `runyard.<machine>.<region>`); any other region is recorded on the run but runs on the
    shared machine queue, so a run never waits for a worker that does not exist.
    """
    # conf.get: a project's celery.py asks for the queues before the apps are ready.
    if region and region in conf.get("RUNYARD_REGIONS"):
        return f"runyard.{machine}.{region}"
    return f"runyard.{machine}"


def worker_queues(region: str = "") -> list[str]:
    """The Celery queues a worker consumes: every machine preset, of one region or none."""
    return [celery_queue(machine, region) for machine in MACHINES]


# --- payload types ------------------------------------------------------------------------
#
# A task that annotates its first parameter (a pydantic model, a dataclass, a TypedDict or a
# plain type) gets a JSON schema at registration. Workers record it (TaskDefinition.
# payload_schema), so the dashboard can offer typed fields and check payloads without
# importing task code; where the task is registered in-process, pydantic itself validates.

JSON_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "an object",
    "array": "a list",
    "null": "null",
}


def payload_annotation(fn: Callable[..., Any]) -> Any:
    """The annotation of fn's first parameter; None when there is none (or Any, or unresolvable)."""
    try:
        parameters = list(inspect.signature(fn, eval_str=True).parameters.values())
    except (NameError, TypeError, SyntaxError, AttributeError):
        return None  # an annotation naming something that is not importable here
    if not parameters or parameters[0].annotation in (inspect.Parameter.empty, Any, object):
        return None
    return parameters[0].annotation


@functools.cache
def payload_adapter(annotation: Any) -> pydantic.TypeAdapter[Any] | None:
    """A pydantic adapter validating payloads of this type; None for types pydantic cannot handle."""
    if annotation is None:
        return None
    if typing.is_typeddict(annotation):
        # pydantic refuses typing.TypedDict before Python 3.12: validate an equivalent model.
        annotation = _typeddict_model(annotation)
    try:
        return pydantic.TypeAdapter(annotation)
    except (pydantic.PydanticUserError, pydantic.PydanticSchemaGenerationError, TypeError, NameError):
        return None


def payload_schema(annotation: Any) -> dict[str, Any] | None:
    """The JSON schema of a payload type, or None when it says nothing (no type, Any)."""
    adapter = payload_adapter(annotation)
    if adapter is None:
        return None
    try:
        schema = adapter.json_schema()
    except (pydantic.PydanticUserError, pydantic.PydanticInvalidForJsonSchema, TypeError):
        return None
    return schema or None


def _typeddict_model(typed_dict: Any) -> type[pydantic.BaseModel]:
    hints = typing.get_type_hints(typed_dict)
    required = getattr(typed_dict, "__required_keys__", set(hints))
    fields: dict[str, Any] = {name: (hint, ... if name in required else None) for name, hint in hints.items()}
    return pydantic.create_model(typed_dict.__name__, **fields)


def _builds_instances(annotation: Any) -> bool:
    """Payload types the task receives as instances rather than plain JSON values."""
    if not isinstance(annotation, type):
        return False
    return issubclass(annotation, pydantic.BaseModel) or dataclasses.is_dataclass(annotation)


def validate_payload(task_id: str, value: Any, schema: dict[str, Any] | None) -> dict[str, str]:
    """Errors of a payload by field path ("" for the payload itself); empty when it is valid.

    pydantic validates when the task is registered in this process; otherwise the recorded
    JSON schema is checked (types, required properties, enums; see check_schema).
    """
    spec = REGISTRY.get(task_id)
    adapter = payload_adapter(spec.payload_type) if spec is not None else None
    if adapter is not None:
        try:
            adapter.validate_python(value)
        except pydantic.ValidationError as exc:
            errors: dict[str, str] = {}
            for error in exc.errors():
                errors.setdefault(".".join(str(part) for part in error["loc"]), error["msg"])
            return errors
        return {}
    return check_schema(schema, value) if schema else {}


def check_schema(
    schema: dict[str, Any], value: Any, root: dict[str, Any] | None = None, path: str = ""
) -> dict[str, str]:
    """A small JSON-schema check: type, enum, required and properties, items, anyOf, local $ref."""
    root = root or schema
    schema = resolve_ref(schema, root)
    if "anyOf" in schema:
        options = [resolve_ref(option, root) for option in schema["anyOf"]]
        results = [check_schema(option, value, root, path) for option in options]
        if any(not result for result in results):
            return {}
        return next((r for o, r in zip(options, results, strict=True) if o.get("type") != "null"), results[0])
    if "enum" in schema and value not in schema["enum"]:
        choices = ", ".join(json.dumps(choice) for choice in schema["enum"])
        return {path: f"must be one of {choices}"}
    kind = schema.get("type")
    if isinstance(kind, str) and not is_json_type(value, kind):
        return {path: f"must be {JSON_TYPE_NAMES.get(kind, kind)}"}
    if broken := _check_bounds(schema, value):
        return {path: broken}
    errors: dict[str, str] = {}
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                errors[_join(path, name)] = "is required"
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                errors.update(check_schema(sub, value[name], root, _join(path, name)))
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            errors.update(check_schema(schema["items"], item, root, _join(path, str(index))))
    return errors


def _check_bounds(schema: dict[str, Any], value: Any) -> str:
    """The first broken bound of a number or string (minimum, maxLength, pattern, ...), else ""."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return f"must be at least {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"must be at most {schema['maximum']}"
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            return f"must be more than {schema['exclusiveMinimum']}"
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            return f"must be less than {schema['exclusiveMaximum']}"
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            return (
                "must not be empty"
                if schema["minLength"] == 1
                else f"must be at least {schema['minLength']} characters"
            )
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"must be at most {schema['maxLength']} characters"
        if isinstance(schema.get("pattern"), str) and not _matches(schema["pattern"], value):
            return f"must match the pattern {schema['pattern']}"
    return ""


def _matches(pattern: str, value: str) -> bool:
    try:
        return re.search(pattern, value) is not None
    except re.error:
        return True  # a pattern Python cannot read is not this check's to enforce


def resolve_ref(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """The schema a local `$ref` ("#/$defs/Name") points to, merged under the referring keys."""
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return schema
    target: Any = root
    for part in ref[2:].split("/"):
        target = target.get(part, {}) if isinstance(target, dict) else {}
    rest = {key: value for key, value in schema.items() if key != "$ref"}
    return {**target, **rest} if isinstance(target, dict) else rest


def is_json_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    expected = {"string": str, "boolean": bool, "object": dict, "array": list}.get(kind)
    if kind == "null":
        return value is None
    return expected is None or isinstance(value, expected)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
