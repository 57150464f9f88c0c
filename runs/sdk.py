"""The Python SDK: the verbs of the official SDK in Python naming.

    from runs.sdk import tasks, runs, metadata

    handle = tasks.trigger("send-email", {"to": "ada@example.com"}, {"queue": "emails", "ttl": "1h"})
    run = runs.retrieve(handle.id)
    for failed in runs.list(status="FAILED", period="1d"):
        runs.replay(failed.id)
    metadata.set("progress", 0.5)  # inside a task: its run's metadata (runs.metadata_buffer)

Two modes, one surface (results and errors are the classes of runs.sdk_types):

* in-process (the default inside the Django project): calls go straight to runs.engine in
  the caller's database transaction context;
* remote: with RUNYARD_API_URL and RUNYARD_SECRET_KEY set, or after
  configure(api_url=..., secret_key=...), the same calls go over the REST API
  (runs.sdk_remote). The secret key chooses the environment, so `env=` is in-process only.
  Code running inside a task always uses the in-process mode (its child runs need it).

Options take the wire protocol's camelCase keys or snake_case.
"""

from __future__ import annotations

import builtins
import functools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from itertools import chain, islice
from typing import Any, TypeVar

from django.db import transaction
from django.utils import timezone

from runs import context, engine, holds, listing, logs, packets, queue_items, schedule_items, worker_items
from runs import metadata as metadata_ops
from runs.engine.queues import MAX_LIMIT as MAX_QUEUE_LIMIT
from runs.engine.queues import QUEUE_KINDS
from runs.engine.triggering import environment_with_definition
from runs.engine.workers import REASON_LENGTH as MAX_WORKER_REASON
from runs.metadata_buffer import metadata
from runs.models import Batch, Environment, Queue, Run, Schedule, TaskDefinition, Waitpoint, Worker
from runs.options import OptionError, parse_delay, parse_task_id, parse_trigger_options
from runs.schedule_spec import ScheduleSpecError, parse_schedule
from runs.sdk_remote import REPLAY_KEYS, Client, pause_fields
from runs.sdk_types import (
    UNSET,
    ApiConnectionError,
    AuthenticationError,
    BatchHandle,
    BatchItems,
    BatchTriggerError,
    LogLines,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RunInfo,
    RunList,
    RunNotFoundError,
    RunPage,
    RunStateError,
    RunSummary,
    RunyardError,
    ScheduleInfo,
    SchedulePage,
    ServerError,
    SubtaskUnwrapError,
    TaskRunResult,
    TriggerHandle,
    ValidationError,
    hash_idempotency_key,
    iterate,
    list_params,
    log_params,
    run_error,
    schedule_body,
    schedule_info,
    schedule_page,
)
from runs.states import RunStatus, api_flags

__all__ = [
    "ApiConnectionError",
    "AuthenticationError",
    "BatchHandle",
    "BatchTriggerError",
    "Client",
    "LogLines",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RunInfo",
    "RunList",
    "RunNotFoundError",
    "RunPage",
    "RunStateError",
    "RunSummary",
    "RunyardError",
    "ScheduleInfo",
    "SchedulePage",
    "ServerError",
    "SubtaskUnwrapError",
    "TaskRunResult",
    "TriggerHandle",
    "ValidationError",
    "batch",
    "configure",
    "environment",
    "hash_idempotency_key",
    "metadata",
    "queues",
    "runs",
    "schedules",
    "tasks",
    "workers",
]

ACTOR = "sdk"
# Items read ahead from an iterator: a batch that ends within them has a known size.
PEEK = 100


# --- choosing the mode --------------------------------------------------------------------

_configured: Client | None = None


def configure(*, api_url: str | None = None, secret_key: str | None = None, timeout: float = 30.0) -> None:
    """Send every call to the Runyard at api_url with secret_key (remote mode).

    configure() with no arguments goes back to the environment variables, or in-process.
    """
    global _configured
    if (api_url is None) != (secret_key is None):
        raise ValueError("configure() takes both api_url and secret_key, or neither")
    _configured = Client(api_url=api_url, secret_key=secret_key, timeout=timeout) if api_url and secret_key else None


def remote_client() -> Client | None:
    """The client of the remote mode, or None for in-process. The one place the mode is chosen."""
    if context.current() is not None:
        return None
    if _configured is not None:
        return _configured
    url, key = os.environ.get("RUNYARD_API_URL"), os.environ.get("RUNYARD_SECRET_KEY")
    if url and key:
        return _client_for(url, key)
    return None


@functools.lru_cache(maxsize=4)
def _client_for(url: str, key: str) -> Client:
    """One client (one pool of connections) per URL and key the environment names."""
    return Client(api_url=url, secret_key=key)


def _remote(env: str | None) -> Client | None:
    client = remote_client()
    if client is not None and env is not None:
        raise ValidationError("env", "in remote mode the secret key chooses the environment: leave env out")
    return client


