"""Writing a run's metadata while it runs: from its own task (runs.metadata_buffer, a few writes
a second whatever the task does) and from API clients (PUT /api/v1/runs/{id}/metadata).

Operations apply under row locks, so a task and an API client writing at once both land.
Operations for the parent or root run go to that run (to the run itself when it has none, as
the reference does). No RunEvent is written: metadata is data, not a transition, and a task
updating its progress would drown the timeline; the change is published after commit, so the
run page and the runs list show it live.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from runs import events
from runs import metadata as ops
from runs.engine.core import EngineError, RunNotFound
from runs.metadata import MetadataChange
from runs.models import Run

# The reference lets a run's metadata change until an hour after it finished (a task's last
# flush and a client's late update land); later, it refuses.
UPDATABLE_AFTER_FINISH = timedelta(hours=1)


class RunFinished(EngineError):
    pass


class MetadataTooLarge(EngineError):
    def __init__(self, error: ops.MetadataError) -> None:
        super().__init__(error.message)
        self.error = error


def update_metadata(
    *, run_id: str, change: MetadataChange, environment_id: int | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """Apply `change` and return the run's metadata after it. environment_id: the caller's, a
    run of another is not found. Raises RunNotFound, RunFinished (finished over an hour ago),
    MetadataTooLarge (any of the runs past 256 KiB: nothing is written)."""
    now = now or timezone.now()
    runs = Run.objects.filter(pk=run_id)
    if environment_id is not None:
        runs = runs.filter(environment_id=environment_id)
    # parent and root never change once the run exists: read them before locking.
    found = runs.values("parent_id", "root_id", "metadata").first()
    if found is None:
        raise RunNotFound(f"Run {run_id} not found")
    if change.empty():
        return found["metadata"] or {}
    plan = _plan(run_id, found["parent_id"] or run_id, found["root_id"] or run_id, change)
    with transaction.atomic():
        # Every row locked in one statement, in id order: two updates reaching the same runs
        # from different children cannot deadlock.
        locked = {
            run.pk: run
            for run in Run.objects.select_for_update()
            .filter(pk__in=plan)
            .order_by("pk")
            .only("id", "environment_id", "metadata", "finished_at")
        }
        target = locked.get(run_id)
        if target is None:  # deleted meanwhile
            raise RunNotFound(f"Run {run_id} not found")
        if target.finished_at is not None and target.finished_at < now - UPDATABLE_AFTER_FINISH:
            raise RunFinished(f"Run {run_id} finished over an hour ago: its metadata can no longer change")
        written = {pk: _applied(locked[pk], *steps) for pk, steps in plan.items() if pk in locked}
        for pk, metadata in written.items():
            if metadata != (locked[pk].metadata or {}):
                Run.objects.filter(pk=pk).update(metadata=metadata)
                events.publish_run_changed(environment_id=locked[pk].environment_id, run_id=pk)
    return written[run_id]


def _plan(
    run_id: str, parent_id: str, root_id: str, change: MetadataChange
) -> dict[str, tuple[dict[str, Any] | None, list[ops.Operation]]]:
    """Per run, what replaces its metadata and the operations after it, in the reference's
    order: the run's own first, then its parent's, then its root's."""
    plan: dict[str, tuple[dict[str, Any] | None, list[ops.Operation]]] = {run_id: (change.replace, [])}
    for pk, operations in (
        (run_id, change.operations),
        (parent_id, change.parent_operations),
        (root_id, change.root_operations),
    ):
        replace, queued = plan.get(pk, (None, []))
        plan[pk] = (replace, [*queued, *operations])
    return plan


def _applied(run: Run, replace: dict[str, Any] | None, operations: list[ops.Operation]) -> dict[str, Any]:
    metadata = ops.apply(run.metadata if replace is None else replace, operations)
    try:
        ops.check_size(metadata)
    except ops.MetadataError as exc:
        raise MetadataTooLarge(exc) from exc
    return metadata


def read_metadata(*, run_id: str, environment_id: int | None = None) -> dict[str, Any]:
    """The run's metadata ({} when it has none); environment_id as for update_metadata.
    Raises RunNotFound."""
    runs = Run.objects.filter(pk=run_id)
    if environment_id is not None:
        runs = runs.filter(environment_id=environment_id)
    found = runs.values_list("metadata", flat=True)
    if not found:
        raise RunNotFound(f"Run {run_id} not found")
    return found[0] or {}
