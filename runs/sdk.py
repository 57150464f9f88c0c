"""The Python SDK: the verbs of the official SDK in Python naming.

    from runs.sdk import tasks, runs

    handle = tasks.trigger("send-email", {"to": "ada@example.com"}, {"queue": "emails", "ttl": "1h"})
    run = runs.retrieve(handle.id)

This is the in-process mode: calls go straight to runs.engine in the caller's database
transaction context. Options take the wire protocol's camelCase keys or snake_case.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from runs import engine, packets
from runs.models import Environment, Run
from runs.options import OptionError, parse_delay, parse_task_id, parse_trigger_options
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


class RunStateError(RunyardError):
    """The run's status does not allow the action (e.g. rescheduling a run that is not delayed)."""


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
            parsed = parse_trigger_options(hash_idempotency_key(options))
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

    def cancel(self, run_id: str, *, env: str = "dev") -> RunInfo:
        """Cancel a run that has not finished (a finished run is left as it is)."""
        run_id = self.retrieve(run_id, env=env).id
        engine.cancel_run(run_id=run_id, actor=ACTOR, reason="canceled through the Python SDK")
        return self.retrieve(run_id, env=env)

    def reschedule(self, run_id: str, delay: str | datetime, *, env: str = "dev") -> RunInfo:
        """Move a delayed run to a new time: a duration ("2h") or a date. Raises RunStateError."""
        run_id = self.retrieve(run_id, env=env).id
        try:
            when = parse_delay(delay, timezone.now())
            engine.reschedule_run(run_id=run_id, delay_until=when, actor=ACTOR)
        except OptionError as exc:
            raise ValidationError(exc.field, exc.message) from exc
        except engine.EngineError as exc:
            raise RunStateError(str(exc)) from exc
        return self.retrieve(run_id, env=env)


def hash_idempotency_key(options: dict[str, Any] | None) -> dict[str, Any] | None:
    """Hash the caller's idempotency key as the official SDK does, so both clients share keys.

    A 64-character key is taken as already hashed.
    """
    if not options:
        return options
    name = "idempotencyKey" if "idempotencyKey" in options else "idempotency_key"
    key = options.get(name)
    if not isinstance(key, str) or len(key) == 64:
        return options
    hashed = {**options, name: hashlib.sha256(key.encode()).hexdigest()}
    hashed.setdefault("idempotencyKeyOptions", {"key": key, "scope": "global"})
    return hashed


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
