"""Creating runs."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from functools import cache, partial
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import AutoField, Field, JSONField, Model
from django.utils import timezone

from runs import events, registry
from runs.engine.core import ENGINE, Actor, ensure_queue, mark_queued, prepared_row, record
from runs.models import Environment, Queue, RequestIdempotency, Run, RunEvent, TaskDefinition
from runs.options import TriggerOptions
from runs.states import KEY_RELEASING_STATUSES, RunStatus

DEV_DEFAULT_TTL = 600  # seconds; the reference gives dev runs a 10 minute TTL by default
MAX_TTL = 14 * 86400  # any longer TTL is clamped to 14 days
IDEMPOTENCY_KEY_TTL = 30 * 86400  # idempotency keys are remembered 30 days unless told otherwise


@dataclass(frozen=True)
class TriggerRequest:
    """One trigger as the engine resolves it."""

    environment: Environment
    task_id: str
    payload: str
    payload_type: str
    options: TriggerOptions
    actor: Actor
    source: str
    now: datetime
    # Definitions the caller already read, by task id (None: no worker serves it); else read here.
    definitions: Mapping[str, TaskDefinition | None] = field(default_factory=dict)


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
    definitions: Mapping[str, TaskDefinition | None] | None = None,
) -> TriggerResult:
    """Create a run of task_id; returns it, or the run a repeated request_key already made.

    definitions: task definitions the caller already read (the API reads the trigger's with
    the API key), by task id, None for a task no worker serves; others are read here."""
    now = now or timezone.now()
    definitions = definitions or {}
    options = options or TriggerOptions()
    plain = not request_key and not options.idempotency_key and options.debounce is None
    if plain and options.queue_concurrency_limit is None:
        # Nothing to look up, serialise against or update first: the run, its first timeline
        # event, its queue and the engine's wake-up are one statement, atomic by itself.
        request = TriggerRequest(environment, task_id, payload, payload_type, options, actor, source, now, definitions)
        return TriggerResult(run=_insert_run(request))
    try:
        with transaction.atomic():
            if request_key:
                earlier = _run_for_request_key(environment, task_id, request_key)
                if earlier is not None:
                    return TriggerResult(run=earlier, is_cached=False)
            request = TriggerRequest(
                environment, task_id, payload, payload_type, options, actor, source, now, definitions
            )
            result = _resolve_or_insert(request)
            if request_key:
                RequestIdempotency.objects.create(
                    environment=environment, task_identifier=task_id, key=request_key, run=result.run, created_at=now
                )
    except IntegrityError:
        # A concurrent retry of the same request won the race: answer with its run.
        earlier = _run_for_request_key(environment, task_id, request_key) if request_key else None
        if earlier is None:
            raise
        return TriggerResult(run=earlier, is_cached=False)
    return result


def _resolve_or_insert(req: TriggerRequest) -> TriggerResult:
    """An idempotency match wins, then a debounced run to fold into, else a new run."""
    if req.options.idempotency_key:
        _lock("idempotency", req.environment.pk, req.task_id, req.options.idempotency_key)
        existing = _idempotent_match(req.environment, req.task_id, req.options.idempotency_key, req.now)
        if existing is not None:
            return TriggerResult(run=existing, is_cached=True)
    if req.options.debounce is not None:
        _lock("debounce", req.environment.pk, req.task_id, req.options.debounce.key)
        folded = _fold_into_debounced(req)
        if folded is not None:
            return TriggerResult(run=folded)
    return TriggerResult(run=_insert_run(req))


def _lock(*parts: object) -> None:
    """Serialise triggers sharing a key until this transaction ends."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [":".join(map(str, parts))])


