"""The Python SDK: the verbs of the official SDK in Python naming.

    from runs.sdk import tasks, runs

    handle = tasks.trigger("send-email", {"to": "ada@example.com"}, {"queue": "emails", "ttl": "1h"})
    run = runs.retrieve(handle.id)

This is the in-process mode: calls go straight to runs.engine in the caller's database
transaction context. Options take the wire protocol's camelCase keys or snake_case.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import chain, islice
from typing import Any, TypeVar, cast

from django.db import transaction
from django.utils import timezone

from runs import context, engine, packets, ratelimit
from runs.models import Batch, Environment, Run, Waitpoint
from runs.options import OptionError, parse_delay, parse_task_id, parse_trigger_options
from runs.states import RunStatus, api_flags

ACTOR = "sdk"
# Items read ahead from an iterator: a batch that ends within them has a known size.
PEEK = 100
# Items per bulk insert while staging. Fewer than the engine's chunk: with client-side
# parameter binding an insert holds several copies of its rows' payloads at once.
STAGE_CHUNK = 50

T = TypeVar("T")
# Items of a batch: a list, any iterable (a generator) or an async iterable.
BatchItems = Iterable[dict[str, Any]] | AsyncIterable[dict[str, Any]]


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


class RateLimitError(RunyardError):
    """The environment's batch rate limit refused a charge; `decision` says what is left and when."""

    def __init__(self, decision: ratelimit.Decision) -> None:
        super().__init__(f"Batch rate limit exceeded: {decision.remaining} of {decision.limit} items available")
        self.decision = decision


class BatchTriggerError(RunyardError):
    """A batch that was not triggered, described like the official SDK's BatchTriggerError.

    phase "create": refused before anything was created (the size was known up front).
    phase "stream": the items of a source of unknown size were read first; the batch they
    were staged into was rolled back (batch_id is None: it no longer exists).
    """

    def __init__(
        self,
        message: str,
        *,
        phase: str,
        item_count: int,
        batch_id: str | None = None,
        is_rate_limited: bool = False,
        retry_after_ms: int | None = None,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        self.phase, self.item_count, self.batch_id = phase, item_count, batch_id
        self.is_rate_limited, self.retry_after_ms, self.cause = is_rate_limited, retry_after_ms, cause


class SubtaskUnwrapError(RunyardError):
    """unwrap() of a child run that did not complete."""

    def __init__(self, run_id: str, task_id: str, cause: Any) -> None:
        message = cause.get("message") if isinstance(cause, dict) else str(cause)
        super().__init__(f"Child run {run_id} of task {task_id} did not complete: {message}")
        self.run_id, self.task_id, self.cause = run_id, task_id, cause


@dataclass(frozen=True)
class TriggerHandle:
    id: str
    is_cached: bool


@dataclass(frozen=True)
class BatchHandle:
    batch_id: str
    run_count: int
    run_ids: list[str]  # in item order
    is_cached: bool = False  # an earlier batch with the same idempotency key


@dataclass(frozen=True)
class TaskRunResult:
    """What a wait returns for one child run."""

    ok: bool
    id: str
    task_identifier: str
    output: Any = None
    error: dict[str, Any] | None = None

    def unwrap(self) -> Any:
        """The output, or SubtaskUnwrapError if the child did not complete."""
        if not self.ok:
            raise SubtaskUnwrapError(self.id, self.task_identifier, self.error)
        return self.output


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
    """Trigger runs: from anywhere with trigger/batch_trigger, and wait on them inside a task."""

    def trigger(
        self, task_id: str, payload: Any = None, options: dict[str, Any] | None = None, *, env: str | None = None
    ) -> TriggerHandle:
        """Trigger a run of task_id. Raises ValidationError for a bad task id, payload or option.

        Inside a task the new run is its child, in the task's environment.
        """
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
        if isinstance(items, Sequence):
            return _batch([_for_task(task_id, item) for item in items], env=env, options=options)
        return _batch((_for_task(task_id, item) for item in _iterate(items)), env=env, options=options)

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
        return _batch(items, env=env, options=options)

    def trigger_and_wait(self, items: Iterable[dict[str, Any]]) -> list[TaskRunResult]:
        return _wait("batch.trigger_and_wait", list(items), batch=True)

    def trigger_by_task(self, items: BatchItems, *, env: str | None = None) -> BatchHandle:
        """Items name the task by its function: {"task": fn, "payload": ...}."""
        if isinstance(items, Sequence):
            return _batch([_by_task(item) for item in items], env=env)
        return _batch((_by_task(item) for item in _iterate(items)), env=env)

    def trigger_by_task_and_wait(self, items: Iterable[dict[str, Any]]) -> list[TaskRunResult]:
        return _wait("batch.trigger_by_task_and_wait", [_by_task(item) for item in items], batch=True)


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
    environment = _environment_for(env, ctx)
    parsed, data, content_type, task_id = _parse(task_id, payload, options)
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
    )


