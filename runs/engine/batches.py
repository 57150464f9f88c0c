"""Batches: up to 1,000 runs triggered together, all or nothing.

Every batch takes one path, whoever sends it: create_batch (the count, the batch idempotency
key, the batch rate limit, the batch row), then fill_batch (its items staged as BatchItem rows,
deduplicated by index; once all have arrived the batch is sealed and every run is created in one
transaction; an item that cannot become a run aborts the batch, and no run of it exists). Over
the API these are the two calls of the wire protocol; the Python SDK (batch_trigger, and
batch_trigger_and_wait inside a task) makes both in one transaction with trigger_batch_items.
Items are staged as they come, so a 1,000-item generator is never held in memory at once.
Callers only parse: the API its JSON and NDJSON, the SDK its Python values.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from itertools import islice

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from runs import ratelimit
from runs.engine.core import Actor, EngineError
from runs.engine.triggering import TriggerOptions, TriggerRequest, insert_rows, insert_runs, insert_sql, trigger
from runs.models import Batch, BatchItem, BatchStatus, Environment

MAX_BATCH_ITEMS = 1000
CHUNK = 100
# Items per bulk insert while staging in-process. Fewer than CHUNK: with client-side parameter
# binding an insert holds several copies of its rows' payloads at once, and the caller's own
# copies of them are still alive.
IN_PROCESS_CHUNK = 50


@dataclass
class BatchEntry:
    """One item of a batch, already validated."""

    task_id: str
    payload: str = ""
    payload_type: str = "application/json"
    options: TriggerOptions = field(default_factory=TriggerOptions)


@dataclass(frozen=True)
class StagedItem:
    """One item as it arrived: its options are parsed again when the batch is sealed."""

    index: int
    task_id: str
    payload: str
    payload_type: str
    options: dict[str, object]


class BatchItemError(EngineError):
    """An item that cannot become a run; the whole batch is refused. `where` names the item in
    the message when its index is not known for sure (an unparseable line)."""

    def __init__(self, index: int, message: str, *, task_identifier: str = "", where: str | None = None) -> None:
        super().__init__(f"Batch item {index if where is None else where}: {message}")
        self.index, self.detail, self.task_identifier = index, message, task_identifier


class BatchRateLimited(EngineError):
    """The environment's batch rate limit refused the batch's items (runs.ratelimit). `decision`
    is None for a batch larger than the bucket itself; `phase` is "create" when the count was
    known up front, "stream" when it was known only once every item was read."""

    def __init__(self, message: str, *, count: int, phase: str, decision: ratelimit.Decision | None) -> None:
        super().__init__(message)
        self.count, self.phase, self.decision = count, phase, decision


@dataclass(frozen=True)
class Filled:
    """What fill_batch did: the batch after it (sealed, or PENDING still missing items)."""

    batch: Batch
    accepted: int
    deduplicated: int


def create_batch(
    *,
    environment: Environment,
    run_count: int,
    task_identifiers: list[str] | None = None,
    idempotency_key: str | None = None,
    idempotency_key_user: str = "",
    parent_run_id: str | None = None,
    resume_parent: bool = False,
    charge: bool = False,
    now: datetime | None = None,
) -> tuple[Batch, bool]:
    """A new PENDING batch expecting run_count items, or (existing, True) for a repeated key.

    charge: take run_count from the environment's batch rate limit first (a repeated key costs
    nothing). Raises EngineError (run_count out of range), BatchRateLimited."""
    now = now or timezone.now()
    if not 1 <= run_count <= MAX_BATCH_ITEMS:
        raise EngineError(f"runCount must be from 1 to {MAX_BATCH_ITEMS} (a batch holds at most 1,000 items)")
    if idempotency_key:
        existing = Batch.objects.filter(environment=environment, idempotency_key=idempotency_key).first()
        if existing is not None:  # creates nothing, so costs nothing
            return existing, True
    if charge:
        charge_batch(environment_id=environment.pk, count=run_count, phase="create")
    with transaction.atomic():
        if idempotency_key:
            with connection.cursor() as cursor:
                lock = f"batch-key:{environment.pk}:{idempotency_key}"
                cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [lock])
            existing = Batch.objects.filter(environment=environment, idempotency_key=idempotency_key).first()
            if existing is not None:
                return existing, True
        batch = Batch.objects.create(
            environment=environment,
            run_count=run_count,
            task_identifiers=sorted(set(task_identifiers or [])),
            idempotency_key=idempotency_key or None,
            idempotency_key_user=idempotency_key_user,
            parent_id=parent_run_id,
            resume_parent_on_completion=resume_parent,
            created_at=now,
            updated_at=now,
        )
    return batch, False


def charge_batch(*, environment_id: int, count: int, phase: str) -> None:
    """Take `count` tokens from the environment's batch rate limit. Raises BatchRateLimited."""
    try:
        decision = ratelimit.charge_batch_items(environment_id=environment_id, count=count)
    except ratelimit.ChargeTooLarge as exc:
        raise BatchRateLimited(str(exc), count=count, phase=phase, decision=None) from exc
    if not decision.allowed:
        raise BatchRateLimited(
            f"Batch rate limit exceeded: {count:,} items asked for, {decision.remaining:,} of "
            f"{decision.limit:,} available; enough are back in {decision.retry_after_seconds}s",
            count=count,
            phase=phase,
            decision=decision,
        )