def _idempotent_match(environment: Environment, task_id: str, key: str, now: datetime) -> Run | None:
    """The run holding this key, unless the key expired or the run failed (then it is released)."""
    run = (
        Run.objects.select_for_update()
        .filter(environment=environment, task_identifier=task_id, idempotency_key=key)
        .first()
    )
    if run is None:
        return None
    expired = run.idempotency_key_expires_at is not None and run.idempotency_key_expires_at <= now
    if not expired and run.status not in KEY_RELEASING_STATUSES:
        return run
    run.idempotency_key, run.idempotency_key_expires_at = None, None
    run.save(update_fields=["idempotency_key", "idempotency_key_expires_at"])
    why = "expired" if expired else f"the run is {run.status}"
    record(run, run.status, run.status, actor=ENGINE, reason=f"idempotency key released: {why}", now=now)
    return None


def _fold_into_debounced(req: TriggerRequest) -> Run | None:
    """Push the delayed run of this debounce key later, or None when a new run is needed."""
    debounce = req.options.debounce
    assert debounce is not None
    run = (
        Run.objects.select_for_update()
        .filter(
            environment=req.environment,
            task_identifier=req.task_id,
            debounce_key=debounce.key,
            status=RunStatus.DELAYED,
        )
        .order_by("-created_at")
        .first()
    )
    if run is None:
        return None
    target = req.options.delay_until or req.now + timedelta(seconds=debounce.delay)
    if debounce.max_delay is not None and target > run.created_at + timedelta(seconds=debounce.max_delay):
        # Execution is guaranteed within maxDelay of the first trigger: this run keeps its
        # time and the key moves to a new run.
        run.debounce_key = ""
        run.save(update_fields=["debounce_key"])
        return None
    run.delay_until = max(run.delay_until or target, target)
    run.updated_at = req.now
    fields = ["delay_until", "updated_at"]
    if debounce.mode == "trailing":
        fields += _take_latest(run, req.payload, req.payload_type, req.options)
    run.save(update_fields=fields)
    reason = f"debounced: now due {run.delay_until.isoformat()}"
    record(run, run.status, run.status, actor=req.actor, reason=reason, now=req.now)
    return run


def _take_latest(run: Run, payload: str, payload_type: str, options: TriggerOptions) -> list[str]:
    """Trailing debounce: the latest trigger's data replaces the run's."""
    run.payload, run.payload_type = payload, payload_type
    run.metadata, run.tags = options.metadata, sorted(options.tags)
    if options.max_attempts is not None:
        run.max_attempts = options.max_attempts
    if options.max_duration is not None:
        run.max_duration = options.max_duration
    if options.machine is not None:
        run.machine = options.machine
    return ["payload", "payload_type", "metadata", "tags", "max_attempts", "max_duration", "machine"]


def _run_for_request_key(environment: Environment, task_id: str, key: str) -> Run | None:
    found = (
        RequestIdempotency.objects.select_related("run")
        .filter(environment=environment, task_identifier=task_id, key=key)
        .first()
    )
    return found.run if found else None


def _insert_run(req: TriggerRequest) -> Run:
    definition = req.definitions[req.task_id] if req.task_id in req.definitions else _definition(req.task_id)
    run = _new_run(req, definition, _parent(req))
    limit = req.options.queue_concurrency_limit
    if limit is not None:
        ensure_queue(req.environment, run.queue, definition, limit)  # the limit given wins
    reason = _set_initial_status(run, req, definition)
    event = RunEvent(run=run, at=req.now, from_status="", to_status=run.status, actor=req.actor, reason=reason, data={})
    _write_new_run(
        run,
        event,
        create_queue=limit is None,
        declared_limit=_declared_limit(run.queue, definition),
        async_commit=req.options.async_commit and not transaction.get_connection().in_atomic_block,
    )
    events.publish_run_changed(environment_id=run.environment_id, run_id=run.id, created=True)
    return run


def _definition(task_id: str) -> TaskDefinition | None:
    """TaskDefinition.objects.filter(task_id=task_id).first(), without the ORM's compiling."""
    with connection.cursor() as cursor:
        cursor.execute(_select_sql(TaskDefinition, "task_id"), [task_id])
        row = cursor.fetchone()
    return None if row is None else definition_from_row(row)