class Tasks:
    """Trigger runs: from anywhere with trigger/batch_trigger, and wait on them inside a task."""

    def trigger(
        self, task_id: str, payload: Any = None, options: dict[str, Any] | None = None, *, env: str | None = None
    ) -> TriggerHandle:
        """Trigger a run of task_id. Raises ValidationError for a bad task id, payload or option.

        Inside a task the new run is its child, in the task's environment.
        """
        if (client := _remote(env)) is not None:
            return client.tasks.trigger(task_id, payload, options)
        run = _trigger_one(task_id, payload, options, env=env)
        return TriggerHandle(id=run.run.id, is_cached=run.is_cached)

    def batch_trigger(
        self,
        task_id: str,
        items: BatchItems,
        options: dict[str, Any] | None = None,
        *,
        env: str | None = None,
    ) -> BatchHandle:
        """Trigger one run per item ({"payload": ..., "options": {...}}), all or nothing.

        items may be a list, a generator or an async iterable; they are read as they come,
        never all held at once. options: {"idempotencyKey": ...} for the whole batch.
        Raises ValidationError for a bad item, BatchTriggerError over the batch rate limit.
        """
        if (client := _remote(env)) is not None:
            return client.tasks.batch_trigger(task_id, items, options)
        if isinstance(items, Sequence):
            return _batch([_for_task(task_id, item) for item in items], env=env, options=options)
        return _batch((_for_task(task_id, item) for item in iterate(items)), env=env, options=options)

    def retrieve_pause(self, task_id: str, *, env: str | None = None) -> dict[str, Any]:
        """The task's pause in the environment: {"task", "paused"} and, while paused, "pausedAt",
        "pausedBy", "reason", "resumeAt" (if set) and "heldRuns". Raises NotFoundError."""
        if (client := _remote(env)) is not None:
            return client.tasks.retrieve_pause(task_id)
        environment = _environment(env or "dev")
        if not engine.task_known(environment_id=environment.pk, task_id=task_id):
            raise NotFoundError(f"No task {task_id!r} in this environment")
        return holds.task_pause_item(environment.pk, task_id, timezone.now())

    def pause(
        self, task_id: str, *, reason: str = "", resume_at: datetime | None = None, env: str | None = None
    ) -> dict[str, Any]:
        """Stop the engine starting the task's runs in the environment (they wait as Queued;
        other tasks of its queues still run), until resume or resume_at. Raises NotFoundError,
        ValidationError (reason too long, resume_at not in the future)."""
        fields = pause_fields(reason, resume_at)
        if (client := _remote(env)) is not None:
            return client.tasks.pause(task_id, reason=reason, resume_at=resume_at)
        environment, at = _environment(env or "dev"), _at(fields)
        _pause_in_process(
            lambda: engine.pause_task(
                environment_id=environment.pk, task_id=task_id, actor=ACTOR, reason=reason, resume_at=at
            )
        )
        return holds.task_pause_item(environment.pk, task_id, timezone.now())

    def resume(self, task_id: str, *, reason: str = "", env: str | None = None) -> dict[str, Any]:
        """Let the engine start the task's runs in the environment again. Raises NotFoundError."""
        pause_fields(reason, None)
        if (client := _remote(env)) is not None:
            return client.tasks.resume(task_id, reason=reason)
        environment = _environment(env or "dev")
        _pause_in_process(
            lambda: engine.resume_task(environment_id=environment.pk, task_id=task_id, actor=ACTOR, reason=reason)
        )
        return holds.task_pause_item(environment.pk, task_id, timezone.now())

    def trigger_and_wait(
        self, task_id: str, payload: Any = None, options: dict[str, Any] | None = None
    ) -> TaskRunResult:
        """Inside a task: trigger a child and wait for it without holding a worker slot."""
        return _wait("trigger_and_wait", [{"id": task_id, "payload": payload, "options": options}], batch=False)[0]

    def batch_trigger_and_wait(self, task_id: str, items: Iterable[dict[str, Any]]) -> list[TaskRunResult]:
        """Inside a task: trigger one child per item and wait for all of them."""
        return _wait("batch_trigger_and_wait", [{**item, "id": task_id} for item in items], batch=True)


class BatchOfTasks:
    """Batches mixing several tasks: items are {"id": task id, "payload": ..., "options": ...}."""

    def trigger(
        self, items: BatchItems, options: dict[str, Any] | None = None, *, env: str | None = None
    ) -> BatchHandle:
        """Like tasks.batch_trigger, each item naming its task: {"id": task id, ...}."""
        if (client := _remote(env)) is not None:
            return client.batch.trigger(items, options)
        return _batch(items, env=env, options=options)

    def trigger_and_wait(self, items: Iterable[dict[str, Any]]) -> list[TaskRunResult]:
        return _wait("batch.trigger_and_wait", list(items), batch=True)

    def trigger_by_task(self, items: BatchItems, *, env: str | None = None) -> BatchHandle:
        """Items name the task by its function: {"task": fn, "payload": ...}."""
        if (client := _remote(env)) is not None:
            return client.batch.trigger(_by_task(item) for item in iterate(items))
        if isinstance(items, Sequence):
            return _batch([_by_task(item) for item in items], env=env)
        return _batch((_by_task(item) for item in iterate(items)), env=env)

    def trigger_by_task_and_wait(self, items: Iterable[dict[str, Any]]) -> list[TaskRunResult]:
        return _wait("batch.trigger_by_task_and_wait", [_by_task(item) for item in items], batch=True)


