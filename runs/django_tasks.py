"""A backend for Django's tasks framework (the `django-tasks` package): tasks become Runyard runs.

    # settings.py
    TASKS = {"default": {"BACKEND": "runs.django_tasks.RunyardBackend", "OPTIONS": {"ENVIRONMENT": "dev"}}}

    # myapp/tasks.py  (list "myapp.tasks" in RUNYARD_TASK_MODULES so workers import it)
    from django_tasks import task

    @task
    def add(a, b):
        return a + b

    result = add.enqueue(1, 2)   # a QUEUED run of task "myapp.tasks.add", on the dashboard
    add.get_result(result.id)    # SUCCESSFUL with return_value 3 once a worker ran it

A django-tasks task is a Runyard task whose id is the function's import path. Decorating
it registers it (the backend's validate_task runs when the decorator does), so a worker
that imports the module serves it like any @runs.registry.task. The run's payload is
{"args": [...], "kwargs": {...}}; the function's return value is the run's output.

Mapping: run_after is the run's delay; a priority above 0 is that many seconds of
queue-time advantage (Runyard has no negative priority: 0 and below are 0); the task's
queue_name is the Runyard queue ("default" means the task's own queue, task/<id>).
Statuses: waiting to start (PENDING_VERSION, DELAYED, QUEUED, DEQUEUED) is READY,
EXECUTING and WAITING are RUNNING, COMPLETED is SUCCESSFUL, every other final status is
FAILED. Retries follow Runyard's defaults (3 attempts); a task error lists its exception
class as builtins.<Name> for built-in exceptions and <Name> otherwise.
"""

from __future__ import annotations

import builtins
import json
from typing import Any, TypeVar

from django.utils import timezone
from django.utils.module_loading import import_string
from django_tasks import DEFAULT_TASK_QUEUE_NAME, TaskContext, TaskResult, TaskResultStatus
from django_tasks.backends.base import BaseTaskBackend
from django_tasks.base import Task, TaskError
from django_tasks.exceptions import InvalidTaskError, TaskResultDoesNotExist
from django_tasks.signals import task_enqueued
from django_tasks.utils import normalize_json
from typing_extensions import ParamSpec

from runs import context, engine, packets, registry
from runs.models import Environment, Run
from runs.options import OptionError, parse_trigger_options
from runs.states import RunStatus

T = TypeVar("T")
P = ParamSpec("P")

ACTOR = "django-tasks"
READY = {RunStatus.PENDING_VERSION, RunStatus.DELAYED, RunStatus.QUEUED, RunStatus.DEQUEUED}
RUNNING = {RunStatus.EXECUTING, RunStatus.WAITING}


class RunyardBackend(BaseTaskBackend):
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.environment = self.options.get("ENVIRONMENT", "dev")

    def validate_task(self, task: Task[Any, Any]) -> None:
        """Check the task, then register it as the Runyard task named by its import path."""
        super().validate_task(task)
        task_id = task.module_path
        if not registry.TASK_ID_RE.match(task_id):
            raise InvalidTaskError(
                f"{task_id!r} cannot be a Runyard task id: 1-128 characters of letters, digits and _-./:"
            )
        register(task)

    def enqueue(self, task: Task[P, T], args: P.args, kwargs: P.kwargs) -> TaskResult[T]:  # type: ignore[valid-type]
        """Create the run (QUEUED, or DELAYED until run_after). Raises InvalidTaskError."""
        self.validate_task(task)
        args, kwargs = normalize_json(list(args)), normalize_json(dict(kwargs))
        environment = Environment.objects.filter(slug=self.environment).first()
        if environment is None:
            raise InvalidTaskError(f"Runyard environment {self.environment!r} does not exist")
        options: dict[str, Any] = {}
        if task.run_after is not None:
            options["delay"] = task.run_after
        if task.priority > 0:
            options["priority"] = task.priority
        if task.queue_name != DEFAULT_TASK_QUEUE_NAME:
            options["queue"] = task.queue_name
        now = timezone.now()
        try:
            parsed = parse_trigger_options(options, now=now)
        except OptionError as exc:
            raise InvalidTaskError(exc.message) from exc
        created = engine.trigger(
            environment=environment,
            task_id=task.module_path,
            payload=json.dumps({"json": {"args": args, "kwargs": kwargs}}, separators=(",", ":")),
            payload_type=packets.SUPERJSON,
            options=parsed,
            actor=ACTOR,
            source="sdk",
            now=now,
        )
        result = task_result(task, created.run, self.alias)
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult[Any]:
        """The run as a TaskResult. Raises TaskResultDoesNotExist (also for runs of other tasks)."""
        run = Run.objects.filter(pk=result_id).first()
        if run is None:
            raise TaskResultDoesNotExist(result_id)
        try:
            task = import_string(run.task_identifier)
        except ImportError as exc:
            raise TaskResultDoesNotExist(result_id) from exc
        if not isinstance(task, Task):
            raise TaskResultDoesNotExist(result_id)
        return task_result(task, run, self.alias)


