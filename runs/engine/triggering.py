"""Creating runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from runs import events, registry
from runs.engine.core import Actor, ensure_queue, mark_queued, record
from runs.models import Environment, RequestIdempotency, Run, TaskDefinition
from runs.states import RunStatus

DEV_DEFAULT_TTL = 600  # seconds; the reference gives dev runs a 10 minute TTL by default
MAX_TTL = 14 * 86400  # any longer TTL is clamped to 14 days


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
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    parent_run_id: str | None = None
    trigger_function: str = "trigger"
    raw: dict[str, Any] = field(default_factory=dict)  # every option as given, for display


@dataclass
class TriggerResult:
    run: Run
    is_cached: bool = False


def trigger(
    *,
    environment: Environment,
    task_id: str,
    payload: str = "",
    payload_type: str = "application/json",
    options: TriggerOptions | None = None,
    actor: Actor,
    source: str = "api",
    request_key: str | None = None,
    now: datetime | None = None,
) -> TriggerResult:
    """Create a run of task_id; returns it, or the run a repeated request_key already made."""
    now = now or timezone.now()
    options = options or TriggerOptions()
    try:
        with transaction.atomic():
            if request_key:
                earlier = _run_for_request_key(environment, task_id, request_key)
                if earlier is not None:
                    return TriggerResult(run=earlier, is_cached=False)
            run = _insert_run(environment, task_id, payload, payload_type, options, actor, source, now)
            if request_key:
                RequestIdempotency.objects.create(
                    environment=environment, task_identifier=task_id, key=request_key, run=run, created_at=now
                )
    except IntegrityError:
        # A concurrent retry of the same request won the race: answer with its run.
        earlier = _run_for_request_key(environment, task_id, request_key) if request_key else None
        if earlier is None:
            raise
        return TriggerResult(run=earlier, is_cached=False)
    return TriggerResult(run=run)


def _run_for_request_key(environment: Environment, task_id: str, key: str) -> Run | None:
    found = (
        RequestIdempotency.objects.select_related("run")
        .filter(environment=environment, task_identifier=task_id, key=key)
        .first()
    )
    return found.run if found else None


def _insert_run(
    environment: Environment,
    task_id: str,
    payload: str,
    payload_type: str,
    options: TriggerOptions,
    actor: Actor,
    source: str,
    now: datetime,
) -> Run:
    definition = TaskDefinition.objects.filter(task_id=task_id).first()
    run = _new_run(environment, task_id, payload, payload_type, options, definition, source, now)
    ensure_queue(environment, run.queue, definition)
    if options.delay_until is not None and options.delay_until > now:
        run.status, run.delay_until = RunStatus.DELAYED, options.delay_until
        reason = "triggered with a delay"
    elif definition is None:
        run.status = RunStatus.PENDING_VERSION
        mark_queued(run, now)
        reason = "triggered; no worker serves this task yet"
    else:
        run.status = RunStatus.QUEUED
        mark_queued(run, now)
        reason = "triggered"
    run.save(force_insert=True)
    record(run, "", run.status, actor=actor, reason=reason, now=now, created=True)
    events.wake_engine()
    return run


def _new_run(
    environment: Environment,
    task_id: str,
    payload: str,
    payload_type: str,
    options: TriggerOptions,
    definition: TaskDefinition | None,
    source: str,
    now: datetime,
) -> Run:
    ttl = options.ttl if options.ttl is not None else _default_ttl(environment)
    return Run(
        environment=environment,
        task_identifier=task_id,
        payload=payload,
        payload_type=payload_type,
        metadata=options.metadata,
        tags=sorted(options.tags),
        queue=options.queue or (definition.queue if definition else f"task/{task_id}"),
        concurrency_key=options.concurrency_key,
        machine=options.machine or (definition.machine if definition else registry.DEFAULT_MACHINE),
        region=options.region,
        priority_ms=round(options.priority * 1000),
        max_attempts=options.max_attempts or (definition.max_attempts if definition else 1),
        max_duration=options.max_duration if options.max_duration is not None else _max_duration(definition),
        ttl=min(ttl, MAX_TTL) if ttl else None,
        options=options.raw,
        created_at=now,
        updated_at=now,
        trigger_function=options.trigger_function,
        trigger_source=source,
    )


def _max_duration(definition: TaskDefinition | None) -> int | None:
    return definition.max_duration if definition else None


def _default_ttl(environment: Environment) -> int:
    # Dev runs expire fast so a stopped worker does not pile up work; others get the maximum.
    return DEV_DEFAULT_TTL if environment.kind == "DEVELOPMENT" else MAX_TTL