class Runs:
    """Read and act on runs of one environment (`env`, in-process; the key's, remote)."""

    def retrieve(self, run_id: str, *, env: str | None = None) -> RunInfo:
        """The run as it is now. Raises NotFoundError."""
        if (client := _remote(env)) is not None:
            return client.runs.retrieve(run_id)
        return _info(_run_of(run_id, env))

    def list(self, *, env: str | None = None, **filters: Any) -> RunList:
        """The runs matching every filter of reference 3.5, newest first, read a page at a time.

        Filters: status, task_identifier, version, tag, batch, bulk_action, schedule, is_test,
        from_, to (datetimes or epoch ms), period ("1d"), queue (a name, or {"type": "task",
        "name": task id}), machine, region; limit is the page size, after/before a run id to
        start from. Strings or lists of them. Iterate for every run (pages are fetched as
        needed) or call .pages() / .first_page(). Raises ValidationError for a bad filter.
        """
        params = list_params(**filters)
        if (client := _remote(env)) is not None:
            return client.runs.list(**filters)
        return RunList(lambda page_params: _page(_environment(env or "dev"), page_params), params)

    def logs(
        self,
        run_id: str,
        *,
        attempt: int | None = None,
        level: str | None = None,
        search: str | None = None,
        env: str | None = None,
    ) -> LogLines:
        """Every line the run logged or printed, oldest first, as dicts (attempt, seq, timestamp,
        level, logger, message, extra): of one attempt, from a level up (DEBUG ... CRITICAL),
        containing a text. Raises NotFoundError, ValidationError (on the first line asked for)."""
        if (client := _remote(env)) is not None:
            return client.runs.logs(run_id, attempt=attempt, level=level, search=search)

        def fetch(params: dict[str, str]) -> tuple[list[dict[str, Any]], str | None]:
            run = _run_of(run_id, env)
            try:
                query = logs.parse_query(params)
            except OptionError as exc:
                raise ValidationError(exc.field, exc.message) from exc
            page = logs.page(run.id, query)
            return [logs.as_json(line) for line in page.lines], page.next

        return LogLines(fetch, log_params(attempt=attempt, level=level, search=search))

    def cancel(self, run_id: str, *, env: str | None = None) -> RunInfo:
        """Cancel a run that has not finished (a finished run is left as it is)."""
        if (client := _remote(env)) is not None:
            return client.runs.cancel(run_id)
        run_id = _run_of(run_id, env).id
        engine.cancel_run(run_id=run_id, actor=ACTOR, reason="canceled through the Python SDK")  # audited there
        return self.retrieve(run_id, env=env)

    def reschedule(self, run_id: str, delay: str | datetime, *, env: str | None = None) -> RunInfo:
        """Move a delayed run to a new time: a duration ("2h") or a date. Raises RunStateError."""
        if (client := _remote(env)) is not None:
            return client.runs.reschedule(run_id, delay)
        run_id = _run_of(run_id, env).id
        try:
            when = parse_delay(delay, timezone.now())
            engine.reschedule_run(
                run_id=run_id, delay_until=when, actor=ACTOR, audit_reason="rescheduled through the Python SDK"
            )
        except OptionError as exc:
            raise ValidationError(exc.field, exc.message) from exc
        except engine.EngineError as exc:
            raise RunStateError(str(exc)) from exc
        return self.retrieve(run_id, env=env)

    def replay(self, run_id: str, *, env: str | None = None, payload: Any = UNSET, **overrides: Any) -> TriggerHandle:
        """A new run of the same task, in any status, with the original's payload and options
        except the overrides of reference 3.8: payload, metadata, tags, queue, concurrency_key,
        machine, version, region, delay, ttl, idempotency_key (used as given, not hashed),
        idempotency_key_ttl, max_attempts, max_duration, priority. Raises NotFoundError,
        ValidationError."""
        if unknown := sorted(set(overrides) - set(REPLAY_KEYS)):
            raise TypeError(f"replay() got an unexpected keyword argument {unknown[0]!r}")
        if (client := _remote(env)) is not None:
            return client.runs.replay(run_id, payload=payload, **overrides)
        original = _run_of(run_id, env)
        given = {REPLAY_KEYS[name]: value for name, value in overrides.items() if value is not None}
        now = timezone.now()
        try:
            options = parse_trigger_options(given, now=now)
        except OptionError as exc:
            raise ValidationError(exc.field, exc.message) from exc
        replay = engine.replay_run(
            run_id=original.id,
            actor=ACTOR,
            options=options,
            payload=None if payload is UNSET else _encode(payload),
            overridden={name for name in overrides if name in REPLAYED_FIELDS and overrides[name] is not None},
            source="sdk",
            changed=sorted({*given, *(() if payload is UNSET else ("payload",))}),
            audit_reason="replayed through the Python SDK",
            now=now,
        )
        return TriggerHandle(id=replay.run.id, is_cached=False)

    def update_metadata(
        self,
        run_id: str,
        *,
        metadata: dict[str, Any] | None = None,
        operations: Sequence[dict[str, Any]] | None = None,
        parent_operations: Sequence[dict[str, Any]] | None = None,
        root_operations: Sequence[dict[str, Any]] | None = None,
        env: str | None = None,
    ) -> dict[str, Any]:
        """Change a run's metadata from outside it, as PUT /api/v1/runs/{id}/metadata does:
        replace it with `metadata`, or apply `operations` (the official SDK's shapes, as
        {"type": "increment", "key": "done", "value": 1}); parent_/root_operations change its
        parent's or root's. Returns the run's metadata after. Raises NotFoundError,
        ValidationError, RunStateError (the run finished over an hour ago)."""
        lists = {"operations": operations, "parentOperations": parent_operations, "rootOperations": root_operations}
        body: dict[str, Any] = {"metadata": metadata}
        body.update({name: None if given is None else list(given) for name, given in lists.items()})
        if (client := _remote(env)) is not None:
            return client.runs.update_metadata(run_id, body)
        run = _run_of(run_id, env)
        try:
            change = metadata_ops.parse_change(body)
            return engine.update_metadata(run_id=run.id, change=change, environment_id=run.environment_id)
        except metadata_ops.MetadataError as exc:
            raise ValidationError(exc.field, exc.message) from exc
        except engine.MetadataTooLarge as exc:
            raise ValidationError(exc.error.field, exc.error.message) from exc
        except engine.RunFinished as exc:
            raise RunStateError(str(exc)) from exc

    def get_metadata(self, run_id: str, *, env: str | None = None) -> dict[str, Any]:
        """A run's metadata as stored now ({} when it has none). Raises NotFoundError."""
        if (client := _remote(env)) is not None:
            return client.runs.get_metadata(run_id)
        return _run_of(run_id, env).metadata or {}