def register(task: Task[Any, Any]) -> None:
    """Make the task a Runyard task: its id is its import path, its payload args and kwargs."""

    def call(payload: Any) -> Any:
        args, kwargs = payload.get("args", []), payload.get("kwargs", {})
        if task.takes_context:
            current = context.require(task.module_path)
            result = task.get_backend().get_result(current.run_id)
            return task.call(TaskContext(task_result=result), *args, **kwargs)
        return task.call(*args, **kwargs)

    # The dashboard shows where a task lives: the decorated function, not this wrapper.
    call.__module__, call.__qualname__ = task.func.__module__, task.func.__qualname__
    task_id = task.module_path
    queue = None if task.queue_name == DEFAULT_TASK_QUEUE_NAME else task.queue_name
    registry.REGISTRY[task_id] = registry.TaskSpec(
        id=task_id,
        fn=call,
        queue=queue or f"task/{task_id}",
        concurrency_limit=None,
        retry=registry.Retry(),
        max_duration=None,
        machine=registry.DEFAULT_MACHINE,
    )


def task_result(task: Task[Any, Any], run: Run, alias: str) -> TaskResult[Any]:
    """A django-tasks TaskResult describing the run as it is now."""
    payload = packets.load(run.payload, run.payload_type, environment_id=run.environment_id) or {}
    attempts = list(run.attempts.order_by("number").values_list("worker", "started_at"))
    result: TaskResult[Any] = TaskResult(
        task=task,
        id=run.id,
        status=status_of(run.status),
        enqueued_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        last_attempted_at=attempts[-1][1] if attempts else None,
        args=payload.get("args", []),
        kwargs=payload.get("kwargs", {}),
        backend=alias,
        errors=[task_error(run.error)] if run.error and run.status != RunStatus.COMPLETED else [],
        worker_ids=[worker for worker, _ in attempts],
    )
    if run.status == RunStatus.COMPLETED:
        output = packets.load(run.output, run.output_type, environment_id=run.environment_id)
        object.__setattr__(result, "_return_value", output)  # TaskResult is frozen; as django-tasks' own backends
    return result


def status_of(status: str) -> TaskResultStatus:
    if status in READY:
        return TaskResultStatus.READY
    if status in RUNNING:
        return TaskResultStatus.RUNNING
    if status == RunStatus.COMPLETED:
        return TaskResultStatus.SUCCESSFUL
    return TaskResultStatus.FAILED


def task_error(error: Any) -> TaskError:
    name = str(error.get("name") or "Exception") if isinstance(error, dict) else "Exception"
    path = f"builtins.{name}" if isinstance(getattr(builtins, name, None), type) else name
    trace = str(error.get("stackTrace") or error.get("message") or "") if isinstance(error, dict) else str(error)
    return TaskError(exception_class_path=path, traceback=trace)
