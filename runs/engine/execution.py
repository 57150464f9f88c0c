"""Attempts: what the Celery worker reports through the executor."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from runs import registry
from runs.engine.core import ENGINE, finish_attempt, mark_queued, set_error, transition
from runs.models import Run, RunAttempt
from runs.states import RunStatus


def start_attempt(*, run_id: str, worker: str, now: datetime | None = None) -> RunAttempt | None:
    """DEQUEUED -> EXECUTING and a new attempt; None if the run may not start (e.g. canceled)."""
    now = now or timezone.now()

    resumed = False

    def start(run: Run) -> list[str]:
        nonlocal resumed
        # A run resuming after its children continues its attempt rather than starting a new one.
        resumed, run.resuming = run.resuming, False
        run.attempt_count += 0 if resumed else 1
        run.started_at = run.started_at or now
        run.heartbeat_at = now
        run.worker = worker
        run.deadline_at = now + timedelta(seconds=run.max_duration) if run.max_duration else None
        return ["attempt_count", "started_at", "heartbeat_at", "worker", "deadline_at", "resuming"]

    with transaction.atomic():
        run = transition(
            run_id,
            RunStatus.EXECUTING,
            actor=f"worker:{worker}",
            now=now,
            allowed_from=[RunStatus.DEQUEUED],
            changes=start,
            reason="attempt started",
        )
        if run is None:
            return None
        if not resumed:
            # A new attempt number, counted up in this transaction: no row has it yet. One INSERT
            # instead of a savepoint, a locking SELECT and an INSERT (the worker's hot path).
            return RunAttempt.objects.create(
                run=run, number=run.attempt_count, status=RunStatus.EXECUTING, worker=worker, started_at=now
            )
        attempt, _ = RunAttempt.objects.update_or_create(
            run=run,
            number=run.attempt_count,
            defaults={"status": RunStatus.EXECUTING, "worker": worker},
            create_defaults={"status": RunStatus.EXECUTING, "worker": worker, "started_at": now},
        )
        return attempt


def heartbeat(*, run_id: str, attempt: int, now: datetime | None = None) -> bool:
    """Record that attempt `attempt` is alive; False if the run moved on (stop working)."""
    now = now or timezone.now()
    current = Run.objects.filter(pk=run_id, status=RunStatus.EXECUTING, attempt_count=attempt)
    return current.update(heartbeat_at=now) == 1


def complete_attempt(
    *, run_id: str, attempt: int, output: str, output_type: str, now: datetime | None = None
) -> Run | None:
    """EXECUTING -> COMPLETED with the output, if `attempt` is still the current attempt."""
    now = now or timezone.now()

    def store(run: Run) -> list[str]:
        run.output, run.output_type = output, output_type
        return ["output", "output_type"]

    with transaction.atomic():
        run = transition(
            run_id,
            RunStatus.COMPLETED,
            actor=_worker_actor(run_id),
            now=now,
            allowed_from=[RunStatus.EXECUTING],
            guard=lambda r: r.attempt_count == attempt,
            changes=store,
            reason="attempt succeeded",
        )
        if run is not None:
            finish_attempt(run, attempt, RunStatus.COMPLETED, now)
        return run


def fail_attempt(
    *,
    run_id: str,
    attempt: int,
    error: dict[str, Any],
    retry: registry.Retry | None,
    final_status: str = RunStatus.FAILED,
    actor: str | None = None,
    now: datetime | None = None,
) -> Run | None:
    """End a failed attempt: requeue after backoff while attempts remain, else final_status.

    final_status is FAILED for the task's own errors and CRASHED for a lost worker.
    """
    now = now or timezone.now()
    with transaction.atomic():
        run = Run.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.status != RunStatus.EXECUTING or run.attempt_count != attempt:
            return None
        actor = actor or f"worker:{run.worker}"
        if attempt < run.max_attempts:
            wait = (retry or registry.Retry()).backoff(attempt)
            updated = transition(
                run_id,
                RunStatus.QUEUED,
                actor=actor,
                now=now,
                changes=lambda r: mark_queued(r, now + timedelta(seconds=wait)),
                reason=f"attempt {attempt} failed: {error['message'][:200]}; retrying in {wait:g}s",
                data={"error": error},
            )
        else:
            updated = transition(
                run_id,
                final_status,
                actor=actor,
                now=now,
                changes=set_error(error),
                reason=f"attempt {attempt} of {run.max_attempts} failed: {error['message'][:200]}",
                data={"error": error},
            )
        finish_attempt(run, attempt, final_status, now, error)
        return updated


def system_failure(*, run_id: str, attempt: int, error: dict[str, Any], now: datetime | None = None) -> Run | None:
    """EXECUTING -> SYSTEM_FAILURE: Runyard could not run the attempt (not the task's fault)."""
    now = now or timezone.now()
    with transaction.atomic():
        run = transition(
            run_id,
            RunStatus.SYSTEM_FAILURE,
            actor=ENGINE,
            now=now,
            allowed_from=[RunStatus.EXECUTING],
            guard=lambda r: r.attempt_count == attempt,
            changes=set_error(error),
            reason=error["message"],
        )
        if run is not None:
            finish_attempt(run, attempt, RunStatus.SYSTEM_FAILURE, now, error)
        return run


def _worker_actor(run_id: str) -> str:
    worker = Run.objects.filter(pk=run_id).values_list("worker", flat=True).first()
    return f"worker:{worker or 'unknown'}"