# The replay overrides that replace a field replay_run would otherwise copy from the original.
REPLAYED_FIELDS = {
    "metadata",
    "tags",
    "queue",
    "concurrency_key",
    "machine",
    "region",
    "max_attempts",
    "max_duration",
    "priority",
}


class Queues:
    """Pause, resume and override the concurrency limit of one environment's queues.

    A queue is named as the official SDK names it: its id (`queue_<n>`, the default `type`),
    a task id (`type="task"`, the task's own queue) or a queue's name (`type="custom"`). Each
    verb returns the queue as `queues.retrieve` gives it (the reference's QueueItem, a dict).
    """

    def list(self, *, env: str | None = None) -> list[dict[str, Any]]:
        """Every queue of the environment, by name."""
        if (client := _remote(env)) is not None:
            return client.queues.list()
        environment = _environment(env or "dev")
        found = list(Queue.objects.filter(environment=environment).order_by("name", "id"))
        return queue_items.items(found, timezone.now())

    def retrieve(self, queue: str, *, type: str = "id", env: str | None = None) -> dict[str, Any]:
        """One queue. Raises NotFoundError, ValidationError (an unknown type)."""
        if (client := _remote(env)) is not None:
            return client.queues.retrieve(queue, type=type)
        return _queue_item(_queue_of(queue, type, env))

    def pause(self, queue: str, *, type: str = "id", env: str | None = None) -> dict[str, Any]:
        """Stop the engine starting the queue's runs; they wait as Queued. Raises NotFoundError."""
        if (client := _remote(env)) is not None:
            return client.queues.pause(queue, type=type)
        found = _queue_of(queue, type, env)
        return _queue_item(engine.pause_queue(queue_id=found.pk, actor=ACTOR, reason="paused through the Python SDK"))

    def resume(self, queue: str, *, type: str = "id", env: str | None = None) -> dict[str, Any]:
        """Let the engine start the queue's runs again. Raises NotFoundError."""
        if (client := _remote(env)) is not None:
            return client.queues.resume(queue, type=type)
        found = _queue_of(queue, type, env)
        return _queue_item(engine.resume_queue(queue_id=found.pk, actor=ACTOR, reason="resumed through the Python SDK"))

    def override_concurrency_limit(
        self,
        queue: str,
        limit: int,
        *,
        type: str = "id",
        env: str | None = None,
    ) -> dict[str, Any]:
        """Set the queue's concurrency limit until reset. Raises NotFoundError, ValidationError."""
        if (client := _remote(env)) is not None:
            return client.queues.override_concurrency_limit(queue, limit, type=type)
        found = _queue_of(queue, type, env)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= MAX_QUEUE_LIMIT:
            raise ValidationError("concurrencyLimit", f"concurrencyLimit must be between 0 and {MAX_QUEUE_LIMIT}")
        reason = "overridden through the Python SDK"
        return _queue_item(engine.override_queue_limit(queue_id=found.pk, limit=limit, actor=ACTOR, reason=reason))

    def reset_concurrency_limit(self, queue: str, *, type: str = "id", env: str | None = None) -> dict[str, Any]:
        """Back to the limit the task declares. Raises NotFoundError."""
        if (client := _remote(env)) is not None:
            return client.queues.reset_concurrency_limit(queue, type=type)
        found = _queue_of(queue, type, env)
        reason = "reset through the Python SDK"
        return _queue_item(engine.reset_queue_limit(queue_id=found.pk, actor=ACTOR, reason=reason))