def fill_batch(
    *,
    batch_id: str,
    items: Iterable[StagedItem],
    actor: Actor,
    source: str = "api",
    complete: bool = False,
    charge: bool = False,
    chunk_size: int = CHUNK,
    now: datetime | None = None,
) -> Filled:
    """Stage items of a PENDING batch (deduplicated by index) and seal it once all have arrived.

    An item that cannot become a run (BatchItemError, raised by `items` itself or here) leaves
    nothing of this call staged and the batch ABORTED with its error; the error is raised again.
    complete: these items are the whole batch (the Python SDK's, perhaps of a length unknown
    when it was created): its count and task identifiers become theirs, the count charged to
    the rate limit first when `charge`. Raises BatchItemError, BatchRateLimited, EngineError."""
    now = now or timezone.now()
    task_ids: set[str] = set()
    try:
        with transaction.atomic():  # a savepoint: an invalid item leaves nothing of this call staged
            batch = Batch.objects.get(pk=batch_id)
            staged = _noting_tasks(items, task_ids)
            accepted, deduplicated = add_batch_items(batch=batch, items=staged, chunk_size=chunk_size)
    except BatchItemError as exc:
        task = exc.task_identifier
        abort_batch(batch_id=batch_id, index=exc.index, message=exc.detail, task_identifier=task, now=now)
        raise
    if complete:
        if charge:
            charge_batch(environment_id=batch.environment_id, count=accepted, phase="stream")
        set_batch_run_count(batch_id=batch_id, run_count=accepted, task_identifiers=sorted(task_ids), now=now)
    return Filled(seal_batch(batch_id=batch_id, actor=actor, source=source, now=now), accepted, deduplicated)


def _noting_tasks(items: Iterable[StagedItem], task_ids: set[str]) -> Iterator[StagedItem]:
    for item in items:
        task_ids.add(item.task_id)
        yield item


def trigger_batch_items(
    *,
    environment: Environment,
    items: Iterable[StagedItem],
    run_count: int | None,
    actor: Actor,
    source: str,
    idempotency_key: str | None = None,
    idempotency_key_user: str = "",
    parent_run_id: str | None = None,
    resume_parent: bool = False,
    charge: bool = True,
    now: datetime | None = None,
) -> tuple[Batch, bool]:
    """create_batch and fill_batch in one transaction, for a caller holding every item (the
    Python SDK): all the batch's runs, or nothing at all. run_count None: a stream of unknown
    length, counted (and charged) once read. Returns (batch, True) for a repeated batch key,
    its items unread. Raises BatchItemError, BatchRateLimited, EngineError."""
    now = now or timezone.now()
    with transaction.atomic():
        batch, cached = create_batch(
            environment=environment,
            run_count=run_count or MAX_BATCH_ITEMS,  # unknown size: fixed after staging
            idempotency_key=idempotency_key,
            idempotency_key_user=idempotency_key_user,
            parent_run_id=parent_run_id,
            resume_parent=resume_parent,
            charge=charge and run_count is not None,
            now=now,
        )
        if cached:
            return batch, True
        filled = fill_batch(
            batch_id=batch.id,
            items=items,
            actor=actor,
            source=source,
            complete=True,
            charge=charge and run_count is None,
            chunk_size=IN_PROCESS_CHUNK,
            now=now,
        )
    return filled.batch, False