def _parse(task_id: str, payload: Any, options: dict[str, Any] | None) -> tuple[engine.TriggerOptions, str, str, str]:
    try:
        parsed = parse_trigger_options(hash_idempotency_key(options))
        task_id = parse_task_id(task_id)
    except OptionError as exc:
        raise ValidationError(exc.field, exc.message) from exc
    data, content_type = _encode(payload)
    return parsed, data, content_type, task_id


def _batch(items: BatchItems, *, env: str | None, options: dict[str, Any] | None = None) -> BatchHandle:
    """Stage the items as they come, then create every run at once (all or nothing).

    Rate limited like POST /api/v3/batches: a batch whose size is known up front (a
    sequence, or an iterator that ends within PEEK items) is charged before it is created;
    one of unknown size is charged once its items are all read, still before any run
    exists. Creating, staging and sealing are one transaction: on any error nothing remains.
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
        _charge(environment, count, phase="create")
    with transaction.atomic():
        batch, cached = engine.create_batch(
            environment=environment,
            run_count=count or engine.MAX_BATCH_ITEMS,  # unknown size: fixed after staging
            idempotency_key=key,
            idempotency_key_user=key_user,
            parent_run_id=ctx.run_id if ctx else None,
        )
        if not cached:
            _stage(batch, source, count, environment)
            batch = engine.seal_batch(batch_id=batch.id, actor=_actor(ctx), source="sdk")
    return _handle(batch, cached=cached)


def _measure(items: BatchItems) -> tuple[Iterator[dict[str, Any]], int | None]:
    """The items as one iterator, and their number when it is known without reading them all."""
    if isinstance(items, Sequence):
        return iter(items), len(items)
    source = _iterate(items)
    head = list(islice(source, PEEK + 1))
    if len(head) <= PEEK:
        return iter(head), len(head)
    return chain(head, source), None


def _stage(batch: Batch, source: Iterator[dict[str, Any]], count: int | None, environment: Environment) -> None:
    """Stage every item (in chunks, as they come); fix the count of a batch of unknown size."""
    task_ids: set[str] = set()
    staged = (_staged(index, item, task_ids) for index, item in enumerate(source))
    staged_count = 0
    while chunk := list(islice(staged, STAGE_CHUNK)):
        engine.add_batch_items(batch=batch, items=chunk)
        staged_count += len(chunk)
    if count is None:
        count = staged_count
        _check_size(count)
        _charge(environment, count, phase="stream")
    engine.set_batch_run_count(batch_id=batch.id, run_count=count, task_identifiers=sorted(task_ids))


def _staged(index: int, item: Any, task_ids: set[str]) -> engine.StagedItem:
    if index >= engine.MAX_BATCH_ITEMS:
        raise ValidationError("items", f"a batch takes at most {engine.MAX_BATCH_ITEMS} items; more were given")
    if not isinstance(item, dict):
        raise ValidationError(f"items[{index}]", f"item {index}: must be a dict, not {type(item).__name__}")
    try:
        parsed, data, content_type, task_id = _parse(item.get("id", ""), item.get("payload"), item.get("options"))
    except ValidationError as exc:
        raise ValidationError(f"items[{index}].{exc.field}", f"item {index}: {exc.message}") from exc
    task_ids.add(task_id)
    return engine.StagedItem(index, task_id, data, content_type, parsed.raw)


def _check_size(count: int) -> None:
    if not 1 <= count <= engine.MAX_BATCH_ITEMS:
        raise ValidationError("items", f"a batch takes 1 to {engine.MAX_BATCH_ITEMS} items, not {count}")


def _charge(environment: Environment, count: int, *, phase: str) -> None:
    """Take `count` tokens from the environment's batch rate limit. Raises BatchTriggerError."""
    try:
        decision = ratelimit.charge_batch_items(environment_id=environment.pk, count=count)
    except ratelimit.ChargeTooLarge as exc:
        raise BatchTriggerError(str(exc), phase=phase, item_count=count, cause=exc) from exc
    if not decision.allowed:
        wait = decision.retry_after_seconds
        raise BatchTriggerError(
            f"Failed to create batch with {count} items: Rate limit exceeded - retry after {wait}s",
            phase=phase,
            item_count=count,
            is_rate_limited=True,
            retry_after_ms=decision.retry_after_ms,
            cause=RateLimitError(decision),
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


def _iterate(items: Iterable[T] | AsyncIterable[T]) -> Iterator[T]:
    if isinstance(items, AsyncIterable):
        return _from_async(items)
    return iter(items)


def _from_async(items: AsyncIterable[T]) -> Iterator[T]:
    """An async iterable read one item at a time, on an event loop in a helper thread.

    The SDK is synchronous (the ORM is); one loop for the whole iteration keeps a source
    that holds loop-bound resources (a connection, a cursor) working from first to last.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="runyard-batch-items", daemon=True)
    thread.start()
    iterator = aiter(items)
    try:
        while True:
            found, item = asyncio.run_coroutine_threadsafe(_anext(iterator), loop).result()
            if not found:
                return
            yield cast(T, item)
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:  # runs the source's own cleanup (finally blocks) on its loop
            asyncio.run_coroutine_threadsafe(aclose(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


async def _anext(iterator: AsyncIterator[T]) -> tuple[bool, T | None]:
    try:
        return True, await anext(iterator)
    except StopAsyncIteration:
        return False, None


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
    entries = []
    for index, item in enumerate(items):
        try:
            parsed, data, content_type, task_id = _parse(item.get("id", ""), item.get("payload"), item.get("options"))
        except ValidationError as exc:
            raise ValidationError(f"items[{index}].{exc.field}", f"item {index}: {exc.message}") from exc
        entries.append(engine.BatchEntry(task_id=task_id, payload=data, payload_type=content_type, options=parsed))
    if not 1 <= len(entries) <= engine.MAX_BATCH_ITEMS:
        raise ValidationError("items", f"a batch takes 1 to {engine.MAX_BATCH_ITEMS} items, not {len(entries)}")
    created = engine.trigger_batch(
        environment=Environment.objects.get(pk=ctx.environment_id),
        entries=entries,
        actor=_actor(ctx),
        source="sdk",
        parent_run_id=ctx.run_id,
        resume_parent=True,
    )
    return list(created.run_ids), created.id


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


def _info(run: Run) -> RunInfo:
    flags = api_flags(run.status)
    completed = run.status == RunStatus.COMPLETED
    return RunInfo(
        id=run.id,
        status=run.status,
        task_identifier=run.task_identifier,
        payload=packets.load(run.payload, run.payload_type, environment_id=run.environment_id),
        output=packets.load(run.output, run.output_type, environment_id=run.environment_id) if completed else None,
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