class EnvironmentPause:
    """Pause and resume a whole environment: the engine starts none of its runs while paused."""

    def retrieve_pause(self, *, env: str | None = None) -> dict[str, Any]:
        """{"environment", "paused"} and, while paused, who, since when, why, until when and
        how many runs it holds (as tasks.retrieve_pause)."""
        if (client := _remote(env)) is not None:
            return client.environment.retrieve_pause()
        return holds.environment_pause_item(_environment(env or "dev"), timezone.now())

    def pause(self, *, reason: str = "", resume_at: datetime | None = None, env: str | None = None) -> dict[str, Any]:
        """Stop the engine starting any run of the environment (running ones finish), until
        resume or resume_at. Raises ValidationError (reason too long, resume_at not in the future)."""
        fields = pause_fields(reason, resume_at)
        if (client := _remote(env)) is not None:
            return client.environment.pause(reason=reason, resume_at=resume_at)
        environment, at = _environment(env or "dev"), _at(fields)
        paused = engine.pause_environment(environment_id=environment.pk, actor=ACTOR, reason=reason, resume_at=at)
        return holds.environment_pause_item(paused, timezone.now())

    def resume(self, *, reason: str = "", env: str | None = None) -> dict[str, Any]:
        """Let the engine start the environment's runs again."""
        pause_fields(reason, None)
        if (client := _remote(env)) is not None:
            return client.environment.resume(reason=reason)
        environment = _environment(env or "dev")
        resumed = engine.resume_environment(environment_id=environment.pk, actor=ACTOR, reason=reason)
        return holds.environment_pause_item(resumed, timezone.now())


T = TypeVar("T")


def _pause_in_process(call: Callable[[], T]) -> T:
    try:
        return call()
    except engine.TaskNotFound as exc:
        raise NotFoundError(str(exc)) from exc


def _at(fields: dict[str, Any]) -> datetime | None:
    """The resume time pause_fields checked, in the future as the REST API requires."""
    if "resumeAt" not in fields:
        return None
    at = datetime.fromisoformat(fields["resumeAt"])
    if at <= timezone.now():
        raise ValidationError("resumeAt", "resumeAt must be in the future")
    return at


class Workers:
    """The Celery workers, which serve every environment; drain one (it finishes its runs and
    starts no other) and undrain it. Each verb returns the worker as `workers.retrieve` gives it
    (a WorkerItem dict). Remote, draining takes a production environment's key."""

    def list(self) -> list[dict[str, Any]]:
        """Every worker with a row, by hostname."""
        if (client := _remote(None)) is not None:
            return client.workers.list()
        now = timezone.now()
        return [worker_items.item(w, now) for w in Worker.objects.order_by("hostname")]

    def retrieve(self, hostname: str) -> dict[str, Any]:
        """One worker. Raises NotFoundError."""
        if (client := _remote(None)) is not None:
            return client.workers.retrieve(hostname)
        found = Worker.objects.filter(hostname=hostname).first()
        if found is None:
            raise NotFoundError(f"No worker {hostname!r}")
        return worker_items.item(found, timezone.now())

    def drain(self, hostname: str, *, reason: str = "") -> dict[str, Any]:
        """The worker finishes its runs and starts no other, until undrained. Raises NotFoundError."""
        if (client := _remote(None)) is not None:
            return client.workers.drain(hostname, reason=reason)
        return _worker_verb(engine.drain_worker, hostname, reason)

    def undrain(self, hostname: str, *, reason: str = "") -> dict[str, Any]:
        """The worker takes runs again. Raises NotFoundError."""
        if (client := _remote(None)) is not None:
            return client.workers.undrain(hostname, reason=reason)
        return _worker_verb(engine.undrain_worker, hostname, reason)


def _worker_verb(verb: Any, hostname: str, reason: str) -> dict[str, Any]:
    # The REST API's rules and messages (api.workers).
    if not isinstance(reason, str):
        raise ValidationError("reason", "reason must be a string")
    if len(reason) > MAX_WORKER_REASON:
        raise ValidationError("reason", f"reason must be at most {MAX_WORKER_REASON} characters")
    try:
        return worker_items.item(verb(hostname=hostname, actor=ACTOR, reason=reason), timezone.now())
    except engine.WorkerNotFound as exc:
        raise NotFoundError(str(exc)) from exc


def _queue_of(queue: str, kind: str, env: str | None) -> Queue:
    if kind not in QUEUE_KINDS:
        raise ValidationError("type", 'type must be "id", "task" or "custom"')
    try:
        return engine.find_queue(environment_id=_environment(env or "dev").id, ref=queue, kind=kind)
    except engine.QueueNotFound as exc:
        raise NotFoundError(str(exc)) from exc


def _queue_item(queue: Queue) -> dict[str, Any]:
    return queue_items.items([queue], timezone.now())[0]


