"""Tasks: the list of tasks workers serve, and a page to trigger one by hand.

Tasks come from the TaskDefinition rows workers record at start-up (the web process never
imports task code) plus any task registered in this process. Triggering goes through
runs.engine.trigger, like the API, with the form parsed into the API's options (see
dashboard.trigger_form).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from dashboard import trigger_form
from dashboard.action_forms import errors_of
from dashboard.audit import actor, audit
from dashboard.permissions import OPERATE, can_operate, can_view_payload, require
from dashboard.views import HtmxHttpRequest, current_environment
from runs import engine, packets, registry
from runs.holds import Hold, held_by_task, holds_in
from runs.models import Environment, Queue, Run, TaskDefinition, Worker

RECENT_RUNS = 10  # runs offered to start from
COUNT_CAP = 10_000  # runs in the last 24h are counted up to this, so a busy task stays cheap
DAY = timedelta(hours=24)
RUN_SUMMARY = ("id", "task_identifier", "status", "created_at")


@dataclass
class TaskInfo:
    """What the dashboard knows of a task: its defaults, who serves it and how it ran lately."""

    id: str
    queue: str
    concurrency_limit: int | None
    max_attempts: int
    max_duration: int | None
    machine: str
    module: str = ""
    payload_schema: dict[str, Any] | None = None
    signature: str = ""  # a plain Celery task's, e.g. add(a, b)
    celery_queue: str = ""  # a plain Celery task's queue
    recorded: bool = True  # a worker recorded it; False: registered in this process only
    workers: list[dict[str, Any]] = field(default_factory=list)  # {"hostname", "online"}
    last_run: Run | None = None
    runs_24h: int = 0
    pause: Hold | None = None  # an operator's pause of it in the page's environment
    held: int = 0  # QUEUED runs of it in that environment, while paused

    @property
    def online_workers(self) -> int:
        return sum(1 for worker in self.workers if worker["online"])

    @property
    def runs_24h_capped(self) -> bool:
        return self.runs_24h > COUNT_CAP


def tasks_list(request: HttpRequest) -> HttpResponse:
    return render_tasks(request, current_environment(request))


def render_tasks(
    request: HttpRequest,
    environment: Environment,
    *,
    errors: dict[str, str] | None = None,
    failed: str = "",
    status: int = 200,
) -> HttpResponse:
    """The tasks page; with the errors of a pause form (`failed`: its task) beside it."""
    now = timezone.now()
    tasks = sorted(known_tasks().values(), key=lambda task: task.id)
    add_live_facts(tasks, environment, now)
    add_pauses(tasks, environment, now)
    context = {
        "environment": environment,
        "tasks": tasks,
        "count_cap": COUNT_CAP,
        "can_operate": can_operate(request.user),
        "errors": errors or {},
        "failed": failed,
    }
    return render(request, "dashboard/tasks.html", context, status=status)


def add_pauses(tasks: list[TaskInfo], environment: Environment, now: datetime) -> None:
    """Each paused task's pause and the QUEUED runs it holds: two queries for the page."""
    paused = holds_in([environment.pk], now).tasks
    held = held_by_task(environment.pk, [name for _, name in paused])
    for task in tasks:
        task.pause = paused.get((environment.pk, task.id))
        task.held = held.get(task.id, 0) if task.pause else 0


def task_trigger(request: HtmxHttpRequest, task_id: str) -> HttpResponse:
    environment = current_environment(request)
    task = known_tasks(task_id).get(task_id)
    if task is None:
        context = {"environment": environment, "task_id": task_id, "not_found": True}
        return render(request, "dashboard/task.html", context, status=404)
    if request.method == "POST":
        return submit(request, environment=environment, task=task)
    editor = editor_from_run(request, environment, task) or editor_context(task, errors={})
    if request.htmx and "from_run" in request.GET:
        return render(request, "dashboard/partials/task_editor.html", editor)
    form = trigger_form.TriggerForm(task_id=task.id, schema=task.payload_schema)
    return render_page(request, environment, task, editor, form=form)


