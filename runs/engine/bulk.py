"""Bulk actions: cancel or replay many runs, worked off by the engine a chunk per tick.

A BulkAction names its runs by id (runs selected on the list) or by the runs list's filters
(every matching run). It only ever visits runs created at or before its own creation (a
snapshot), so the replays it makes are never replayed again by it, in keyset order
(created_at, id) from its stored cursor. Each chunk is one transaction that also moves the
cursor and the counters: a crashed engine redoes at most the chunk it was in, memory stays
constant at any size, and other engine work runs between chunks. A chunk of cancels is
set-based (actions.cancel_runs: a few statements for the whole chunk); replays create runs,
one at a time.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from runs import events
from runs.engine.actions import cancel_runs, replay_run, try_cancel_run
from runs.engine.core import EngineError
from runs.engine.triggering import TriggerOptions
from runs.models import BulkAction, BulkActionStatus, Environment, Run
from runs.states import is_final

log = logging.getLogger(__name__)

CHUNK = 200  # runs per chunk: one transaction of at most this many cancels or replays
CHUNK_SECONDS = 1.0  # and about this long, so a busy database does not hold up the engine's other work
ACTIONS = ("cancel", "replay")
MAX_SELECTED = 1000  # runs selected by id; larger sets are given as filters
OPEN = [BulkActionStatus.PENDING, BulkActionStatus.RUNNING]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def create_bulk_action(
    *,
    environment: Environment,
    action: str,
    reason: str,
    username: str,
    user_id: int | None = None,
    run_ids: list[str] | None = None,
    filters: dict[str, list[str]] | None = None,
    now: datetime | None = None,
) -> BulkAction:
    """Record a bulk action for the engine to work off (runs by id, else every run matching
    `filters`). Raises EngineError for an unknown action, no reason or too many ids."""
    if action not in ACTIONS:
        raise EngineError(f"Unknown bulk action {action!r}: one of {', '.join(ACTIONS)}")
    if not reason.strip():
        raise EngineError("A bulk action needs a reason")
    if run_ids is not None and not 0 < len(run_ids) <= MAX_SELECTED:
        raise EngineError(f"Select from 1 to {MAX_SELECTED} runs, or act on every run matching the filters")
    with transaction.atomic():
        bulk = BulkAction.objects.create(
            environment=environment,
            user_id=user_id,
            username=username,
            action=action,
            run_ids=list(dict.fromkeys(run_ids or [])),
            filters={} if run_ids else (filters or {}),
            reason=reason.strip(),
            created_at=now or timezone.now(),
        )
        events.wake_engine()
    return bulk


def work_bulk_actions(*, now: datetime) -> int:
    """One chunk of the oldest open bulk action (at most CHUNK runs and about CHUNK_SECONDS);
    returns how many runs it visited."""
    with transaction.atomic():
        bulk = (
            BulkAction.objects.select_for_update(skip_locked=True)
            .filter(status__in=OPEN)
            .order_by("created_at", "id")
            .first()
        )
        if bulk is None:
            return 0
        # Runs it makes (replays) must fall outside its snapshot, whatever the tick's clock said.
        now = max(now, timezone.now(), bulk.created_at + timedelta(microseconds=1))
        fields = {"processed", "succeeded", "skipped", "cursor", "error"}
        if bulk.status == BulkActionStatus.PENDING:
            bulk.status, bulk.started_at, bulk.total = BulkActionStatus.RUNNING, now, in_scope(bulk).count()
            fields |= {"status", "started_at", "total"}
        rows = list(
            in_scope(bulk)
            .filter(after(bulk.cursor))
            .order_by("created_at", "id")
            .values_list("id", "created_at", "status")[:CHUNK]
        )
        visited = (cancel_chunk if bulk.action == "cancel" else one_by_one)(bulk, rows, now)
        if visited == len(rows) < CHUNK:
            # The count at the start was a forecast: runs may leave the filters (a status filter)
            # before they are reached. Done means every run still in scope was visited.
            bulk.status, bulk.finished_at, bulk.total = BulkActionStatus.COMPLETED, now, bulk.processed
            fields |= {"status", "finished_at", "total"}
        else:
            events.wake_engine()  # more to do: the next tick comes at once, not after the poll interval
        bulk.save(update_fields=sorted(fields))
    return visited


Row = tuple[str, datetime, str]  # a run's id, created_at and status


def cancel_chunk(bulk: BulkAction, rows: list[Row], now: datetime) -> int:
    """Cancel a chunk's runs together: a bounded number of statements, not a transition per run
    (10,000 runs took minutes one by one). Counted as one cancel after another would count them."""
    if not rows:
        return 0
    run_ids = [run_id for run_id, _, status in rows if not is_final(status)]  # a final run stays final
    canceled: list[str] = []
    if run_ids:
        try:
            with transaction.atomic():  # a savepoint: should the set fail, each run is tried alone
                canceled = cancel_runs(run_ids=run_ids, actor=actor_of(bulk), reason=reason_of(bulk), now=now)
        except Exception:
            log.exception("bulk action %s could not cancel a chunk at once; one run at a time", bulk.id)
            return one_by_one(bulk, rows, now)
    bulk.processed += len(rows)
    bulk.succeeded += len(canceled)
    bulk.skipped += len(rows) - len(canceled)
    run_id, created_at, _ = rows[-1]
    bulk.cursor = format_cursor(created_at, run_id)
    return len(rows)


def one_by_one(bulk: BulkAction, rows: list[Row], now: datetime) -> int:
    """apply to the chunk's runs in turn, for about CHUNK_SECONDS (replays); returns how many it visited."""
    deadline = time.monotonic() + CHUNK_SECONDS
    visited = 0
    for run_id, created_at, status in rows:
        apply(bulk, run_id, status, now)
        visited += 1
        bulk.cursor = format_cursor(created_at, run_id)
        if time.monotonic() > deadline:
            break  # the rest of the chunk waits for the next tick: other engine work comes first
    return visited