class Schedules:
    """Cron schedules of one environment, as the official SDK's `schedules` manages them.

    create and update take the schedule's fields as keywords (the wire's names in snake_case);
    creating with a deduplication_key that exists updates that schedule. update replaces task,
    cron, timezone and external_id (left out: UTC and none), and keeps the payload, options,
    overlap and missed it is not given. A schedule a task's code declares is changed there:
    update and delete refuse it (ValidationError).
    """

    def create(self, task: str, cron: str, *, env: str | None = None, **fields: Any) -> ScheduleInfo:
        """A new schedule, or the one of the same deduplication_key updated. Raises ValidationError."""
        body = schedule_body(task, cron, **fields)
        if (client := _remote(env)) is not None:
            return client.schedules.create(body)
        environment = _environment(env or "dev")
        try:
            spec = parse_schedule(body)
            made, _ = engine.create_schedule(environment=environment, spec=spec, actor=ACTOR)
        except ScheduleSpecError as exc:
            raise ValidationError(exc.field, exc.message) from exc
        except engine.DeclarativeSchedule as exc:
            raise ValidationError("deduplicationKey", str(exc)) from exc
        return _schedule_info(made, environment)

    def retrieve(self, schedule_id: str, *, env: str | None = None) -> ScheduleInfo:
        """One schedule. Raises NotFoundError."""
        if (client := _remote(env)) is not None:
            return client.schedules.retrieve(schedule_id)
        environment = _environment(env or "dev")
        return _schedule_info(_schedule_of(schedule_id, environment), environment)

    def update(self, schedule_id: str, task: str, cron: str, *, env: str | None = None, **fields: Any) -> ScheduleInfo:
        """Replace the schedule's task, cron and the rest. Raises NotFoundError, ValidationError."""
        body = schedule_body(task, cron, **fields)
        if (client := _remote(env)) is not None:
            return client.schedules.update(schedule_id, body)
        environment = _environment(env or "dev")
        found = _schedule_of(schedule_id, environment)
        try:
            spec = schedule_items.update_spec(found, body)
            changed = engine.update_schedule(
                environment_id=environment.pk, schedule_id=found.id, spec=spec, actor=ACTOR
            )
        except ScheduleSpecError as exc:
            raise ValidationError(exc.field, exc.message) from exc
        except engine.DeclarativeSchedule as exc:
            raise ValidationError("", str(exc)) from exc
        except engine.ScheduleNotFound as exc:  # deleted meanwhile
            raise NotFoundError(str(exc)) from exc
        return _schedule_info(changed, environment)

    def list(
        self, *, page: int = 1, per_page: int = schedule_items.DEFAULT_PER_PAGE, env: str | None = None
    ) -> SchedulePage:
        """One page of the environment's schedules, newest first. Raises ValidationError."""
        if (client := _remote(env)) is not None:
            return client.schedules.list(page=page, per_page=per_page)
        bounds = (("page", page, schedule_items.MAX_PAGE), ("perPage", per_page, schedule_items.MAX_PER_PAGE))
        for name, value, most in bounds:
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most:
                raise ValidationError(name, f"{name} must be a positive integer of at most {most}")
        return schedule_page(schedule_items.page(_environment(env or "dev"), page, per_page, timezone.now()))

    def activate(self, schedule_id: str, *, env: str | None = None) -> ScheduleInfo:
        """Fire the schedule again from its next tick (none missed while inactive). Raises NotFoundError."""
        if (client := _remote(env)) is not None:
            return client.schedules.activate(schedule_id)
        return _set_schedule_active(schedule_id, True, env)

    def deactivate(self, schedule_id: str, *, env: str | None = None) -> ScheduleInfo:
        """Fire no tick until activated. Raises NotFoundError."""
        if (client := _remote(env)) is not None:
            return client.schedules.deactivate(schedule_id)
        return _set_schedule_active(schedule_id, False, env)

    def delete(self, schedule_id: str, *, env: str | None = None) -> str:
        """Delete the schedule (its runs stay); its id. Raises NotFoundError, ValidationError."""
        if (client := _remote(env)) is not None:
            return client.schedules.delete(schedule_id)
        environment = _environment(env or "dev")
        try:
            engine.delete_schedule(environment_id=environment.pk, schedule_id=schedule_id, actor=ACTOR)
        except engine.ScheduleNotFound as exc:
            raise NotFoundError(str(exc)) from exc
        except engine.DeclarativeSchedule as exc:
            raise ValidationError("", str(exc)) from exc
        return schedule_id

    def timezones(self, *, exclude_utc: bool = False) -> builtins.list[str]:
        """Every IANA time zone a schedule takes, "UTC" first unless excluded."""
        if (client := _remote(None)) is not None:
            return client.schedules.timezones(exclude_utc=exclude_utc)
        return schedule_items.timezones(exclude_utc=exclude_utc)


def _schedule_of(schedule_id: str, environment: Environment) -> Schedule:
    try:
        return engine.find_schedule(environment_id=environment.pk, schedule_id=schedule_id)
    except engine.ScheduleNotFound as exc:
        raise NotFoundError(str(exc)) from exc


def _set_schedule_active(schedule_id: str, active: bool, env: str | None) -> ScheduleInfo:
    environment = _environment(env or "dev")
    reason = f"{'activated' if active else 'deactivated'} through the Python SDK"
    try:
        changed = engine.set_schedule_active(
            environment_id=environment.pk, schedule_id=schedule_id, active=active, actor=ACTOR, reason=reason
        )
    except engine.ScheduleNotFound as exc:
        raise NotFoundError(str(exc)) from exc
    return _schedule_info(changed, environment)


def _schedule_info(schedule: Schedule, environment: Environment) -> ScheduleInfo:
    return schedule_info(schedule_items.item(schedule, environment, timezone.now()))


def _run_of(run_id: str, env: str | None) -> Run:
    run = Run.objects.filter(pk=run_id, environment=_environment(env or "dev")).first()
    if run is None:
        raise NotFoundError(f"Run {run_id} not found")
    return run


def _page(environment: Environment, params: dict[str, str]) -> RunPage:
    try:
        page = listing.list_page(environment, params, timezone.now())
    except OptionError as exc:
        raise ValidationError(exc.field, exc.message) from exc
    return RunPage(runs=[_summary(run) for run in page.runs], next=page.next, previous=page.previous)


tasks = Tasks()
runs = Runs()
queues = Queues()
environment = EnvironmentPause()
schedules = Schedules()
workers = Workers()
batch = BatchOfTasks()