@require(OPERATE)
def submit(request: HttpRequest, *, environment: Environment, task: TaskInfo) -> HttpResponse:
    """Trigger the task from the posted form: the new run's page, or the form again with errors (422)."""
    now = timezone.now()
    form = trigger_form.TriggerForm(request.POST, task_id=task.id, schema=task.payload_schema, now=now)
    if not form.is_valid():
        editor = editor_context(task, errors=errors_of(form), posted=request.POST)
        return render_page(request, environment, task, editor, form=form, status=422)
    data, payload_type = packets.encode(form.cleaned_data["payload"])
    data, payload_type = packets.offload(
        data, payload_type, environment_id=environment.pk, path=packets.new_path("payload", payload_type)
    )
    with transaction.atomic():
        result = engine.trigger(
            environment=environment,
            task_id=task.id,
            payload=data,
            payload_type=payload_type,
            options=form.cleaned_data["options"],
            actor=actor(request),
            source="dashboard",
            now=now,
        )
        audit_data = {"task": task.id, "options": form.cleaned_data["options"].raw, "cached": result.is_cached}
        audit(request, "run.trigger", environment=environment, target=result.run.id, data=audit_data)
    return HttpResponseRedirect(reverse("run", args=[result.run.id]))


def render_page(
    request: HttpRequest,
    environment: Environment,
    task: TaskInfo,
    editor: dict[str, Any],
    *,
    form: trigger_form.TriggerForm,
    status: int = 200,
) -> HttpResponse:
    now = timezone.now()
    add_live_facts([task], environment, now)
    add_pauses([task], environment, now)
    may_see_payloads = can_view_payload(request.user)
    errors = errors_of(form)
    context = {
        "environment": environment,
        "task": task,
        "options": trigger_form.option_fields(form),
        "form_error": errors.get("form", ""),
        "error_count": len(errors),
        "machines": registry.MACHINES,
        "regions": settings.RUNYARD_REGIONS,
        "recent_runs": recent_runs(environment, task.id) if may_see_payloads else [],
        "can_operate": can_operate(request.user),
        "count_cap": COUNT_CAP,
        **editor,
    }
    return render(request, "dashboard/task.html", context, status=status)


# --- the payload and metadata editor (partials/task_editor.html) ----------------------------


def editor_context(
    task: TaskInfo,
    *,
    errors: dict[str, str],
    posted: QueryDict | None = None,
    payload: Any = None,
    metadata: Any = None,
    source: Run | None = None,
) -> dict[str, Any]:
    """The editor as posted (after errors), filled from a run's payload, or with the defaults."""
    typed = bool(trigger_form.object_properties(task.payload_schema))
    if posted is not None:
        mode = posted.get("payload_mode") if posted.get("payload_mode") in trigger_form.MODES else "json"
        payload_text, metadata_text = posted.get("payload", ""), posted.get("metadata", "")
        values: QueryDict | dict[str, Any] | None = posted
    elif source is not None:
        mode = "fields" if typed and isinstance(payload, dict) else "json"
        payload_text, metadata_text = pretty(payload), pretty(metadata)
        values = payload if isinstance(payload, dict) else None
    else:
        mode = "fields" if typed else "json"
        defaults = default_payload(task.payload_schema) if typed else {}
        payload_text, metadata_text, values = pretty(defaults), "", None
    return {
        "task": task,
        "typed": typed,
        "mode": mode,
        "typed_fields": trigger_form.typed_fields(task.payload_schema, values, errors),
        "payload_text": payload_text,
        "metadata_text": metadata_text,
        "payload_error": errors.get("payload", ""),
        "metadata_error": errors.get("metadata", ""),
        "source_run": source,
        "source_error": "",
    }


