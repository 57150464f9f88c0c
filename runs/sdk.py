"""The Python SDK: the verbs of the official SDK in Python naming.

    from runs.sdk import tasks, runs

    handle = tasks.trigger("send-email", {"to": "ada@example.com"}, {"queue": "emails", "ttl": "1h"})
    run = runs.retrieve(handle.id)

This is the in-process mode: calls go straight to runs.engine in the caller's database
transaction context. Options take the wire protocol's camelCase keys or snake_case.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runs import engine, packets
from runs.models import Environment, Run
from runs.options import OptionError, parse_task_id, parse_trigger_options
from runs.states import RunStatus, api_flags

ACTOR = "sdk"


class RunyardError(Exception):
    """Base class of every error the SDK raises."""


class ValidationError(RunyardError):
    """A bad argument or option; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


class RunNotFoundError(RunyardError):
    """No run with that id in that environment."""


@dataclass(frozen=True)
class TriggerHandle:
    id: str
    is_cached: bool


@dataclass(frozen=True)
class RunInfo:
    id: str
    status: str
    task_identifier: str
    payload: Any
    output: Any
    error: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    tags: list[str]
    metadata: dict[str, Any] | None
    attempt_count: int
    is_queued: bool
    is_executing: bool
    is_waiting: bool
    is_completed: bool
    is_success: bool
    is_failed: bool
    is_cancelled: bool
    is_test: bool


class Tasks:
    def trigger(
        self, task_id: str, payload: Any = None, options: dict[str, Any] | None = None, *, env: str = "dev"
    ) -> TriggerHandle:
        """Trigger a run of task_id. Raises ValidationError for a bad task id, payload or option."""
        environment = _environment(env)
        try:
            parsed = parse_trigger_options(options)
            task_id = parse_task_id(task_id)
        except OptionError as exc:
            raise ValidationError(exc.field, exc.message) from exc
        data, content_type = _encode(payload)
        result = engine.trigger(
            environment=environment,
            task_id=task_id,
            payload=data,
            payload_type=content_type,
            options=parsed,
            actor=ACTOR,
            source="sdk",
        )
        return TriggerHandle(id=result.run.id, is_cached=result.is_cached)


class Runs:
    def retrieve(self, run_id: str, *, env: str = "dev") -> RunInfo:
        """The run as it is now. Raises RunNotFoundError."""
        run = Run.objects.filter(pk=run_id, environment=_environment(env)).first()
        if run is None:
            raise RunNotFoundError(f"Run {run_id} not found")
        return _info(run)


tasks = Tasks()
runs = Runs()


def _environment(slug: str) -> Environment:
    environment = Environment.objects.filter(slug=slug).first()
    if environment is None:
        raise ValidationError("env", f"env {slug!r} is not an environment")
    return environment


def _encode(payload: Any) -> tuple[str, str]:
    """A JSON value as the official SDK stores it: SuperJSON `{"json": payload}`."""
    if payload is None:
        return "", packets.JSON
    try:
        data = json.dumps({"json": payload}, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError("payload", f"payload must be a JSON value: {exc}") from exc
    return data, packets.SUPERJSON


def _info(run: Run) -> RunInfo:
    flags = api_flags(run.status)
    completed = run.status == RunStatus.COMPLETED
    return RunInfo(
        id=run.id,
        status=run.status,
        task_identifier=run.task_identifier,
        payload=packets.decode(run.payload, run.payload_type),
        output=packets.decode(run.output, run.output_type) if completed else None,
        error=run.error if not completed else None,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        tags=sorted(run.tags),
        metadata=run.metadata,
        attempt_count=run.attempt_count,
        is_queued=flags["isQueued"],
        is_executing=flags["isExecuting"],
        is_waiting=flags["isWaiting"],
        is_completed=flags["isCompleted"],
        is_success=flags["isSuccess"],
        is_failed=flags["isFailed"],
        is_cancelled=flags["isCancelled"],
        is_test=run.is_test,
    )
