"""Batch endpoints of the wire protocol (reference 3.2, 3.3, 3.10).

A batch is created first, its whole runCount charged to the environment's batch rate limit
(runs.ratelimit); its items then arrive as NDJSON and are staged, deduplicated by index.
Once every item is there the engine seals the batch: all its runs at once, or none.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.utils import timezone

from api import jwt, packets
from api.auth import actor
from api.errors import ApiError, error_response
from api.http import ApiRequest, api_view, check_fields, read_json_object
from api.views import REQUEST_KEY_HEADER
from dashboard.bodysize import BATCH_STREAM
from runs import engine, ratelimit
from runs.models import Batch, BatchStatus, Environment, Run
from runs.options import OptionError, parse_task_id, parse_trigger_options
from runs.redis_client import redis_client
from runs.textcheck import deep_path, too_deep

NDJSON_TYPES = ("application/x-ndjson", "application/ndjson")
MAX_ITEM_BYTES = 3 * 1024 * 1024  # one streamed item (reference 4.7)
REQUEST_KEY_TTL = 24 * 3600  # seconds a create's request idempotency key is remembered
CLAIM_TTL = 60  # seconds a create in progress holds its request key, should its process die
CLAIMED = b"-"
# A 429 whose reset is further away than this tells the SDK not to retry (see _rate_limited).
SDK_RETRY_WITHIN_MS = 30_000
_INDEX_PREFIX = re.compile(rb'\s*\{\s*"index"\s*:\s*(\d{1,9})\b')


@dataclass(frozen=True)
class BatchRequest:
    """A validated CreateBatchRequestBody."""

    run_count: int
    task_identifiers: list[str]
    parent_run_id: str | None
    resume_parent: bool
    idempotency_key: str | None
    idempotency_key_user: str


class ItemError(engine.BatchItemError):
    """A streamed item the batch cannot take, with the status it is answered with; the engine
    aborts the whole batch."""

    def __init__(self, status: int, index: int, where: str, detail: str, task: str = "") -> None:
        super().__init__(index, detail, task_identifier=task, where=where)
        self.http_status = status


# --- POST /api/v3/batches -------------------------------------------------------------------


@api_view("POST")
def create_batch(request: ApiRequest) -> JsonResponse:
    """Batch phase 1 (reference 3.2): 202 with a new batch, 200 for a repeated batch key.

    A retry of the same request (same x-trigger-request-idempotency-key) answers the batch
    the first attempt created instead of creating another.
    """
    environment = request.api_key.environment
    spec = _batch_request(read_json_object(request), environment)
    request_key = _request_key(request)
    earlier = _claim_request_key(environment, request_key)
    if earlier is not None:
        return _created(earlier, environment, cached=False)
    created: str | None = None
    try:
        response, created = _create(environment, spec)
    finally:
        _settle_request_key(environment, request_key, created)
    return response


def _create(environment: Environment, spec: BatchRequest) -> tuple[JsonResponse, str | None]:
    """The create response and the id of the batch it made (None: nothing was created)."""
    try:
        batch, cached = engine.create_batch(
            environment=environment,
            run_count=spec.run_count,
            task_identifiers=spec.task_identifiers,
            idempotency_key=spec.idempotency_key,
            idempotency_key_user=spec.idempotency_key_user,
            parent_run_id=spec.parent_run_id,
            resume_parent=spec.resume_parent,
            charge=True,
        )
    except engine.BatchRateLimited as exc:
        if exc.decision is None:  # more than the bucket holds: waiting would not help
            raise ApiError(400, str(exc)) from exc
        return _rate_limited(exc.decision, spec.run_count), None
    return _created(batch, environment, cached=cached), None if cached else batch.id


def _batch_request(body: dict[str, Any], environment: Environment) -> BatchRequest:
    """Validate a create body. Raises ApiError(400) naming the field and the rule."""
    key = body.get("idempotencyKey")
    if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= 2048):
        raise ApiError(400, "idempotencyKey must be a string of 1 to 2048 characters")
    key_options = body.get("idempotencyKeyOptions")
    user_key = key_options.get("key") if isinstance(key_options, dict) else None
    resume = body.get("resumeParentOnCompletion", False)
    if not isinstance(resume, bool):
        raise ApiError(400, "resumeParentOnCompletion must be a boolean")
    return BatchRequest(
        run_count=_run_count(body.get("runCount")),
        task_identifiers=_task_identifiers(body.get("taskIdentifiers")),
        parent_run_id=_parent_run_id(body.get("parentRunId"), environment),
        resume_parent=resume,
        idempotency_key=key,
        idempotency_key_user=user_key[:2048] if isinstance(user_key, str) else "",
    )


def _run_count(value: Any) -> int:
    # No float() of an integer: JSON integers may have more digits than a float holds.
    whole = (isinstance(value, float) and value.is_integer()) or (isinstance(value, int) and _is_number(value))
    if not whole or value < 1:
        raise ApiError(400, "runCount must be an integer of at least 1")
    if value > engine.MAX_BATCH_ITEMS:
        raise ApiError(400, f"runCount {int(value):,} is over the limit of 1,000 items per batch")
    return int(value)


def _task_identifiers(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not value or not all(isinstance(task, str) for task in value):
        raise ApiError(400, "taskIdentifiers must be a non-empty list of task ids")
    try:
        return [parse_task_id(task) for task in value]
    except OptionError as exc:
        raise ApiError(400, f"taskIdentifiers: {exc.message}") from exc


def _parent_run_id(value: Any, environment: Environment) -> str | None:
    # Like a single trigger, a parent that is no run of this environment is ignored.
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, "parentRunId must be a run id")
    return value if Run.objects.filter(pk=value, environment=environment).exists() else None


def _created(batch: Batch, environment: Environment, *, cached: bool) -> JsonResponse:
    body = _present(
        {"id": batch.id, "runCount": batch.run_count, "isCached": cached, "idempotencyKey": _idempotency_key(batch)}
    )
    response = JsonResponse(body, status=200 if cached else 202)
    response["x-trigger-jwt"] = _batch_token(environment, batch.id)
    return response


def _rate_limited(decision: ratelimit.Decision, count: int) -> JsonResponse:
    """429 with the headers the SDK reads (reference 2.5, 2.6).

    x-ratelimit-reset is the epoch millisecond when this request's tokens are back; the SDK
    sleeps until then and retries, up to 4 times, before the caller sees BatchTriggerError.
    For a reset a few seconds away that quiet wait is the best outcome, so the natural retry
    is kept. When the reset is more than SDK_RETRY_WITHIN_MS away, `x-should-retry: false`
    makes the 429 reach the caller at once (with retryAfterMs) instead of a silent stall.
    """
    seconds = decision.retry_after_seconds
    response = error_response(
        429,
        f"Batch rate limit exceeded: {count:,} items asked for, {decision.remaining:,} of "
        f"{decision.limit:,} available; enough are back in {seconds}s",
    )
    response["x-ratelimit-limit"] = str(decision.limit)
    response["x-ratelimit-remaining"] = str(decision.remaining)
    response["x-ratelimit-reset"] = str(decision.reset_ms)
    response["retry-after"] = str(seconds)
    if decision.retry_after_ms > SDK_RETRY_WITHIN_MS:
        response["x-should-retry"] = "false"
    return response


def _batch_token(environment: Environment, batch_id: str) -> str:
    """The batch's public access token, scoped like the reference server's (section 5)."""
    issued = int(time.time())
    claims = {
        "sub": str(environment.pk),
        "pub": True,
        "scopes": [f"read:batch:{batch_id}"],
        "iss": jwt.ISSUER,
        "aud": jwt.AUDIENCE,
        "iat": issued,
        "exp": issued + jwt.LIFETIME,
    }
    return jwt.sign(claims, jwt.environment_secret(environment))


# Request idempotency lives in Redis for a day: a batch has no per-request row to hold it.


def _request_key(request: HttpRequest) -> str | None:
    key = request.headers.get(REQUEST_KEY_HEADER) or None
    if key is not None and len(key) > 128:
        raise ApiError(400, f"{REQUEST_KEY_HEADER} must be at most 128 characters")
    return key


def _claim_request_key(environment: Environment, key: str | None) -> Batch | None:
    """Hold `key` for this create, or the batch an earlier request with it created.

    Raises ApiError(503) while that earlier request is still being answered: the SDK
    retries 5xx with the same key and then finds its batch.
    """
    if key is None:
        return None
    redis, name = redis_client(), _request_key_name(environment, key)
    if redis.set(name, CLAIMED, nx=True, ex=CLAIM_TTL):
        return None
    batch_id = redis.get(name)
    if not isinstance(batch_id, bytes) or batch_id == CLAIMED:
        raise ApiError(503, "The same batch is being created by an earlier attempt of this request; retry")
    return Batch.objects.filter(pk=batch_id.decode(), environment=environment).first()


def _settle_request_key(environment: Environment, key: str | None, batch_id: str | None) -> None:
    """Remember the batch a request created; free its key when it created none."""
    if key is None:
        return
    redis, name = redis_client(), _request_key_name(environment, key)
    if batch_id is None:
        redis.delete(name)
    else:
        redis.set(name, batch_id, ex=REQUEST_KEY_TTL)


def _request_key_name(environment: Environment, key: str) -> str:
    return f"runyard:batch-request:{environment.pk}:{key}"


# --- POST /api/v3/batches/{batchId}/items ---------------------------------------------------


@api_view("POST", body=BATCH_STREAM)
def stream_batch_items(request: ApiRequest, batch_id: str) -> JsonResponse:
    """Batch phase 2 (reference 3.3): stage NDJSON items, deduplicated by index, and seal.

    The body is always read to its end, errors included: the SDK takes an answer that comes
    while it is still sending for a broken connection (EPIPE) and sends it all again.
    """
    try:
        return _stream_items(request, batch_id)
    finally:
        _drain(request)


def _stream_items(request: ApiRequest, batch_id: str) -> JsonResponse:
    if request.content_type not in NDJSON_TYPES:
        given = request.content_type or "none"
        raise ApiError(415, f"Content-Type must be application/x-ndjson or application/ndjson, not {given}")
    batch = _batch_of(request, batch_id)
    if batch.status == BatchStatus.ABORTED:
        reason = batch.errors[0].get("error", "") if batch.errors else ""
        raise ApiError(422, f"Batch {batch.id} was aborted: {reason}")
    if batch.status != BatchStatus.PENDING:
        return JsonResponse(_stream_result(batch, 0, 0))  # a retried stream of a sealed batch
    now = timezone.now()
    try:
        filled = engine.fill_batch(
            batch_id=batch.id,
            items=_items(request, request.api_key.environment, now),
            actor=actor(request.api_key),
            source="api",
            now=now,
        )
    except engine.BatchItemError as exc:  # the engine aborted the batch
        raise ApiError(exc.http_status if isinstance(exc, ItemError) else 422, str(exc)) from exc
    return JsonResponse(_stream_result(filled.batch, filled.accepted, filled.deduplicated))


def _items(request: HttpRequest, environment: Environment, now: datetime) -> Iterator[engine.StagedItem]:
    """The body's items, parsed one line at a time (never the whole body at once).

    Reading the request as a stream also keeps DATA_UPLOAD_MAX_MEMORY_SIZE, the bound of
    request.body, out of it: here each item is bounded (MAX_ITEM_BYTES), and the whole
    stream by RUNYARD_MAX_BATCH_STREAM_BYTES (dashboard.bodysize, before the view runs).
    """
    number = 0
    while line := request.readline(MAX_ITEM_BYTES + 1):
        number += 1
        if line.strip():
            yield _item(number, line, environment, now)


def _item(number: int, line: bytes, environment: Environment, now: datetime) -> engine.StagedItem:
    """One NDJSON line as a staged item. Raises ItemError naming the index and the rule.

    Its payload is accepted like a trigger's: a large one is offloaded to storage now, so
    only its path is staged; an application/store path must name an uploaded packet.
    """
    data = _decode_line(number, line)
    index = data.get("index") if isinstance(data, dict) else None
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise ItemError(422, number - 1, f"on line {number}", "must be an object whose index is an integer >= 0")
    task = data.get("task")
    try:
        if not isinstance(task, str):
            raise OptionError("task", "task must be a task id")
        parse_task_id(task)
        options = parse_trigger_options(data.get("options"), now=now)
        payload, payload_type = packets.accept_payload(data.get("payload"), options.raw.get("payloadType"), environment)
    except (OptionError, ApiError) as exc:
        status = 413 if exc.status == 413 else 422
        raise ItemError(status, index, str(index), exc.message, task if isinstance(task, str) else "") from exc
    return engine.StagedItem(index, task, payload, payload_type, options.raw)


def _decode_line(number: int, line: bytes) -> Any:
    if len(line.rstrip(b"\r\n")) > MAX_ITEM_BYTES:
        index, where = _index_hint(number, line)
        raise ItemError(413, index, where, "larger than the limit of 3 MiB per item")
    try:
        data = json.loads(line, parse_constant=_reject_constant)
        if isinstance(data, dict):
            check_fields(data)
    except RecursionError as exc:
        index, where = _index_hint(number, line)
        raise ItemError(
            400, index, where, too_deep(".".join(deep_path(line.decode("utf-8", "replace")))).message
        ) from exc
    except ApiError as exc:
        index, where = _index_hint(number, line)
        raise ItemError(400, index, where, exc.message) from exc
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError too
        index, where = _index_hint(number, line)
        raise ItemError(400, index, where, f"not valid JSON: {exc}") from exc
    return data


def _index_hint(number: int, line: bytes) -> tuple[int, str]:
    """The index of a line that cannot be parsed, read from its start as the SDK writes it.

    Without one, the line's position stands in: the SDK sends items in index order.
    """
    found = _INDEX_PREFIX.match(line[:64])
    if found:
        return int(found[1]), found[1].decode()
    return number - 1, f"on line {number}"


def _stream_result(batch: Batch, accepted: int, deduplicated: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": batch.id,
        "itemsAccepted": accepted,
        "itemsDeduplicated": deduplicated,
        "sealed": batch.status != BatchStatus.PENDING,
    }
    if not body["sealed"]:  # the SDK sends the whole stream again (reference 3.3)
        body["enqueuedCount"] = batch.items.count()
        body["expectedCount"] = batch.run_count
    return body


def _drain(request: HttpRequest) -> None:
    while request.read(64 * 1024):
        pass


# --- GET /api/v2/batches/{batchId} ----------------------------------------------------------


@api_view("GET")
def retrieve_batch(request: ApiRequest, batch_id: str) -> JsonResponse:
    """batch.retrieve (reference 3.10): the batch, its run ids in item order and its errors."""
    return JsonResponse(batch_detail(_batch_of(request, batch_id)))


def batch_detail(batch: Batch) -> dict[str, Any]:
    """RetrieveBatchV2Response; optional fields are absent, never null."""
    errors = [
        {
            "index": error.get("index", 0),
            "taskIdentifier": error.get("taskIdentifier", ""),
            "error": error.get("error", ""),
        }
        for error in batch.errors
    ]
    completed_at = batch.sealed_at.isoformat() if batch.sealed_at else None
    return _present(
        {
            "id": batch.id,
            "status": batch.status,
            "idempotencyKey": _idempotency_key(batch),
            "createdAt": batch.created_at.isoformat(),
            "updatedAt": batch.updated_at.isoformat(),
            "runCount": batch.run_count,
            "runs": engine.batch_run_ids(batch_id=batch.id),
            "processing": _present({"completedAt": completed_at, "errors": errors}),
        }
    )


def _batch_of(request: ApiRequest, batch_id: str) -> Batch:
    batch = Batch.objects.filter(pk=batch_id, environment=request.api_key.environment).first()
    if batch is None:
        raise ApiError(404, "Batch not found")
    return batch


def _idempotency_key(batch: Batch) -> str | None:
    # The caller's own key when the SDK sent it beside the hash, like runs.retrieve.
    return batch.idempotency_key_user or batch.idempotency_key or None


def _present(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if value is not None}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")