def actor_of(bulk: BulkAction) -> str:
    return f"user:{bulk.username}"


def reason_of(bulk: BulkAction) -> str:
    """The timeline reason of what it does to a run."""
    return f"bulk action {bulk.id}: {bulk.reason}"


def apply(bulk: BulkAction, run_id: str, status: str, now: datetime) -> None:
    """Cancel or replay one run for the bulk action and count the outcome."""
    actor, reason = actor_of(bulk), reason_of(bulk)
    bulk.processed += 1
    if bulk.action == "cancel" and is_final(status):
        bulk.skipped += 1
        return
    try:
        with transaction.atomic():  # a savepoint: one refused run does not undo the chunk
            if bulk.action == "cancel":
                # audited=False: the bulk action was audited once, when it was asked for
                changed = try_cancel_run(run_id=run_id, actor=actor, reason=reason, audited=False, now=now)[1]
            else:
                options = TriggerOptions()
                replay_run(
                    run_id=run_id,
                    actor=actor,
                    options=options,
                    source="dashboard",
                    reason=reason,
                    audited=False,
                    now=now,
                )
                changed = True
    except EngineError as exc:
        changed = False
        bulk.error = bulk.error or f"{run_id}: {exc}"
    except Exception as exc:
        log.exception("bulk action %s could not %s run %s", bulk.id, bulk.action, run_id)
        changed = False
        bulk.error = bulk.error or f"{run_id}: {type(exc).__name__}: {exc}"
    if changed:
        bulk.succeeded += 1
    else:
        bulk.skipped += 1


def in_scope(bulk: BulkAction) -> QuerySet[Run]:
    """The runs the bulk action visits: its environment's, created by its snapshot time."""
    runs = Run.objects.filter(environment_id=bulk.environment_id, created_at__lte=bulk.created_at)
    if bulk.run_ids:
        return runs.filter(pk__in=bulk.run_ids)
    return runs.filter(filters_q(bulk.filters, bulk.created_at))


def filters_q(filters: dict[str, Any], at: datetime) -> Q:
    """The runs list's filters (as RunFilters.as_dict() stored them), a period counted back from `at`."""
    from runs.filters import RunFilters  # the filters build on runs.options, which builds on the engine

    return RunFilters.from_query(filters, at).q()


def after(cursor: str) -> Q:
    """Runs sorting after the cursor in (created_at, id) order; every run for an empty cursor."""
    if not cursor:
        return Q()
    micros, _, run_id = cursor.partition(".")
    at = EPOCH + timedelta(microseconds=int(micros))
    # The plain bound lets PostgreSQL range-scan run_env_created; the OR alone would be a filter.
    return Q(created_at__gte=at) & (Q(created_at__gt=at) | Q(created_at=at, id__gt=run_id))


def format_cursor(at: datetime, run_id: str) -> str:
    """`<microseconds since the epoch>.<run id>` (fits BulkAction.cursor)."""
    return f"{(at - EPOCH) // timedelta(microseconds=1)}.{run_id}"