def environment_with_definition(
    task_id: str, *, slug: str | None = None, pk: int | None = None
) -> tuple[Environment, TaskDefinition | None] | None:
    """The environment of `slug` (or `pk`) and task_id's definition (None: no worker serves it),
    in one query; None if no such environment. For trigger()'s `definitions`: an in-process
    trigger then takes two round trips (this and the run's statement), not three, and the
    environment's read is not compiled by the ORM (a third of the SDK trigger's CPU once)."""
    with connection.cursor() as cursor:
        cursor.execute(_environment_sql("slug" if pk is None else "id"), [task_id, pk if slug is None else slug])
        row = cursor.fetchone()
    if row is None:
        return None
    fields = Environment._meta.concrete_fields
    environment = Environment.from_db(connection.alias, [f.attname for f in fields], row[: len(fields)])
    rest = row[len(fields) :]
    return environment, None if rest[_DEFINITION_PK] is None else definition_from_row(rest)


@cache
def _environment_sql(column: str) -> str:
    quote = connection.ops.quote_name
    env, task = Environment._meta, TaskDefinition._meta
    columns = [f"e.{quote(f.column)}" for f in env.concrete_fields]
    columns += [f"d.{quote(f.column)}" for f in task.concrete_fields]
    # A LEFT JOIN: a task no worker serves yet still gets its run (PENDING_VERSION).
    join = f"LEFT JOIN {quote(task.db_table)} d ON d.{quote(task.get_field('task_id').column)} = %s"
    return f"SELECT {', '.join(columns)} FROM {quote(env.db_table)} e {join} WHERE e.{quote(column)} = %s"


def definition_from_row(row: Sequence[Any]) -> TaskDefinition:
    """The TaskDefinition of a row of its concrete columns in order, as the ORM loads it."""
    fields = TaskDefinition._meta.concrete_fields
    # The ORM's converters: Django has psycopg hand jsonb over as text (JSONField decodes it).
    convert = [getattr(f, "from_db_value", None) for f in fields]
    values = [c(v, None, connection) if c else v for c, v in zip(convert, row, strict=True)]
    return TaskDefinition.from_db(connection.alias, [f.attname for f in fields], values)


_DEFINITION_PK = TaskDefinition._meta.concrete_fields.index(TaskDefinition._meta.pk)


@cache
def _select_sql(model: type[Model], column: str) -> str:
    """SELECT every column of the row whose unique `column` is %s."""
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in model._meta.concrete_fields)
    return f"SELECT {columns} FROM {quote(model._meta.db_table)} WHERE {quote(column)} = %s"


def _declared_limit(queue: str, definition: TaskDefinition | None) -> int | None:
    return definition.concurrency_limit if definition and definition.queue == queue else None


def _write_new_run(
    run: Run, event: RunEvent, *, create_queue: bool, declared_limit: int | None, async_commit: bool = False
) -> None:
    """INSERT the run and its first timeline event, create its queue if missing (as
    ensure_queue does without a limit) and NOTIFY the engine, in one statement: one round
    trip instead of six (each INSERT, the queue's SELECT, the NOTIFY, BEGIN and COMMIT)."""
    params: list[Any] = [insert_rows([run]), insert_rows([event])]
    if create_queue:
        params += [run.environment_id, run.queue, declared_limit, run.created_at, run.environment_id, run.queue]
    # Prepared: planning three INSERTs was a good part of the statement's time on the server.
    prepared_row(_new_runs_statement(create_queue, async_commit), [*params, events.ENGINE_CHANNEL])


@cache
def _new_runs_statement(create_queue: bool, async_commit: bool = False) -> str:
    parts = [insert_sql(Run), insert_sql(RunEvent)]
    if create_queue:
        table = Queue._meta.db_table
        parts.append(
            f"INSERT INTO {table} (environment_id, name, concurrency_limit, created_at) SELECT %s, %s, %s, %s"
            f" WHERE NOT EXISTS (SELECT FROM {table} WHERE environment_id = %s AND name = %s) ON CONFLICT DO NOTHING"
        )
    # async_commit: SET LOCAL synchronous_commit = off in the same statement (no round trip).
    flush = ", set_config('synchronous_commit', 'off', true)" if async_commit else ""
    ctes = ", ".join(f"w{i} AS ({part})" for i, part in enumerate(parts))
    return f"WITH {ctes} SELECT pg_notify(%s, ''){flush}"


