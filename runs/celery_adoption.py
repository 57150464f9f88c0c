"""Plain Celery tasks as runs, on the publishing side: `.delay()` and `.apply_async()` of a task
RUNYARD_CELERY_TASKS adopts create a run instead of a Celery message.

    # settings.py
    RUNYARD_CELERY_TASKS = "*"            # every task; or ["billing.*", "emails.send"]
    RUNYARD_CELERY_ENVIRONMENT = "dev"    # the environment their runs belong to

    add.apply_async((2, 3), countdown=60)  # a DELAYED run of task "example.add" on the dashboard

The run is one INSERT in the caller's database transaction (a rolled-back transaction
publishes nothing). The engine then admits it like any run and sends it to the Celery queue
the app's router chose, where the task's workers take it (runs.celery_serving runs it).

Mapping: args and kwargs are the payload {"args": [...], "kwargs": {...}}; countdown and eta
delay the run; expires is the moment it expires unless started (counted from publishing, as
Celery does); priority is seconds of advantage in its queue (a higher number goes first);
headers={"runyard_tags": [...]} are its tags; task_id is its celery id (AsyncResult,
revoke). Published from a run's own code, it is that run's child.

A publish Runyard cannot keep as it was meant goes to Celery unchanged: callbacks, chords,
groups and chains (link=, link_error=, chord=, group_id=, chain=), arguments that are not
JSON, or a database that cannot be written (logged: the task still runs, outside the ledger).

Revoking the celery id of a run cancels the run, stopping it if it executes.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from celery import Celery
from celery.app.control import Control
from celery.utils import uuid
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from runs import context, engine
from runs.celery_serving import adopts, routed_queue
from runs.models import Environment, Run, TaskDefinition
from runs.options import parse_trigger_options
from runs.states import FINAL_STATUSES

log = logging.getLogger(__name__)

ACTOR = "celery"
TAGS_HEADER = "runyard_tags"
# Options that tie the publish to others (callbacks, canvas): kept by Celery, not by a run.
CANVAS_OPTIONS = ("link", "link_error", "chord", "group_id", "chain")

_original_send_task: Callable[..., Any] | None = None
_original_revoke: Callable[..., Any] | None = None
_environments: dict[str, Environment] = {}
_definitions: dict[str, TaskDefinition] = {}


class Unadoptable(Exception):
    """This publish stays a plain Celery message."""


def install() -> None:
    """Route publishes of adopted tasks to runs (idempotent); a no-op unless the setting is on."""
    global _original_send_task, _original_revoke
    if _original_send_task is not None or not settings.RUNYARD_CELERY_TASKS:
        return
    _original_send_task, _original_revoke = Celery.send_task, Control.revoke
    setattr(Celery, "send_task", send_task)  # noqa: B010 - typed stubs refuse the assignment
    setattr(Control, "revoke", revoke)  # noqa: B010


def send_task(app: Celery, name: str, args: Any = None, kwargs: Any = None, *rest: Any, **options: Any) -> Any:
    """Celery.send_task, creating a run for an adopted task (Task.apply_async calls it)."""
    assert _original_send_task is not None
    if rest or not adopts(name):
        return _original_send_task(app, name, args, kwargs, *rest, **options)
    task_id = options.get("task_id") or uuid()
    running = context.current()
    if running is not None and task_id == running.request_id:
        # self.retry() sending the executing task again: its run is attempted again instead
        # (runs.celery_serving), with the countdown the Retry it raises carries.
        return _result(app, task_id, options)
    try:
        publish(app, name, args, kwargs, {**options, "task_id": task_id})
    except Unadoptable as why:
        log.debug("%s goes to Celery as it is: %s", name, why)
        return _original_send_task(app, name, args, kwargs, **options)
    except DatabaseError:
        log.warning("could not record %s as a run; sent to Celery outside the ledger", name, exc_info=True)
        return _original_send_task(app, name, args, kwargs, **{**options, "task_id": task_id})
    return _result(app, task_id, options)


def publish(app: Celery, name: str, args: Any, kwargs: Any, options: dict[str, Any]) -> Run:
    """The run of one publish. Raises Unadoptable, or OptionError for tags Runyard refuses."""
    if any(options.get(option) for option in CANVAS_OPTIONS):
        raise Unadoptable("it has callbacks or belongs to a canvas")
    payload = {"args": list(args or ()), "kwargs": dict(kwargs or {})}
    try:
        text = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise Unadoptable(f"its arguments are not JSON ({exc})") from exc
    now = timezone.now()
    trigger_options = options_of(app, name, args, kwargs, options, now)
    result = engine.trigger(
        environment=environment(),
        task_id=name,
        payload=text,
        options=trigger_options,
        actor=ACTOR,
        source="celery",
        now=now,
        definitions={name: _definition(name)},
    )
    return result.run


def options_of(
    app: Celery, name: str, args: Any, kwargs: Any, options: dict[str, Any], now: datetime
) -> engine.TriggerOptions:
    """The run's options from apply_async's."""
    headers = options.get("headers") or {}
    parsed = parse_trigger_options({"tags": headers[TAGS_HEADER]}) if TAGS_HEADER in headers else None
    delay_until = _moment(options.get("eta"), now) or _after(options.get("countdown"), now)
    expires_at = _moment(options.get("expires"), now) or _after(options.get("expires"), now)
    queue = routed_queue(app, name, options, args, kwargs)
    priority = options.get("priority")
    ctx = context.current()
    raw = {
        key: _shown(options[key])
        for key in ("countdown", "eta", "expires", "priority", "queue")
        if options.get(key) is not None
    }
    starts = max(delay_until or now, now)
    return engine.TriggerOptions(
        delay_until=delay_until,
        ttl=max(math.ceil((expires_at - starts).total_seconds()), 1) if expires_at else 0,
        expires_at=expires_at,
        priority=float(priority) if isinstance(priority, int | float) and priority > 0 else 0.0,
        tags=parsed.tags if parsed else [],
        parent_run_id=ctx.run_id if ctx else None,
        celery_id=str(options["task_id"]),
        celery_queue=queue,
        async_commit=True,
        raw={**raw, "celeryTaskId": str(options["task_id"])},
    )


def _moment(value: Any, now: datetime) -> datetime | None:
    """An eta or expires given as a datetime (or ISO 8601 text); naive is the app's time zone."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise Unadoptable(f"{value!r} is not a date and time") from exc
    if not isinstance(value, datetime):
        return None
    if timezone.is_naive(value):
        value = timezone.make_aware(value, timezone.get_default_timezone())
    return value


