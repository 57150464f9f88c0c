"""The task registry: `@task` turns a Python function into a Runyard task.

    from runs.registry import task, Retry

    @task(id="send-email", queue="emails", concurrency_limit=5, retry=Retry(max_attempts=3))
    def send_email(payload):
        ...

Workers import the modules named by RUNYARD_TASK_MODULES and record what they serve in
the database (TaskDefinition), so the web process never imports task code.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings

MACHINES = ["micro", "small-1x", "small-2x", "medium-1x", "medium-2x", "large-1x", "large-2x"]
DEFAULT_MACHINE = "small-1x"
TASK_ID_RE = re.compile(r"^[a-zA-Z0-9_\-./:]{1,128}$")


@dataclass(frozen=True)
class Retry:
    """Exponential backoff: attempt n waits min(min_timeout * factor**(n-1), max_timeout)."""

    max_attempts: int = 3
    factor: float = 2.0
    min_timeout: float = 1.0  # seconds
    max_timeout: float = 60.0

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return float(min(self.min_timeout * self.factor ** (attempt - 1), self.max_timeout))


@dataclass(frozen=True)
class TaskSpec:
    id: str
    fn: Callable[..., Any] = field(repr=False)
    queue: str
    concurrency_limit: int | None
    retry: Retry
    max_duration: int | None
    machine: str

    @property
    def module(self) -> str:
        return f"{self.fn.__module__}.{self.fn.__qualname__}"

    def call(self, payload: Any) -> Any:
        """Call the function with the payload (functions with no parameter get none)."""
        if inspect.signature(self.fn).parameters:
            return self.fn(payload)
        return self.fn()


REGISTRY: dict[str, TaskSpec] = {}


def task(
    *,
    id: str,
    queue: str | None = None,
    concurrency_limit: int | None = None,
    retry: Retry | None = None,
    max_duration: int | None = None,
    machine: str = DEFAULT_MACHINE,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as task `id` with its defaults."""
    if not TASK_ID_RE.match(id):
        raise ValueError(f"task id {id!r} must be 1-128 characters of letters, digits and _-./:")
    if machine not in MACHINES:
        raise ValueError(f"machine {machine!r} is not one of {', '.join(MACHINES)}")
    if concurrency_limit is not None and concurrency_limit < 0:
        raise ValueError("concurrency_limit must be 0 or more")

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        existing = REGISTRY.get(id)
        if existing is not None and existing.module != f"{fn.__module__}.{fn.__qualname__}":
            raise ValueError(f"task id {id!r} is already registered by {existing.module}")
        REGISTRY[id] = TaskSpec(
            id=id,
            fn=fn,
            queue=queue or f"task/{id}",
            concurrency_limit=concurrency_limit,
            retry=retry or Retry(),
            max_duration=max_duration,
            machine=machine,
        )
        fn.task_id = id  # type: ignore[attr-defined]  # lets batch.trigger_by_task name the task
        return fn

    return register


def get(task_id: str) -> TaskSpec | None:
    return REGISTRY.get(task_id)


def load_task_modules() -> list[str]:
    """Import every module of RUNYARD_TASK_MODULES; returns the task ids now registered."""
    for name in settings.RUNYARD_TASK_MODULES:
        importlib.import_module(name)
    return sorted(REGISTRY)


def definition_fields(spec: TaskSpec) -> dict[str, Any]:
    """The columns of a TaskDefinition row for this spec."""
    return {
        "queue": spec.queue,
        "concurrency_limit": spec.concurrency_limit,
        "max_attempts": spec.retry.max_attempts,
        "retry": asdict(spec.retry),
        "max_duration": spec.max_duration,
        "machine": spec.machine,
        "module": spec.module,
    }


def celery_queue(machine: str, region: str = "") -> str:
    """The Celery queue that workers for this machine preset (and region) consume.

    Only regions listed in RUNYARD_REGIONS get their own queues (their workers consume
    `runyard.<machine>.<region>`); any other region is recorded on the run but runs on the
    shared machine queue, so a run never waits for a worker that does not exist.
    """
    if region and region in settings.RUNYARD_REGIONS:
        return f"runyard.{machine}.{region}"
    return f"runyard.{machine}"


def worker_queues(region: str = "") -> list[str]:
    """The Celery queues a worker consumes: every machine preset, of one region or none."""
    return [celery_queue(machine, region) for machine in MACHINES]
