"""Operator and API actions on existing runs.

Each action a caller asks for (the dashboard, the REST API, the Python SDK) is audited here,
in its transaction, only when it changed something: callers never write the AuditEntry
themselves. What the engine does as a consequence (a canceled parent's children, the runs of a
bulk action, audited once when it was asked for) passes audited=False.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from runs.engine.core import Actor, EngineError, RunNotFound, audit, celery_task_id, mark_queued, record, revoke
from runs.engine.core import transition as move
from runs.engine.transitions import Moved, move_rows
from runs.engine.triggering import TriggerOptions, trigger
from runs.engine.waiting import open_children
from runs.models import Run, RunAttempt, Waitpoint
from runs.states import ACTIVE_STATUSES, RunStatus, sources_of


def cancel_run(
    *,
    run_id: str,
    actor: Actor,
    reason: str = "",
    user: Any = None,
    audited: bool = True,
    now: datetime | None = None,
) -> Run:
    """Cancel a run that is not final (a final run is returned unchanged). Raises RunNotFound."""
    return try_cancel_run(run_id=run_id, actor=actor, reason=reason, user=user, audited=audited, now=now)[0]


def try_cancel_run(
    *,
    run_id: str,
    actor: Actor,
    reason: str = "",
    user: Any = None,
    audited: bool = True,
    now: datetime | None = None,
) -> tuple[Run, bool]:
    """cancel_run, also saying whether this call canceled the run (False: it was final), audited
    (run.cancel, with `reason` as given and the dashboard's `user`) when it did. Raises RunNotFound."""
    now = now or timezone.now()
    with transaction.atomic():
        before = Run.objects.filter(pk=run_id).values_list("status", "dispatch_count").first()
        if before is None:
            raise RunNotFound(f"Run {run_id} not found")
        run = move(run_id, RunStatus.CANCELED, actor=actor, now=now, reason=_cut(reason or "canceled"))
        if run is not None:
            RunAttempt.objects.filter(run=run, finished_at__isnull=True).update(
                status=RunStatus.CANCELED, finished_at=now
            )
            if before[0] in ACTIVE_STATUSES:
                task_id = celery_task_id(run.id, before[1])
                transaction.on_commit(lambda: revoke(task_id))
            for child_id in open_children(run.id):
                why = f"its parent {run.id} was canceled"
                cancel_run(run_id=child_id, actor=actor, reason=why, audited=False, now=now)
            if audited:
                _audit(run, "run.cancel", actor=actor, user=user, reason=reason, now=now)
    return (run, True) if run is not None else (Run.objects.get(pk=run_id), False)


Locked = dict[str, tuple[str, int, int, str]]  # run id -> (status, dispatch_count, environment_id, queue)


def cancel_runs(*, run_ids: list[str], actor: Actor, reason: str = "", now: datetime | None = None) -> list[str]:
    """try_cancel_run of each of run_ids in turn, in a number of statements that does not grow with
    their number (bulk cancel). Returns the ids among run_ids it canceled; the others were final,
    unknown, or canceled before their turn as an earlier one's open child."""
    now = now or timezone.now()
    with transaction.atomic(savepoint=False):  # the caller's savepoint, if any, is enough
        # Row locks in id order (two bulk cancels cannot deadlock each other); statuses read locked.
        locked = _lock_cancelable(run_ids)
        children = _open_descendants(list(locked), locked)
        plan, mine = _cancel_plan(run_ids, locked, children, _cut(reason or "canceled"))
        if not plan:
            return []
        _finish_canceled(plan, locked, actor, now)
    return mine


def _lock_cancelable(run_ids: list[str]) -> Locked:
    rows = (
        Run.objects.select_for_update()
        .filter(pk__in=run_ids, status__in=sources_of(RunStatus.CANCELED))
        .order_by("id")
        .values_list("id", "status", "dispatch_count", "environment_id", "queue")
    )
    return {
        run_id: (status, dispatch, environment_id, queue) for run_id, status, dispatch, environment_id, queue in rows
    }


def _open_descendants(frontier: list[str], locked: Locked) -> dict[str, list[str]]:
    """open_children of every locked run and of theirs in turn (locking them): a query or two per
    generation, and one in all when none of them waits on children."""
    children: dict[str, list[str]] = {}
    while frontier:
        waits = Waitpoint.objects.filter(run_id__in=frontier, resolved_at__isnull=True).order_by("run_id", "sequence")
        found = {(parent, child) for parent, ids in waits.values_list("run_id", "children") for child in ids}
        if not found:
            break
        new = _lock_cancelable(sorted({child for _, child in found} - locked.keys()))
        locked.update(new)
        for parent, child in sorted(found):
            if child in locked:
                children.setdefault(parent, []).append(child)
        frontier = list(new)
    return children


def _cancel_plan(
    run_ids: list[str], locked: Locked, children: dict[str, list[str]], reason: str
) -> tuple[dict[str, str], list[str]]:
    """The reason each run is canceled with, as one try_cancel_run after another would cancel them:
    a run is canceled in its turn, with its open children (theirs too) right after it."""
    plan: dict[str, str] = {}
    mine = []

    def cancel(run_id: str, why: str) -> None:
        plan[run_id] = why
        for child in children.get(run_id, []):
            if child not in plan:
                cancel(child, f"its parent {run_id} was canceled")

    for run_id in run_ids:
        if run_id in locked and run_id not in plan:
            mine.append(run_id)
            cancel(run_id, reason)
    return plan, mine


def _finish_canceled(plan: dict[str, str], locked: Locked, actor: Actor, now: datetime) -> None:
    """What transition and try_cancel_run do after a cancel, for every run of the plan at once."""
    ids = list(plan)
    rows = [Moved(run_id, locked[run_id][2], locked[run_id][0], locked[run_id][3]) for run_id in ids]
    move_rows(rows, RunStatus.CANCELED, actor=actor, now=now, reasons=plan)
    RunAttempt.objects.filter(run_id__in=ids, finished_at__isnull=True).update(
        status=RunStatus.CANCELED, finished_at=now
    )
    tasks = [celery_task_id(run_id, locked[run_id][1]) for run_id in ids if locked[run_id][0] in ACTIVE_STATUSES]
    if tasks:
        transaction.on_commit(lambda: _revoke_all(tasks))


def _revoke_all(task_ids: list[str]) -> None:
    """revoke for many tasks in one broadcast (Celery's revoke takes a list of ids)."""
    from celery import current_app

    current_app.control.revoke(task_ids, terminate=True, signal="SIGTERM")


def reschedule_run(
    *,
    run_id: str,
    delay_until: datetime,
    actor: Actor,
    reason: str = "",
    user: Any = None,
    audit_reason: str | None = None,
    now: datetime | None = None,
) -> Run:
    """Move a DELAYED run's start to delay_until, audited (run.reschedule; audit_reason, when
    given, is the audit log's reason instead of `reason`). Raises RunNotFound or EngineError."""
    now = now or timezone.now()
    if delay_until <= now:
        raise EngineError(f"Invalid delay: {delay_until.isoformat()} is not in the future")
    with transaction.atomic():
        run = Run.objects.select_for_update().filter(pk=run_id).first()
        if run is None:
            raise RunNotFound(f"Run {run_id} not found")
        if run.status != RunStatus.DELAYED:
            raise EngineError("Cannot reschedule a run that is not delayed")
        previous, run.delay_until, run.updated_at = run.delay_until, delay_until, now
        run.save(update_fields=["delay_until", "updated_at"])
        why = _because(f"rescheduled to {delay_until.isoformat()}", reason)
        record(run, run.status, run.status, actor=actor, reason=why, now=now, data={"from": str(previous)})
        data = {"from": previous.isoformat() if previous else None, "to": delay_until.isoformat()}
        why = reason if audit_reason is None else audit_reason
        _audit(run, "run.reschedule", actor=actor, user=user, reason=why, now=now, data=data)
    return run


def start_now(*, run_id: str, actor: Actor, reason: str = "", user: Any = None, now: datetime | None = None) -> Run:
    """Queue a DELAYED run at once instead of at its delay_until, audited (run.reschedule to
    "now"). Raises RunNotFound or EngineError."""
    now = now or timezone.now()

    def release(run: Run) -> list[str]:
        # The delay is over now; the queue order and the TTL clock count from this moment,
        # exactly as when the engine promotes a run whose delay ran out (scheduler.promote_delayed).
        previous, run.delay_until = run.delay_until, now
        data["from"] = str(previous)
        change["from"] = previous.isoformat() if previous else None
        return ["delay_until", *mark_queued(run, now)]

    data: dict[str, Any] = {}
    change: dict[str, Any] = {"from": None, "to": "now"}  # for the audit log
    with transaction.atomic():
        if not Run.objects.filter(pk=run_id).exists():
            raise RunNotFound(f"Run {run_id} not found")
        run = move(
            run_id,
            RunStatus.QUEUED,
            actor=actor,
            now=now,
            reason=_because("started now instead of at its delay", reason),
            allowed_from=[RunStatus.DELAYED],
            changes=release,
            data=data,
        )
        if run is None:
            raise EngineError("Cannot start a run that is not delayed")
        _audit(run, "run.reschedule", actor=actor, user=user, reason=reason, now=now, data=change)
    return run


def replay_run(
    *,
    run_id: str,
    actor: Actor,
    options: TriggerOptions,
    payload: tuple[str, str] | None = None,
    overridden: set[str] | None = None,
    source: str = "api",
    request_key: str | None = None,
    reason: str = "",
    user: Any = None,
    changed: list[str] | None = None,
    audit_reason: str | None = None,
    audited: bool = True,
    now: datetime | None = None,
) -> Replay:
    """A new run of the same task with the original's payload and options, overridden by
    `options` fields named in `overridden` (and `payload` when given). Raises RunNotFound.

    `reason` (why it was replayed) joins "replay of <id>" in the new run's timeline. A new run
    is audited (run.replay of the original; `changed` names what the caller changed, in its
    own terms; audit_reason, when given, is the audit log's reason instead of `reason`); a
    repeated request_key or a matching idempotency key answers the run it found, created=False."""
    original = Run.objects.filter(pk=run_id).first()
    if original is None:
        raise RunNotFound(f"Run {run_id} not found")
    overridden = overridden or set()
    kept: dict[str, Any] = {
        "metadata": original.metadata,
        "tags": list(original.tags),
        "queue": original.queue,
        "concurrency_key": original.concurrency_key,
        "machine": original.machine,
        "region": original.region,
        "max_attempts": original.max_attempts,
        "max_duration": original.max_duration,
        "priority": original.priority_ms / 1000,
        "is_test": original.is_test,
        "celery_queue": original.celery_queue,
    }
    merged = replace(options, **{name: value for name, value in kept.items() if name not in overridden})
    data, content_type = payload or (original.payload, original.payload_type)
    with transaction.atomic():
        result = trigger(
            environment=original.environment,
            task_id=original.task_identifier,
            payload=data,
            payload_type=content_type,
            options=merged,
            actor=actor,
            source=source,
            request_key=f"replay:{original.id}:{request_key}" if request_key else None,
            now=now,
        )
        run = result.run
        created = run.replayed_from_id is None and not result.is_cached
        if created:
            run.replayed_from = original
            run.save(update_fields=["replayed_from"])
            why = _because(f"replay of {original.id}", reason)
            record(run, run.status, run.status, actor=actor, reason=why, now=run.created_at)
            if audited:
                said = reason if audit_reason is None else audit_reason
                entry = {"replay": run.id, "changed": changed or []}
                _audit(original, "run.replay", actor=actor, user=user, reason=said, now=run.created_at, data=entry)
    return Replay(run=run, created=created)


@dataclass(frozen=True)
class Replay:
    """What replay_run answers: the run, and whether this call created it (False: an earlier
    request with the same key, or a run holding the idempotency key, answered instead)."""

    run: Run
    created: bool


def _audit(
    run: Run, action: str, *, actor: Actor, user: Any, reason: str, now: datetime, data: dict[str, Any] | None = None
) -> None:
    audit(
        action=action,
        target=run.id,
        actor=actor,
        now=now,
        environment_id=run.environment_id,
        user=user,
        reason=reason,
        data=data,
    )


REASON_LENGTH = 512  # RunEvent.reason


def _because(what: str, reason: str) -> str:
    """A timeline reason: what happened, then why (when a reason was given)."""
    return _cut(f"{what}: {reason}" if reason else what)


def _cut(text: str) -> str:
    return text if len(text) <= REASON_LENGTH else text[: REASON_LENGTH - 1] + "…"