def _trigger_one(
    task_id: str,
    payload: Any,
    options: dict[str, Any] | None,
    *,
    env: str | None,
    extra: dict[str, Any] | None = None,
) -> engine.TriggerResult:
    ctx = context.current()
    try:
        parsed, data, content_type, task_id = _parse(task_id, payload, options)
    except ValidationError:
        _environment_for(env, ctx)  # a bad env is reported first, as before the task id was read
        raise
    environment, definition = _environment_and_definition(env, ctx, task_id)
    if ctx is not None:
        parsed.parent_run_id = ctx.run_id
    for key, value in (extra or {}).items():
        setattr(parsed, key, value)
    return engine.trigger(
        environment=environment,
        task_id=task_id,
        payload=data,
        payload_type=content_type,
        options=parsed,
        actor=_actor(ctx),
        source="sdk",
        definitions={task_id: definition},
    )


def _parse(task_id: str, payload: Any, options: dict[str, Any] | None) -> tuple[engine.TriggerOptions, str, str, str]:
    try:
        parsed = parse_trigger_options(hash_idempotency_key(options))
        task_id = parse_task_id(task_id)
    except OptionError as exc:
        raise ValidationError(exc.field, exc.message) from exc
    data, content_type = _encode(payload)
    return parsed, data, content_type, task_id


def _batch(
    items: BatchItems, *, env: str | None, options: dict[str, Any] | None = None, wait: bool = False
) -> BatchHandle:
    """Parse the items as they come and hand them to the engine's one batch path
    (engine.trigger_batch_items: every run at once, or nothing at all).

    Rate limited like POST /api/v3/batches: a batch whose size is known up front (a
    sequence, or an iterator that ends within PEEK items) is charged before it is created;
    one of unknown size is charged once its items are all read, still before any run
    exists. The children of a wait (wait=True) resume their parent and are not charged.
    """
    ctx = context.current()
    environment = _environment_for(env, ctx)
    key, key_user = _batch_key(options)
    if key is not None:
        existing = Batch.objects.filter(environment=environment, idempotency_key=key).first()
        if existing is not None:  # creates nothing, so costs nothing and reads no item
            return _handle(existing, cached=True)
    source, count = _measure(items)
    if count is not None:
        _check_size(count)
    try:
        batch, cached = engine.trigger_batch_items(
            environment=environment,
            items=(_staged(index, item) for index, item in enumerate(source)),
            run_count=count,
            actor=_actor(ctx),
            source="sdk",
            idempotency_key=key,
            idempotency_key_user=key_user,
            parent_run_id=ctx.run_id if ctx else None,
            resume_parent=wait,
            charge=not wait,
        )
    except engine.BatchRateLimited as exc:
        raise _rate_limit_error(exc) from exc
    return _handle(batch, cached=cached)


def _measure(items: BatchItems) -> tuple[Iterator[dict[str, Any]], int | None]:
    """The items as one iterator, and their number when it is known without reading them all."""
    if isinstance(items, Sequence):
        return iter(items), len(items)
    source = iterate(items)
    head = list(islice(source, PEEK + 1))
    if len(head) <= PEEK:
        return iter(head), len(head)
    return chain(head, source), None


def _staged(index: int, item: Any) -> engine.StagedItem:
    if index >= engine.MAX_BATCH_ITEMS:
        raise ValidationError("items", f"a batch takes at most {engine.MAX_BATCH_ITEMS} items; more were given")
    if not isinstance(item, dict):
        raise ValidationError(f"items[{index}]", f"item {index}: must be a dict, not {type(item).__name__}")
    try:
        parsed, data, content_type, task_id = _parse(item.get("id", ""), item.get("payload"), item.get("options"))
    except ValidationError as exc:
        raise ValidationError(f"items[{index}].{exc.field}", f"item {index}: {exc.message}") from exc
    return engine.StagedItem(index, task_id, data, content_type, parsed.raw)


def _check_size(count: int) -> None:
    if not 1 <= count <= engine.MAX_BATCH_ITEMS:
        raise ValidationError("items", f"a batch takes 1 to {engine.MAX_BATCH_ITEMS} items, not {count}")


def _rate_limit_error(exc: engine.BatchRateLimited) -> BatchTriggerError:
    """The engine's refusal as the official SDK's BatchTriggerError."""
    count, decision = exc.count, exc.decision
    if decision is None:  # more than the bucket holds
        return BatchTriggerError(str(exc), phase=exc.phase, item_count=count, cause=exc.__cause__ or exc)
    wait = decision.retry_after_seconds
    return BatchTriggerError(
        f"Failed to create batch with {count} items: Rate limit exceeded - retry after {wait}s",
        phase=exc.phase,
        item_count=count,
        is_rate_limited=True,
        retry_after_ms=decision.retry_after_ms,
        cause=RateLimitError(
            f"Batch rate limit exceeded: {decision.remaining} of {decision.limit} items available",
            retry_after_ms=decision.retry_after_ms,
            limit=decision.limit,
            remaining=decision.remaining,
            decision=decision,
        ),
    )


def _batch_key(options: dict[str, Any] | None) -> tuple[str | None, str]:
    """The batch's idempotency key, hashed like an item's, and the caller's own key."""
    hashed = hash_idempotency_key(options) or {}
    key = hashed.get("idempotencyKey", hashed.get("idempotency_key"))
    if key is None:
        return None, ""
    if not isinstance(key, str) or not 1 <= len(key) <= 2048:
        raise ValidationError("idempotencyKey", "the batch idempotencyKey must be a string of 1 to 2048 characters")
    user = hashed.get("idempotencyKeyOptions", {}).get("key", "")
    return key, user if isinstance(user, str) else ""


