"""queues.list, retrieve, pause/resume and the concurrency override, as the official SDK calls
them: thin views over runs.engine.queues, which audits each action."""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse
from django.utils import timezone

from api.auth import actor
from api.errors import ApiError
from api.http import ApiRequest, api_view, positive_param, read_json_object
from runs import engine, queue_items
from runs.engine import MAX_QUEUE_LIMIT, QUEUE_KINDS
from runs.models import Queue

DEFAULT_PER_PAGE = 10
MAX_PER_PAGE = 100
MAX_PAGE = 1_000_000  # keeps the offset within what PostgreSQL takes
PAUSE_ACTIONS = ("pause", "resume")


@api_view("GET")
def list_queues(request: ApiRequest) -> JsonResponse:
    """queues.list: the environment's queues by name, an offset/limit page at a time."""
    page = positive_param(request.GET.get("page"), "page", default=1, most=MAX_PAGE)
    per_page = positive_param(request.GET.get("perPage"), "perPage", default=DEFAULT_PER_PAGE, most=MAX_PER_PAGE)
    queues = Queue.objects.filter(environment=request.api_key.environment).order_by("name", "id")
    count = queues.count()
    rows = list(queues[(page - 1) * per_page : page * per_page])
    pagination = {"currentPage": page, "totalPages": -(-count // per_page), "count": count}
    return JsonResponse({"data": queue_items.items(rows, timezone.now()), "pagination": pagination})


@api_view("GET")
def retrieve_queue(request: ApiRequest, queue: str) -> JsonResponse:
    """queues.retrieve by id (`queue_...`), by task id (type=task) or by name (type=custom)."""
    found = _find(request, queue, request.GET.get("type"))
    return JsonResponse(queue_items.items([found], timezone.now())[0])


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
    return JsonResponse(queue_items.items([changed], timezone.now())[0])


@api_view("POST")
def override_limit(request: ApiRequest, queue: str) -> JsonResponse:
    """queues.overrideConcurrencyLimit: {type, concurrencyLimit}, until reset."""
    body = read_json_object(request)
    found = _find(request, queue, body.get("type"))
    limit = body.get("concurrencyLimit")
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise ApiError(400, "concurrencyLimit is required and must be an integer", "concurrencyLimit")
    if not 0 <= limit <= MAX_QUEUE_LIMIT:
        raise ApiError(422, f"concurrencyLimit must be between 0 and {MAX_QUEUE_LIMIT}", "concurrencyLimit")
    reason = "overridden through the API"
    changed = engine.override_queue_limit(queue_id=found.pk, limit=limit, actor=actor(request.api_key), reason=reason)
    return JsonResponse(queue_items.items([changed], timezone.now())[0])


@api_view("POST")
def reset_limit(request: ApiRequest, queue: str) -> JsonResponse:
    """queues.resetConcurrencyLimit: {type}, back to the task's own limit."""
    body = read_json_object(request)
    found = _find(request, queue, body.get("type"))
    reason = "reset through the API"
    changed = engine.reset_queue_limit(queue_id=found.pk, actor=actor(request.api_key), reason=reason)
    return JsonResponse(queue_items.items([changed], timezone.now())[0])


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