@cache
def _insert_fields(model: type[Model]) -> list[Field[Any, Any]]:
    """The columns bulk_create writes (an AutoField is left to the database)."""
    return [f for f in model._meta.concrete_fields if not isinstance(f, AutoField)]


@cache
def insert_sql(model: type[Model], suffix: str = "") -> str:
    """INSERT of the rows insert_rows() encodes (one %s parameter, however many rows), what
    bulk_create does for far less CPU: Django compiles nothing, and psycopg neither parses a
    statement with a placeholder per value nor escapes thousands of parameters."""
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = ", ".join(quote(f.column) for f in _insert_fields(model))
    rows = f"jsonb_populate_recordset(NULL::{table}, %s::jsonb)"
    return f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {rows}{suffix}"


def insert_rows(objs: Sequence[Model]) -> str:
    """The rows of objs as insert_sql() reads them: the values bulk_create would send (pre_save
    sets auto_now fields), as JSON; marks objs saved, as bulk_create does."""
    columns = _json_columns(type(objs[0]))
    rows = []
    for obj in objs:
        rows.append({column: prep(f.pre_save(obj, True)) for column, f, prep in columns})
        obj._state.adding, obj._state.db = False, connection.alias
    return json.dumps(rows, default=_json_default, separators=(",", ":"))


# Values these fields hold are already what the database takes (no get_db_prep_save needed).
# A datetime goes as ISO 8601 with its offset (_json_default); the engine's are aware, and
# PostgreSQL would read a naive one in the connection's time zone, UTC, as Django does.
_PLAIN_TYPES = {
    "CharField",
    "TextField",
    "BooleanField",
    "IntegerField",
    "BigIntegerField",
    "PositiveIntegerField",
    "DateTimeField",
}


@cache
def _json_columns(model: type[Model]) -> list[tuple[str, Field[Any, Any], Callable[[Any], Any]]]:
    """(column, field, value -> JSON value) of the fields insert_rows() writes."""
    columns = []
    for f in _insert_fields(model):
        prep: Callable[[Any], Any] = partial(f.get_db_prep_save, connection=connection)
        if isinstance(f, JSONField) or f.get_internal_type() in _PLAIN_TYPES or f.is_relation:
            # A JSON field's value is the JSON itself (None is SQL NULL, as Django stores it);
            # a foreign key's is its target's id.
            prep = _same
        columns.append((f.column, f, prep))
    return columns


def _same(value: Any) -> Any:
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()  # PostgreSQL reads the offset: the same instant as a parameter
    raise TypeError(f"{type(value).__name__} cannot be inserted as JSON")


def insert_runs(requests: list[TriggerRequest]) -> list[Run]:
    """_insert_run for many requests without idempotency keys or debounce (batches): the same
    runs and events, written with one statement and announced in one message."""
    if not requests:
        return []
    task_ids = {req.task_id for req in requests}
    definitions = {d.task_id: d for d in TaskDefinition.objects.filter(task_id__in=task_ids)}
    parents: dict[str | None, Run | None] = {}
    queues: set[tuple[str, int | None]] = set()
    runs, timeline = [], []
    for req in requests:
        assert not req.options.idempotency_key and req.options.debounce is None, "use trigger() for these"
        definition = definitions.get(req.task_id)
        if req.options.parent_run_id not in parents:
            parents[req.options.parent_run_id] = _parent(req)
        run = _new_run(req, definition, parents[req.options.parent_run_id])
        if (run.queue, req.options.queue_concurrency_limit) not in queues:
            ensure_queue(req.environment, run.queue, definition, req.options.queue_concurrency_limit)
            queues.add((run.queue, req.options.queue_concurrency_limit))
        reason = _set_initial_status(run, req, definition)
        runs.append(run)
        timeline.append(
            RunEvent(run=run, at=req.now, from_status="", to_status=run.status, actor=req.actor, reason=reason)
        )
    statement = f"WITH runs AS ({insert_sql(Run)}), timeline AS ({insert_sql(RunEvent)}) SELECT pg_notify(%s, '')"
    with connection.cursor() as cursor:
        cursor.execute(statement, [insert_rows(runs), insert_rows(timeline), events.ENGINE_CHANNEL])
    events.publish_runs_changed(
        environment_id=requests[0].environment.pk, run_ids=[run.id for run in runs], created=True
    )
    return runs


