"""Workers: list and retrieve them, drain and undrain one; thin views over runs.engine.workers,
which audits each action.

A worker serves every environment, so draining it stops work in all of them: only a key of a
production environment may drain or undrain (any key may read).
"""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse
from django.utils import timezone

from api.auth import actor
from api.errors import ApiError
from api.http import ApiRequest, api_view, read_json_object
from runs import engine, worker_items
from runs.engine import WORKER_REASON_LENGTH
from runs.models import Worker

OPERATING_KIND = "PRODUCTION"


@api_view("GET")
def list_workers(request: ApiRequest) -> JsonResponse:
    """Every worker with a row (online, offline, or shut down while draining), by hostname."""
    now = timezone.now()
    return JsonResponse({"data": [worker_items.item(w, now) for w in Worker.objects.order_by("hostname")]})


@api_view("GET")
def retrieve_worker(request: ApiRequest, hostname: str) -> JsonResponse:
    found = Worker.objects.filter(hostname=_checked(hostname)).first()
    if found is None:
        raise ApiError(404, f"No worker {hostname!r}")
    return JsonResponse(worker_items.item(found, timezone.now()))


@api_view("POST")
def drain_worker(request: ApiRequest, hostname: str) -> JsonResponse:
    """{reason?}: the worker finishes its runs and starts no other."""
    return _operate(request, hostname, engine.drain_worker)


@api_view("POST")
def undrain_worker(request: ApiRequest, hostname: str) -> JsonResponse:
    """{reason?}: the worker takes runs again."""
    return _operate(request, hostname, engine.undrain_worker)


def _operate(request: ApiRequest, hostname: str, verb: Any) -> JsonResponse:
    if request.api_key.environment.kind != OPERATING_KIND:
        raise ApiError(403, "Draining a worker stops work in every environment: it takes a production key")
    body = read_json_object(request)
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        raise ApiError(400, "reason must be a string", "reason")
    if len(reason) > WORKER_REASON_LENGTH:
        raise ApiError(422, f"reason must be at most {WORKER_REASON_LENGTH} characters", "reason")
    try:
        changed = verb(hostname=_checked(hostname), actor=actor(request.api_key), reason=reason)
    except engine.WorkerNotFound as exc:
        raise ApiError(404, str(exc)) from exc
    return JsonResponse(worker_items.item(changed, timezone.now()))


def _checked(hostname: str) -> str:
    # PostgreSQL text cannot hold a NUL: refused here rather than failing in the database.
    if "\x00" in hostname:
        raise ApiError(400, "hostname must not contain a NUL character", "hostname")
    return hostname
