"""Pausing a task or the key's whole environment: Runyard's own endpoints (the official SDK has
queues.pause only). Thin views over runs.engine.pauses, which audits each action."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.http import JsonResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from api.auth import actor
from api.errors import ApiError
from api.http import ApiRequest, api_view, read_json_object
from runs import engine
from runs.engine import PAUSE_REASON_LENGTH
from runs.holds import environment_pause_item, task_pause_item


@api_view("GET", "POST")
def task_pause(request: ApiRequest, task_id: str) -> JsonResponse:
    """GET: the task's pause in the key's environment. POST {reason?, resumeAt?}: pause it."""
    environment_id = request.api_key.environment_id
    if request.method == "POST":
        reason, resume_at = _pause_body(request)
        who = actor(request.api_key)
        try:
            engine.pause_task(
                environment_id=environment_id, task_id=task_id, actor=who, reason=reason, resume_at=resume_at
            )
        except engine.TaskNotFound as exc:
            raise ApiError(404, str(exc)) from exc
    elif not engine.task_known(environment_id=environment_id, task_id=task_id):
        raise ApiError(404, f"No task {task_id!r} in this environment")
    return JsonResponse(task_pause_item(environment_id, task_id, timezone.now()))


@api_view("POST")
def task_resume(request: ApiRequest, task_id: str) -> JsonResponse:
    """POST {reason?}: admit the task's runs in the key's environment again."""
    environment_id = request.api_key.environment_id
    reason = _reason(read_json_object(request))
    try:
        engine.resume_task(environment_id=environment_id, task_id=task_id, actor=actor(request.api_key), reason=reason)
    except engine.TaskNotFound as exc:
        raise ApiError(404, str(exc)) from exc
    return JsonResponse(task_pause_item(environment_id, task_id, timezone.now()))


@api_view("GET", "POST")
def environment_pause(request: ApiRequest) -> JsonResponse:
    """GET: the key's environment's pause. POST {reason?, resumeAt?}: pause the environment."""
    environment = request.api_key.environment
    if request.method == "POST":
        reason, resume_at = _pause_body(request)
        environment = engine.pause_environment(
            environment_id=environment.pk, actor=actor(request.api_key), reason=reason, resume_at=resume_at
        )
    return JsonResponse(environment_pause_item(environment, timezone.now()))


@api_view("POST")
def environment_resume(request: ApiRequest) -> JsonResponse:
    """POST {reason?}: admit the key's environment's runs again."""
    reason = _reason(read_json_object(request))
    environment_id = request.api_key.environment_id
    environment = engine.resume_environment(environment_id=environment_id, actor=actor(request.api_key), reason=reason)
    return JsonResponse(environment_pause_item(environment, timezone.now()))


def _pause_body(request: ApiRequest) -> tuple[str, datetime | None]:
    body = read_json_object(request)
    return _reason(body), _resume_at(body.get("resumeAt"), timezone.now())


def _reason(body: dict[str, Any]) -> str:
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        raise ApiError(400, "reason must be a string", "reason")
    if len(reason) > PAUSE_REASON_LENGTH:
        raise ApiError(422, f"reason must be at most {PAUSE_REASON_LENGTH} characters ({len(reason)} given)", "reason")
    return reason


def _resume_at(value: Any, now: datetime) -> datetime | None:
    """An ISO 8601 date-time in the future (without an offset: UTC), or None."""
    if value is None:
        return None
    try:
        parsed = parse_datetime(value) if isinstance(value, str) else None
    except ValueError:  # the shape of a date-time with an impossible value, e.g. month 13
        parsed = None
    if parsed is None:
        raise ApiError(400, "resumeAt must be an ISO 8601 date-time, e.g. 2026-12-24T09:00:00Z", "resumeAt")
    parsed = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    if parsed <= now:
        raise ApiError(422, "resumeAt must be in the future", "resumeAt")
    return parsed
