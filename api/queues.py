"""queues.list, retrieve, pause/resume and the concurrency override, as the official SDK calls
them: thin views over runs.engine.queues, which audits each action."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count
from django.http import JsonResponse
from django.utils import timezone

from api.auth import actor
from api.errors import ApiError
from api.http import ApiRequest, api_view, read_json_object
from runs import engine
from runs.engine.queues import MAX_LIMIT, QUEUE_KINDS, task_queue_name
from runs.models import Queue, Run
from runs.states import ACTIVE_STATUSES, RunStatus

TASK_PREFIX = task_queue_name("")
DEFAULT_PER_PAGE = 10
MAX_PER_PAGE = 100
MAX_PAGE = 1_000_000  # keeps the offset within what PostgreSQL takes
PAUSE_ACTIONS = ("pause", "resume")


@api_view("GET")
def list_queues(request: ApiRequest) -> JsonResponse:
    """queues.list: the environment's queues by name, an offset/limit page at a time."""
    page = _positive(request.GET.get("page"), "page", default=1, most=MAX_PAGE)
    per_page = _positive(request.GET.get("perPage"), "perPage", default=DEFAULT_PER_PAGE, most=MAX_PER_PAGE)
    queues = Queue.objects.filter(environment=request.api_key.environment).order_by("name", "id")
    count = queues.count()
    rows = list(queues[(page - 1) * per_page : page * per_page])
    pagination = {"currentPage": page, "totalPages": -(-count // per_page), "count": count}
    return JsonResponse({"data": _items(rows, timezone.now()), "pagination": pagination})


@api_view("GET")
def retrieve_queue(request: ApiRequest, queue: str) -> JsonResponse:
    """queues.retrieve by id (`queue_...`), by task id (type=task) or by name (type=custom)."""
    found = _find(request, queue, request.GET.get("type"))
    return JsonResponse(_items([found], timezone.now())[0])


@api_view("POST")
def pause_queue(request: ApiRequest, queue: str) -> JsonResponse:
    """queues.pause and queues.resume: {type, action}."""
    body = read_json_object(request)
    found = _find(request, queue, body.get("type"))
    action = body.get("action")
    if action not in PAUSE_ACTIONS:
        raise ApiError(400, 'action must be "pause" or "resume"', "action")
    who = actor(request.api_key)
    if action == "pause":
        changed = engine.pause_queue(queue_id=found.pk, actor=who, reason="paused through the API")
    else:
        changed = engine.resume_queue(queue_id=found.pk, actor=who, reason="resumed through the API")
    return JsonResponse(_items([changed], timezone.now())[0])


@api_view("POST")
def override_limit(request: ApiRequest, queue: str) -> JsonResponse:
    """queues.overrideConcurrencyLimit: {type, concurrencyLimit}, until reset."""
    body = read_json_object(request)
    found = _find(request, queue, body.get("type"))
    limit = body.get("concurrencyLimit")
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise ApiError(400, "concurrencyLimit is required and must be an integer", "concurrencyLimit")
    if not 0 <= limit <= MAX_LIMIT:
        raise ApiError(422, f"concurrencyLimit must be between 0 and {MAX_LIMIT}", "concurrencyLimit")
    reason = "overridden through the API"
    changed = engine.override_queue_limit(queue_id=found.pk, limit=limit, actor=actor(request.api_key), reason=reason)
    return JsonResponse(_items([changed], timezone.now())[0])


@api_view("POST")
def reset_limit(request: ApiRequest, queue: str) -> JsonResponse:
    """queues.resetConcurrencyLimit: {type}, back to the task's own limit."""
    body = read_json_object(request)
    found = _find(request, queue, body.get("type"))
    reason = "reset through the API"
    changed = engine.reset_queue_limit(queue_id=found.pk, actor=actor(request.api_key), reason=reason)
    return JsonResponse(_items([changed], timezone.now())[0])


def _find(request: ApiRequest, ref: str, kind: Any) -> Queue:
    kind = "id" if kind is None else kind
    if kind not in QUEUE_KINDS:
        raise ApiError(400, 'type must be "id", "task" or "custom"', "type")
    # The SDK writes a "/" of a name as %2F before encoding the whole name, so it arrives here
    # as %2F: a task queue's "task/<id>", a custom name with a slash.
    name = ref.replace("%2F", "/").replace("%2f", "/")
    try:
        return engine.find_queue(environment_id=request.api_key.environment_id, ref=name, kind=kind)
    except engine.QueueNotFound as exc:
        raise ApiError(404, str(exc)) from exc


def _positive(value: str | None, field: str, *, default: int, most: int) -> int:
    if value is None or value == "":
        return default
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise ApiError(400, f"{field} must be a positive integer", field)
    if int(value) > most:
        raise ApiError(400, f"{field} must be at most {most}", field)
    return int(value)


def _items(queues: list[Queue], now: datetime) -> list[dict[str, Any]]:
    """QueueItem (V1) of each queue, its run counts read in one query."""
    counts: dict[tuple[str, str], int] = {}
    if queues:
        rows = (
            Run.objects.filter(
                environment_id=queues[0].environment_id,
                queue__in=[queue.name for queue in queues],
                status__in=[RunStatus.QUEUED, *ACTIVE_STATUSES],
            )
            .values_list("queue", "status")
            .annotate(n=Count("id"))
            .order_by()
        )
        counts = {(name, status): n for name, status, n in rows}
    return [_item(queue, now, counts) for queue in queues]


def _item(queue: Queue, now: datetime, counts: dict[tuple[str, str], int]) -> dict[str, Any]:
    is_task = queue.name.startswith(TASK_PREFIX)
    override = queue.override_as_of(now)
    by = queue.limit_overridden_by if override is not None else ""
    return {
        "id": queue.public_id,
        "name": queue.name.removeprefix(TASK_PREFIX) if is_task else queue.name,
        "type": "task" if is_task else "custom",
        "running": sum(counts.get((queue.name, status), 0) for status in ACTIVE_STATUSES),
        "queued": counts.get((queue.name, RunStatus.QUEUED), 0),
        "paused": queue.paused_as_of(now),
        "concurrencyLimit": queue.limit_as_of(now),
        "concurrency": {
            "current": queue.limit_as_of(now),
            "base": queue.concurrency_limit,
            "override": override,
            "overriddenAt": queue.limit_overridden_at.isoformat()
            if override is not None and queue.limit_overridden_at
            else None,
            # The reference leaves it null for an override made through the API.
            "overriddenBy": by.removeprefix("user:") if by and not by.startswith("api:") else None,
        },
    }