def editor_from_run(request: HttpRequest, environment: Environment, task: TaskInfo) -> dict[str, Any] | None:
    """The editor filled from ?from_run=<id>, a run of this task (for users who may see payloads)."""
    run_id = request.GET.get("from_run", "").strip()
    if not run_id:
        return None
    run = Run.objects.filter(pk=run_id[:64], environment=environment, task_identifier=task.id).first()
    editor = editor_context(task, errors={})
    if run is None or not can_view_payload(request.user):
        return {**editor, "source_error": f"No run {run_id} of {task.id} in {environment.name} to start from."}
    try:
        payload = packets.load(run.payload, run.payload_type, environment_id=environment.pk)
    except packets.PacketError as exc:
        return {**editor, "source_error": f"The payload of {run.id} cannot be read: {exc}"}
    return editor_context(task, errors={}, payload=payload, metadata=run.metadata, source=run)


def default_payload(schema: dict[str, Any] | None) -> dict[str, Any]:
    props = trigger_form.object_properties(schema)
    return {name: prop["default"] for name, prop in props.items() if prop.get("default") is not None}


def pretty(value: Any) -> str:
    return "" if value is None else json.dumps(value, indent=2, ensure_ascii=False)


def recent_runs(environment: Environment, task_id: str) -> list[Run]:
    runs = Run.objects.filter(environment=environment, task_identifier=task_id)
    return list(runs.order_by("-created_at", "-id").only(*RUN_SUMMARY)[:RECENT_RUNS])


# --- what is known of tasks ----------------------------------------------------------------


def known_tasks(task_id: str | None = None) -> dict[str, TaskInfo]:
    """Tasks recorded by workers, plus those registered in this process (all, or just task_id)."""
    definitions = TaskDefinition.objects.all() if task_id is None else TaskDefinition.objects.filter(task_id=task_id)
    tasks = {d.task_id: from_definition(d) for d in definitions}
    specs = registry.REGISTRY.values() if task_id is None else filter(None, [registry.get(task_id)])
    for spec in specs:
        if spec.id in tasks:
            # Validation in-process uses the live spec; its schema is the freshest.
            tasks[spec.id].payload_schema = spec.payload_schema or tasks[spec.id].payload_schema
        else:
            tasks[spec.id] = from_spec(spec)
    return tasks


def from_definition(definition: TaskDefinition) -> TaskInfo:
    return TaskInfo(
        id=definition.task_id,
        queue=definition.queue,
        concurrency_limit=definition.concurrency_limit,
        max_attempts=definition.max_attempts,
        max_duration=definition.max_duration,
        machine=definition.machine,
        module=definition.module,
        payload_schema=definition.payload_schema,
        signature=definition.signature,
        celery_queue=definition.celery_queue,
    )


def from_spec(spec: registry.TaskSpec) -> TaskInfo:
    return TaskInfo(
        id=spec.id,
        queue=spec.queue,
        concurrency_limit=spec.concurrency_limit,
        max_attempts=spec.retry.max_attempts,
        max_duration=spec.max_duration,
        machine=spec.machine,
        module=spec.module,
        payload_schema=spec.payload_schema,
        signature=spec.signature,
        celery_queue=spec.celery_queue,
        recorded=False,
    )


def add_live_facts(tasks: list[TaskInfo], environment: Environment, now: datetime) -> None:
    """Queue limits of this environment, serving workers, last run and runs in the last 24h.

    One query for queues and one for workers; per task, two queries on the
    (environment, task, created_at) index, the count bounded by COUNT_CAP.
    """
    limits = dict(
        Queue.objects.filter(environment=environment, name__in=[t.queue for t in tasks]).values_list(
            "name", "concurrency_limit"
        )
    )
    online_since = now - timedelta(seconds=settings.RUNYARD_WORKER_TIMEOUT)
    workers = list(Worker.objects.filter(tasks__overlap=[t.id for t in tasks]).order_by("hostname"))
    for task in tasks:
        if task.queue in limits:
            task.concurrency_limit = limits[task.queue]
        task.workers = [
            {"hostname": w.hostname, "online": w.last_seen_at >= online_since} for w in workers if task.id in w.tasks
        ]
        runs = Run.objects.filter(environment=environment, task_identifier=task.id)
        task.last_run = runs.order_by("-created_at", "-id").only(*RUN_SUMMARY).first()
        recent = runs.filter(created_at__gte=now - DAY).values("id")[: COUNT_CAP + 1]
        task.runs_24h = recent.count() if task.last_run is not None else 0
