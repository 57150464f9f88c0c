"""Plain Celery tasks served as Runyard tasks, on the worker's side.

A worker serves every task of its Celery app that RUNYARD_CELERY_TASKS adopts (see
runs.celery_adoption for the publishing side) as a Runyard task of the same name: it is
recorded with the worker's other tasks (TaskDefinition: its signature, its Celery queue),
and an attempt of its run calls the task's own code with the run's args and kwargs, inside
a Celery request as a worker would give it (self.request.id, .retries, .args, .kwargs), so
`self.retry()` and `autoretry_for` work unchanged: they end the attempt, and the run is
attempted again when they asked. Any other error fails the run (Celery retries only when
told to); a lost worker crashes it.

Imports nothing of the engine: the worker calls into it.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import cache
from typing import Any

from celery import Celery, Task
from celery.exceptions import Retry
from django.conf import settings
from django.utils import timezone

from runs import context, registry

# Names Celery itself uses (chord_unlock, backend_cleanup, ...) and Runyard's own task.
NEVER = ("celery.", "runyard.")
MAX_NAME_LENGTH = 120  # the run's queue is task/<name>, at most 128 characters
# The payload of every plain Celery task: the trigger form offers its two fields.
ARGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "args": {"type": "array", "default": [], "description": "Positional arguments, as a JSON list"},
        "kwargs": {"type": "object", "default": {}, "description": "Keyword arguments, as a JSON object"},
    },
    "additionalProperties": False,
}


def patterns() -> tuple[str, ...]:
    """RUNYARD_CELERY_TASKS as patterns: "*" for every task, or names (shell-style wildcards)."""
    value = settings.RUNYARD_CELERY_TASKS
    if isinstance(value, str):
        value = [part for part in (p.strip() for p in value.split(",")) if part]
    return tuple(value)


@cache
def _adopts(name: str, chosen: tuple[str, ...]) -> bool:
    if not chosen or name.startswith(NEVER) or len(name) > MAX_NAME_LENGTH or not registry.TASK_ID_RE.match(name):
        return False
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in chosen)


def adopts(name: str) -> bool:
    """Whether a Celery task of this name is a Runyard run when published."""
    return _adopts(name, patterns())


def serve(app: Celery) -> list[str]:
    """Register the adopted tasks of `app` as Runyard tasks; returns their names."""
    served = []
    for name, celery_task in sorted(app.tasks.items()):
        if adopts(name) and name not in registry.REGISTRY:
            registry.REGISTRY[name] = spec_of(app, celery_task)
            served.append(name)
    return served


def spec_of(app: Celery, celery_task: Task) -> registry.TaskSpec:
    time_limit = celery_task.time_limit or app.conf.task_time_limit
    return registry.TaskSpec(
        id=celery_task.name,
        fn=CeleryCall(celery_task),
        queue=f"task/{celery_task.name}",
        concurrency_limit=None,
        # Celery retries only when the task says so (registry.RetryLater): never on its own.
        retry=registry.Retry(max_attempts=1),
        max_duration=max(int(time_limit), 1) if time_limit else None,
        machine=registry.DEFAULT_MACHINE,
        payload_schema=ARGS_SCHEMA,
        signature=signature(celery_task),
        module_path=f"{celery_task.run.__module__}.{celery_task.run.__qualname__}",
        celery_queue=routed_queue(app, celery_task.name, _own_options(celery_task), (), {}),
    )


def _own_options(celery_task: Task) -> dict[str, Any]:
    """The options the task declares (queue=...), as apply_async merges them."""
    return {key: value for key, value in getattr(celery_task, "_get_exec_options")().items() if value is not None}  # noqa: B009 - not in the stubs


def signature(celery_task: Task) -> str:
    """`add(a, b)`: the task's function as its callers call it (a bound task's self left out)."""
    try:
        try:
            parameters = inspect.signature(celery_task.run, eval_str=True).parameters
        except (NameError, SyntaxError, AttributeError):  # an annotation not importable here
            parameters = inspect.signature(celery_task.run).parameters
    except (TypeError, ValueError):
        return f"{celery_task.name}(...)"
    text = f"{celery_task.run.__name__}({', '.join(str(p) for p in parameters.values())})"
    return text if len(text) <= 512 else text[:511] + "…"


def routed_queue(app: Celery, name: str, options: dict[str, Any], args: Any, kwargs: Any) -> str:
    """The Celery queue `app`'s router sends this publish to (task_routes, queue=, defaults)."""
    route = app.amqp.router.route(dict(options), name, args, kwargs)
    queue = route.get("queue")
    found = getattr(queue, "name", queue)
    return str(found or app.conf.task_default_queue)


class CeleryCall:
    """The Runyard task function of a plain Celery task: payload {"args": [...], "kwargs": {...}}."""

    def __init__(self, celery_task: Task) -> None:
        self.task = celery_task

    def __call__(self, payload: Any) -> Any:
        args, kwargs = split(payload)
        ctx = context.require("run")  # the executor calls it inside the run's context
        with in_request(self.task, ctx.request_id, ctx.attempt, args, kwargs):
            try:
                return self.task.run(*args, **kwargs)
            except Retry as retry:
                raise registry.RetryLater(retry_delay(self.task, retry), retry.exc or retry) from retry


def split(payload: Any) -> tuple[list[Any], dict[str, Any]]:
    """The args and kwargs of a payload; a TypeError naming what is wrong otherwise."""
    if payload is None:
        return [], {}
    if not isinstance(payload, dict) or set(payload) - {"args", "kwargs"}:
        raise TypeError('the payload of a Celery task is {"args": [...], "kwargs": {...}}')
    args, kwargs = payload.get("args", []), payload.get("kwargs", {})
    if not isinstance(args, list):
        raise TypeError("the payload's args must be a list")
    if not isinstance(kwargs, dict):
        raise TypeError("the payload's kwargs must be an object")
    return args, kwargs


@contextmanager
def in_request(
    celery_task: Task, celery_id: str, attempt: int, args: Iterable[Any], kwargs: dict[str, Any]
) -> Iterator[None]:
    """What Celery's worker sets up around a task's code: its request, and the current task."""
    from celery._state import _task_stack  # type: ignore[attr-defined]  # the worker's own stack

    request = {
        "id": celery_id,
        "task": celery_task.name,
        "args": list(args),
        "kwargs": kwargs,
        "retries": attempt - 1,
        "called_directly": False,
        "is_eager": False,
        "delivery_info": {"routing_key": celery_task.name},
    }
    _task_stack.push(celery_task)
    celery_task.push_request(**request)
    try:
        yield
    finally:
        celery_task.pop_request()
        _task_stack.pop()


def retry_delay(celery_task: Task, retry: Retry) -> float:
    """Seconds until the attempt self.retry() asked for: its countdown, or its eta from now."""
    when = retry.when
    if isinstance(when, datetime):
        if timezone.is_naive(when):
            when = timezone.make_aware(when, timezone.get_default_timezone())
        return max((when - timezone.now()).total_seconds(), 0.0)
    if isinstance(when, int | float):
        return max(float(when), 0.0)
    return float(celery_task.default_retry_delay or 0)