def add_batch_items(*, batch: Batch, items: Iterable[StagedItem], chunk_size: int = CHUNK) -> tuple[int, int]:
    """Stage items of a PENDING batch in chunks; returns (accepted, deduplicated) counts."""
    accepted = duplicates = 0
    iterator = iter(items)
    while chunk := list(islice(iterator, chunk_size)):
        for item in chunk:
            if not 0 <= item.index < batch.run_count:
                raise BatchItemError(item.index, f"index must be from 0 to {batch.run_count - 1}")
        rows = [
            BatchItem(
                batch=batch,
                index=item.index,
                task_identifier=item.task_id,
                payload=item.payload,
                payload_type=item.payload_type,
                options=item.options,
            )
            for item in chunk
        ]
        # One statement per chunk: the rows an index already staged are skipped and counted.
        with connection.cursor() as cursor:
            cursor.execute(_stage_sql(), [insert_rows(rows)])
            (added,) = cursor.fetchone() or (0,)
        accepted, duplicates = accepted + added, duplicates + len(rows) - added
    return accepted, duplicates


def _stage_sql() -> str:
    return f"WITH added AS ({insert_sql(BatchItem, ' ON CONFLICT DO NOTHING RETURNING 1')}) SELECT count(*) FROM added"


def seal_batch(*, batch_id: str, actor: Actor, source: str = "api", now: datetime | None = None) -> Batch:
    """Create every run of a batch whose items have all arrived (nothing, if any item fails).

    A batch still missing items is returned PENDING. Raises BatchItemError after marking
    the batch ABORTED when an item cannot become a run.
    """
    now = now or timezone.now()
    try:
        with transaction.atomic():
            batch = Batch.objects.select_for_update().get(pk=batch_id)
            if batch.status != BatchStatus.PENDING or batch.items.count() < batch.run_count:
                return batch
            batch.run_ids = _create_runs(batch, actor, source, now)
            batch.items.all().delete()
            batch.status, batch.sealed_at, batch.updated_at = BatchStatus.COMPLETED, now, now
            batch.save(update_fields=["run_ids", "status", "sealed_at", "updated_at"])
            return batch
    except BatchItemError as exc:
        abort_batch(batch_id=batch_id, index=exc.index, message=exc.detail, now=now)
        raise


def abort_batch(
    *, batch_id: str, index: int, message: str, task_identifier: str = "", now: datetime | None = None
) -> None:
    """Refuse a whole batch because of one item; no run of it exists."""
    now = now or timezone.now()
    error = {"index": index, "taskIdentifier": task_identifier, "error": message}
    Batch.objects.filter(pk=batch_id, status=BatchStatus.PENDING).update(
        status=BatchStatus.ABORTED, errors=[error], updated_at=now
    )


def reap_unsealed_batches(*, now: datetime) -> int:
    """Abort batches whose items did not all arrive within RUNYARD_BATCH_SEAL_TIMEOUT of their
    creation (a client that died mid-stream) and drop their staged items; returns how many.
    No run of such a batch exists: runs are created only when the last item arrives."""
    cutoff = now - timedelta(seconds=settings.RUNYARD_BATCH_SEAL_TIMEOUT)
    with transaction.atomic():
        stale = list(
            Batch.objects.select_for_update(skip_locked=True)
            .filter(status=BatchStatus.PENDING, created_at__lt=cutoff)
            .values_list("id", "run_count")[:500]
        )
        for batch_id, run_count in stale:
            arrived = set(BatchItem.objects.filter(batch_id=batch_id).values_list("index", flat=True))
            missing = min(set(range(run_count)) - arrived, default=0)
            message = (
                f"item {missing} never arrived: {len(arrived)} of {run_count} items in"
                f" {settings.RUNYARD_BATCH_SEAL_TIMEOUT} seconds, so the batch was aborted and no run was created"
            )
            error = {"index": missing, "taskIdentifier": "", "error": message}
            Batch.objects.filter(pk=batch_id).update(status=BatchStatus.ABORTED, errors=[error], updated_at=now)
        BatchItem.objects.filter(batch_id__in=[batch_id for batch_id, _ in stale]).delete()
    return len(stale)


