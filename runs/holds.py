"""Which operator pause holds a queued run: its environment's, its task's or its queue's.

Read by the dashboard (the runs list's marker, the run page's reason, the held counts) and
the API; written by nobody here (runs.engine.queues and runs.engine.pauses write the pauses).
The same precedence everywhere: an environment's pause, then a task's, then a queue's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Count, Q

from runs.models import Environment, Pausable, Queue, Run, TaskPause
from runs.states import RunStatus


def paused_now(now: datetime, prefix: str = "") -> Q:
    """Pausable rows (through `prefix`, e.g. "environment__") whose pause applies at `now`:
    Pausable.paused_as_of in SQL."""
    return Q(**{f"{prefix}paused_at__isnull": False}) & (
        Q(**{f"{prefix}resume_at__isnull": True}) | Q(**{f"{prefix}resume_at__gt": now})
    )


@dataclass(frozen=True)
class Hold:
    """One pause in force: what it pauses (kind and name), who, since when, why, until when."""

    kind: str  # "environment", "task" or "queue"
    name: str  # the environment's slug, the task's id or the queue's name
    by: str
    since: datetime
    reason: str
    resume_at: datetime | None

    @classmethod
    def of(cls, kind: str, name: str, row: Pausable) -> Hold:
        assert row.paused_at is not None
        return cls(kind, name, row.paused_by, row.paused_at, row.pause_reason, row.resume_at)


@dataclass
class Holds:
    """The pauses in force in some environments at one moment, to look runs up in."""

    environments: dict[int, Hold] = field(default_factory=dict)
    tasks: dict[tuple[int, str], Hold] = field(default_factory=dict)
    queues: dict[tuple[int, str], Hold] = field(default_factory=dict)

    def of(self, run: Run) -> Hold | None:
        """The pause holding the run, if it is QUEUED and one is in force."""
        if run.status != RunStatus.QUEUED:
            return None
        env = run.environment_id
        return (
            self.environments.get(env)
            or self.tasks.get((env, run.task_identifier))
            or self.queues.get((env, run.queue))
        )

    def mark(self, runs: Iterable[Run]) -> None:
        """Set each run's `hold` (None when nothing holds it), for the rows' paused marker."""
        for run in runs:
            run.hold = self.of(run)  # type: ignore[attr-defined]


def holds_in(environment_ids: Iterable[int], now: datetime) -> Holds:
    """The pauses in force at `now` in these environments: three queries on small tables."""
    ids = set(environment_ids)
    holds = Holds()
    if not ids:
        return holds
    for env in Environment.objects.filter(paused_now(now), pk__in=ids):
        holds.environments[env.pk] = Hold.of("environment", env.slug, env)
    for pause in TaskPause.objects.filter(paused_now(now), environment_id__in=ids):
        holds.tasks[pause.environment_id, pause.task_id] = Hold.of("task", pause.task_id, pause)
    for queue in Queue.objects.filter(paused_now(now), environment_id__in=ids):
        holds.queues[queue.environment_id, queue.name] = Hold.of("queue", queue.name, queue)
    return holds


def mark_held(runs: list[Run], now: datetime) -> None:
    """Holds.mark for runs of any environment; no query when none is QUEUED."""
    queued = {run.environment_id for run in runs if run.status == RunStatus.QUEUED}
    holds_in(queued, now).mark(runs)


def held_count(environment_id: int, hold: Hold) -> int:
    """How many QUEUED runs of the environment this pause holds (some may be held by others too)."""
    runs = Run.objects.queued().filter(environment_id=environment_id)
    if hold.kind == "task":
        runs = runs.filter(task_identifier=hold.name)
    elif hold.kind == "queue":
        runs = runs.filter(queue=hold.name)
    return runs.count()


def held_by_task(environment_id: int, task_ids: Iterable[str]) -> dict[str, int]:
    """QUEUED runs of the environment per task, for the tasks page's paused rows."""
    rows = (
        Run.objects.queued()
        .filter(environment_id=environment_id, task_identifier__in=list(task_ids))
        .values_list("task_identifier")
        .annotate(n=Count("id"))
        .order_by()
    )
    return dict(rows)


def held_by_queue(environment_id: int, names: Iterable[str]) -> dict[str, int]:
    """QUEUED runs of the environment per queue, for the queues page's paused rows."""
    rows = (
        Run.objects.queued()
        .filter(environment_id=environment_id, queue__in=list(names))
        .values_list("queue")
        .annotate(n=Count("id"))
        .order_by()
    )
    return dict(rows)


def pause_item(row: Pausable | None, hold: Hold | None, now: datetime, held: int) -> dict[str, Any]:
    """A task's or an environment's pause as the API and the Python SDK give it: `paused`, and
    while paused who (`pausedBy`, an engine actor), since when, why, until when (absent when it
    has no resume time) and how many QUEUED runs it holds. Optional fields are absent, never null."""
    if row is None or hold is None or not row.paused_as_of(now):
        return {"paused": False}
    item: dict[str, Any] = {
        "paused": True,
        "pausedAt": hold.since.isoformat(),
        "pausedBy": hold.by,
        "reason": hold.reason,
        "heldRuns": held,
    }
    if hold.resume_at is not None:
        item["resumeAt"] = hold.resume_at.isoformat()
    return item


def task_pause_item(environment_id: int, task_id: str, now: datetime) -> dict[str, Any]:
    """pause_item of a task in an environment (a task never paused is not paused)."""
    row = TaskPause.objects.filter(environment_id=environment_id, task_id=task_id).first()
    hold = Hold.of("task", task_id, row) if row is not None and row.paused_as_of(now) else None
    held = held_count(environment_id, hold) if hold is not None else 0
    return {"task": task_id, **pause_item(row, hold, now, held)}


def environment_pause_item(environment: Environment, now: datetime) -> dict[str, Any]:
    """pause_item of an environment."""
    hold = Hold.of("environment", environment.slug, environment) if environment.paused_as_of(now) else None
    held = held_count(environment.pk, hold) if hold is not None else 0
    return {"environment": environment.slug, **pause_item(environment, hold, now, held)}