def _handle(batch: Batch, *, cached: bool) -> BatchHandle:
    run_ids = engine.batch_run_ids(batch_id=batch.id)
    return BatchHandle(batch_id=batch.id, run_count=batch.run_count, run_ids=run_ids, is_cached=cached)


def _for_task(task_id: str, item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ValidationError("items", f"each item must be a dict like {{'payload': ...}}, not {type(item).__name__}")
    return {**item, "id": task_id}


def _wait(verb: str, items: list[dict[str, Any]], *, batch: bool) -> list[TaskRunResult]:
    """Trigger children and suspend; when the code runs again, return their results."""
    ctx = context.require(verb)
    number = ctx.next_wait()
    waitpoint = Waitpoint.objects.filter(run_id=ctx.run_id, sequence=number).first()
    if waitpoint is None:
        with transaction.atomic():
            child_ids, batch_id = _trigger_children(ctx, items, batch=batch)
            engine.add_waitpoint(run_id=ctx.run_id, sequence=number, child_ids=child_ids, batch_id=batch_id)
        raise context.Suspend()
    if waitpoint.resolved_at is None:
        raise context.Suspend()
    children = Run.objects.in_bulk(waitpoint.children)
    return [_result(children[child_id]) for child_id in waitpoint.children]


def _trigger_children(
    ctx: context.TaskContext, items: list[dict[str, Any]], *, batch: bool
) -> tuple[list[str], str | None]:
    """Trigger the children of a wait: one run, or one batch. Returns (run ids, batch id)."""
    if not batch:
        item = items[0]
        extra = {"resume_parent": True, "trigger_function": "triggerAndWait"}
        result = _trigger_one(item.get("id", ""), item.get("payload"), item.get("options"), env=None, extra=extra)
        return [result.run.id], None
    created = _batch(items, env=None, wait=True)
    return list(created.run_ids), created.batch_id


def _result(run: Run) -> TaskRunResult:
    if run.status == RunStatus.COMPLETED:
        output = packets.load(run.output, run.output_type, environment_id=run.environment_id)
        return TaskRunResult(ok=True, id=run.id, task_identifier=run.task_identifier, output=output)
    error = run.error or {"message": f"Run ended {run.status}"}
    return TaskRunResult(ok=False, id=run.id, task_identifier=run.task_identifier, error=error)


def _by_task(item: dict[str, Any]) -> dict[str, Any]:
    fn = item.get("task")
    task_id = getattr(fn, "task_id", None)
    if task_id is None:
        raise ValidationError("task", "each item needs a `task`: a function decorated with @task")
    return {**item, "id": task_id}


def _environment_for(env: str | None, ctx: context.TaskContext | None) -> Environment:
    if env is None and ctx is not None:
        return Environment.objects.get(pk=ctx.environment_id)
    return _environment(env or "dev")


def _environment_and_definition(
    env: str | None, ctx: context.TaskContext | None, task_id: str
) -> tuple[Environment, TaskDefinition | None]:
    """_environment_for's environment and task_id's definition, in one query."""
    if env is None and ctx is not None:
        found = environment_with_definition(task_id, pk=ctx.environment_id)
        if found is None:
            raise Environment.DoesNotExist(f"no environment {ctx.environment_id}")  # as objects.get
        return found
    slug = env or "dev"
    found = environment_with_definition(task_id, slug=slug)
    if found is None:
        raise ValidationError("env", f"env {slug!r} is not an environment")
    return found


def _actor(ctx: context.TaskContext | None) -> str:
    return f"run:{ctx.run_id}" if ctx is not None else ACTOR


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


def _flags(run: Run) -> dict[str, bool]:
    flags = api_flags(run.status)
    names = ("isQueued", "isExecuting", "isWaiting", "isCompleted", "isSuccess", "isFailed", "isCancelled")
    return {"is_" + name[2:].lower(): flags[name] for name in names}


def _info(run: Run) -> RunInfo:
    completed = run.status == RunStatus.COMPLETED
    return RunInfo(
        id=run.id,
        status=run.status,
        task_identifier=run.task_identifier,
        payload=packets.load(run.payload, run.payload_type, environment_id=run.environment_id),
        output=packets.load(run.output, run.output_type, environment_id=run.environment_id) if completed else None,
        error=run_error(run.error) if not completed else None,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        tags=sorted(run.tags),
        metadata=run.metadata,
        attempt_count=run.attempt_count,
        is_test=run.is_test,
        updated_at=run.updated_at,
        delayed_until=run.delay_until,
        idempotency_key=run.idempotency_key_user or run.idempotency_key or None,
        batch_id=run.batch_id,
        **_flags(run),
    )


def _summary(run: Run) -> RunSummary:
    return RunSummary(
        id=run.id,
        status=run.status,
        task_identifier=run.task_identifier,
        created_at=run.created_at,
        updated_at=run.updated_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        delayed_until=run.delay_until,
        tags=sorted(run.tags),
        metadata=run.metadata,
        idempotency_key=run.idempotency_key_user or run.idempotency_key or None,
        batch_id=run.batch_id,
        is_test=run.is_test,
        **_flags(run),
    )