def _after(seconds: Any, now: datetime) -> datetime | None:
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and math.isfinite(seconds):
        return now + timedelta(seconds=seconds)
    return None


def _shown(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def environment() -> Environment:
    """RUNYARD_CELERY_ENVIRONMENT's environment, read once per process."""
    slug = settings.RUNYARD_CELERY_ENVIRONMENT
    found = _environments.get(slug)
    if found is None:
        found = Environment.objects.filter(slug=slug).first()
        if found is None:
            raise Unadoptable(f"RUNYARD_CELERY_ENVIRONMENT names no environment: {slug!r}")
        _environments[slug] = found
    return found


def _definition(name: str) -> TaskDefinition | None:
    """The task's definition once a worker recorded it (kept: a plain Celery task's never
    changes what a new run takes from it); until then read at each publish."""
    found = _definitions.get(name)
    if found is None:
        found = TaskDefinition.objects.filter(task_id=name).first()
        if found is not None:
            _definitions[name] = found
    return found


def _result(app: Celery, task_id: str, options: dict[str, Any]) -> Any:
    result = (options.get("result_cls") or app.AsyncResult)(task_id)
    result.ignored = options.get("ignore_result")
    return result


def revoke(control: Control, task_id: Any, *rest: Any, **kw: Any) -> Any:
    """Control.revoke: the runs of these celery ids are canceled; other ids go to Celery."""
    assert _original_revoke is not None
    ids = [task_id] if isinstance(task_id, str) else list(task_id or [])
    runs = dict(Run.objects.filter(celery_id__in=ids).exclude(status__in=FINAL_STATUSES).values_list("celery_id", "id"))
    for run_id in runs.values():
        engine.cancel_run(run_id=run_id, actor=ACTOR, reason="revoked through Celery")
    rest_ids = [i for i in ids if i not in runs]
    if not rest_ids:
        return None
    return _original_revoke(control, rest_ids, *rest, **kw)