def _set_initial_status(run: Run, req: TriggerRequest, definition: TaskDefinition | None) -> str:
    """DELAYED, PENDING_VERSION or QUEUED; returns the timeline's reason."""
    delay_until = req.options.delay_until
    if delay_until is None and req.options.debounce is not None:
        delay_until = req.now + timedelta(seconds=req.options.debounce.delay)
    if delay_until is not None and delay_until > req.now:
        run.status, run.delay_until = RunStatus.DELAYED, delay_until
        # Kept when the delay ends (promote_delayed): it may come before then.
        run.expires_at = req.options.expires_at
        return "triggered with a delay"
    mark_queued(run, req.now)
    if req.options.expires_at is not None:
        run.expires_at = req.options.expires_at
    if definition is None:
        run.status = RunStatus.PENDING_VERSION
        return "triggered; no worker serves this task yet"
    run.status = RunStatus.QUEUED
    return "triggered"


def _parent(req: TriggerRequest) -> Run | None:
    if not req.options.parent_run_id:
        return None
    return Run.objects.filter(pk=req.options.parent_run_id, environment=req.environment).first()


def _new_run(req: TriggerRequest, definition: TaskDefinition | None, parent: Run | None) -> Run:
    ttl = req.options.ttl if req.options.ttl is not None else _default_ttl(req.environment)
    return Run(
        parent=parent,
        root_id=(parent.root_id or parent.id) if parent else None,
        depth=parent.depth + 1 if parent else 0,
        resume_parent_on_completion=req.options.resume_parent and parent is not None,
        batch_id=req.options.batch_id,
        environment=req.environment,
        task_identifier=req.task_id,
        payload=req.payload,
        payload_type=req.payload_type,
        metadata=req.options.metadata,
        tags=sorted(req.options.tags),
        queue=req.options.queue or (definition.queue if definition else f"task/{req.task_id}"),
        concurrency_key=req.options.concurrency_key,
        machine=req.options.machine or (definition.machine if definition else registry.DEFAULT_MACHINE),
        region=req.options.region,
        priority_ms=round(req.options.priority * 1000),
        max_attempts=req.options.max_attempts or (definition.max_attempts if definition else 1),
        max_duration=req.options.max_duration if req.options.max_duration is not None else _max_duration(definition),
        ttl=min(ttl, MAX_TTL) if ttl else None,
        options=req.options.raw,
        created_at=req.now,
        updated_at=req.now,
        trigger_function=req.options.trigger_function,
        is_test=req.options.is_test,
        trigger_source=req.source,
        idempotency_key=req.options.idempotency_key,
        idempotency_key_user=req.options.idempotency_key_user,
        idempotency_key_expires_at=_key_expiry(req.options, req.now),
        debounce_key=req.options.debounce.key if req.options.debounce else "",
        debounce=asdict(req.options.debounce) if req.options.debounce else None,
        celery_id=req.options.celery_id,
        celery_queue=req.options.celery_queue or (definition.celery_queue if definition else ""),
        schedule_id=req.options.schedule_id,
    )


def _key_expiry(options: TriggerOptions, now: datetime) -> datetime | None:
    if not options.idempotency_key:
        return None
    return now + timedelta(seconds=options.idempotency_key_ttl or IDEMPOTENCY_KEY_TTL)


def _max_duration(definition: TaskDefinition | None) -> int | None:
    return definition.max_duration if definition else None


def _default_ttl(environment: Environment) -> int:
    # Dev runs expire fast so a stopped worker does not pile up work; others get the maximum.
    return DEV_DEFAULT_TTL if environment.kind == "DEVELOPMENT" else MAX_TTL