def set_batch_run_count(
    *, batch_id: str, run_count: int, task_identifiers: list[str] | None = None, now: datetime | None = None
) -> Batch:
    """Fix the count of a PENDING batch created with a provisional one (a stream of unknown length).

    Requires every staged index to be below run_count; raises EngineError otherwise.
    """
    now = now or timezone.now()
    if not 1 <= run_count <= MAX_BATCH_ITEMS:
        raise EngineError(f"runCount must be from 1 to {MAX_BATCH_ITEMS} (a batch holds at most 1,000 items)")
    with transaction.atomic():
        batch = Batch.objects.select_for_update().get(pk=batch_id)
        if batch.status != BatchStatus.PENDING:
            raise EngineError(f"batch {batch_id} is {batch.status}: its count can no longer change")
        if batch.items.filter(index__gte=run_count).exists():
            raise EngineError(f"batch {batch_id} holds items past index {run_count - 1}")
        batch.run_count, batch.updated_at = run_count, now
        fields = ["run_count", "updated_at"]
        if task_identifiers is not None:
            batch.task_identifiers = sorted(set(task_identifiers))
            fields.append("task_identifiers")
        batch.save(update_fields=fields)
    return batch


def batch_run_ids(*, batch_id: str) -> list[str]:
    """Ids of the batch's runs in item order (an item an idempotency key or debounce matched
    names the run it matched)."""
    return list(Batch.objects.filter(pk=batch_id).values_list("run_ids", flat=True).first() or [])


def _create_runs(batch: Batch, actor: Actor, source: str, now: datetime) -> list[str]:
    from runs.options import OptionError, parse_trigger_options  # options builds on the engine

    run_ids: list[str] = []
    staged = _staged(batch)
    # A chunk at a time: a batch of large payloads is never held in memory at once.
    while chunk := list(islice(staged, CHUNK)):
        entries = []
        for item in chunk:
            try:
                options = parse_trigger_options(item.options, now=now)
            except OptionError as exc:
                raise BatchItemError(item.index, exc.message) from exc
            entries.append(BatchEntry(item.task_identifier, item.payload, item.payload_type, options))
        del chunk
        run_ids += _trigger_entries(batch, entries, actor, source, now)
    return run_ids


def _trigger_entries(batch: Batch, entries: list[BatchEntry], actor: Actor, source: str, now: datetime) -> list[str]:
    """Trigger every item as part of batch; returns the ids of their runs in item order.

    Items with an idempotency key or a debounce key may resolve to an existing run and go
    through trigger() one by one; the others are inserted together (insert_runs).
    """
    run_ids: list[str] = [""] * len(entries)
    plain: list[tuple[int, TriggerRequest]] = []
    for index, entry in enumerate(entries):
        options = replace(
            entry.options,
            batch_id=batch.id,
            parent_run_id=batch.parent_id,
            resume_parent=batch.resume_parent_on_completion,
            trigger_function="batchTriggerAndWait" if batch.resume_parent_on_completion else "batchTrigger",
        )
        if options.idempotency_key or options.debounce is not None:
            result = trigger(
                environment=batch.environment,
                task_id=entry.task_id,
                payload=entry.payload,
                payload_type=entry.payload_type,
                options=options,
                actor=actor,
                source=source,
                now=now,
            )
            run_ids[index] = result.run.id
        else:
            request = TriggerRequest(
                batch.environment, entry.task_id, entry.payload, entry.payload_type, options, actor, source, now
            )
            plain.append((index, request))
    for (index, _), run in zip(plain, insert_runs([request for _, request in plain]), strict=True):
        run_ids[index] = run.id
    return run_ids


def _staged(batch: Batch) -> Iterator[BatchItem]:
    return batch.items.order_by("index").iterator(chunk_size=CHUNK)


def trigger_batch(
    *,
    environment: Environment,
    entries: list[BatchEntry],
    actor: Actor,
    source: str = "api",
    parent_run_id: str | None = None,
    resume_parent: bool = False,
    now: datetime | None = None,
) -> Batch:
    """Create a batch and all its runs at once from entries already validated (all or nothing):
    the bulk insert of tests and benchmarks. Batches of the API and the SDK go through
    create_batch and fill_batch."""
    now = now or timezone.now()
    if not 1 <= len(entries) <= MAX_BATCH_ITEMS:
        raise EngineError(f"a batch holds 1 to {MAX_BATCH_ITEMS} items, not {len(entries)}")
    with transaction.atomic():
        batch = Batch.objects.create(
            environment=environment,
            status=BatchStatus.COMPLETED,
            run_count=len(entries),
            task_identifiers=sorted({entry.task_id for entry in entries}),
            parent_id=parent_run_id,
            resume_parent_on_completion=resume_parent,
            created_at=now,
            updated_at=now,
            sealed_at=now,
        )
        batch.run_ids = _trigger_entries(batch, entries, actor, source, now)
        batch.save(update_fields=["run_ids"])
    return batch
