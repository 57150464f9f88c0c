"""The Python SDK's remote mode: the same verbs over Runyard's REST API (reference 3.1 to 3.10).

    from runs.sdk_remote import Client

    client = Client(api_url="https://runyard.example.com", secret_key="tr_dev_...")
    handle = client.tasks.trigger("send-email", {"to": "ada@example.com"}, {"ttl": "1h"})
    for run in client.runs.list(status=["FAILED", "CRASHED"], period="1d"):
        ...

runs.sdk uses this client when RUNYARD_API_URL and RUNYARD_SECRET_KEY are set (or after
runs.sdk.configure(...)). This module needs no Django: any Python program can use it.
Requests are sent once (no automatic retries): a failure raises the class of
runs.sdk_types for its status, exactly as the in-process mode does.
"""

from __future__ import annotations

import builtins
import json
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests

from runs.sdk_types import (
    UNSET,
    ApiConnectionError,
    AuthenticationError,
    BatchHandle,
    BatchItems,
    BatchTriggerError,
    LogLines,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RunInfo,
    RunList,
    RunPage,
    RunStateError,
    RunSummary,
    RunyardError,
    ScheduleInfo,
    SchedulePage,
    ServerError,
    TriggerHandle,
    ValidationError,
    hash_idempotency_key,
    iterate,
    list_params,
    log_params,
    schedule_info,
    schedule_page,
)

SUPERJSON = "application/super+json"
REQUEST_KEY_HEADER = "x-trigger-request-idempotency-key"
MAX_BATCH_ITEMS = 1000
# Replay override keyword -> the body key of ReplayRunRequestBody (reference 3.8).
REPLAY_KEYS = {
    "metadata": "metadata",
    "tags": "tags",
    "queue": "queue",
    "concurrency_key": "concurrencyKey",
    "machine": "machine",
    "version": "version",
    "region": "region",
    "delay": "delay",
    "ttl": "ttl",
    "idempotency_key": "idempotencyKey",
    "idempotency_key_ttl": "idempotencyKeyTTL",
    "max_attempts": "maxAttempts",
    "max_duration": "maxDuration",
    "priority": "priority",
}


class Client:
    """A Runyard reached over HTTP with one environment's secret key.

    `tasks`, `batch` and `runs` have the verbs of runs.sdk's objects of the same names.
    """

    def __init__(self, *, api_url: str, secret_key: str, timeout: float = 30.0) -> None:
        self.api_url, self.secret_key, self.timeout = api_url.rstrip("/"), secret_key, timeout
        self.session = requests.Session()
        self.tasks = RemoteTasks(self)
        self.batch = RemoteBatch(self)
        self.runs = RemoteRuns(self)
        self.queues = RemoteQueues(self)
        self.environment = RemoteEnvironment(self)
        self.schedules = RemoteSchedules(self)
        self.workers = RemoteWorkers(self)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> requests.Response:
        """One API request; a non-2xx answer raises its RunyardError class."""
        sent = {"Authorization": f"Bearer {self.secret_key}", "Content-Type": "application/json", **(headers or {})}
        if body is not None:
            data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
        try:
            response = self.session.request(
                method, f"{self.api_url}{path}", data=data, headers=sent, params=params, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise ApiConnectionError(f"Could not reach Runyard at {self.api_url}: {exc}") from exc
        if response.status_code >= 300:
            raise error_for(response)
        return response

    def get_json(self, path: str) -> Any:
        return self.request("GET", path).json()

    def post_json(self, path: str, body: Any = None, *, request_key: bool = False) -> Any:
        headers = {REQUEST_KEY_HEADER: str(uuid.uuid4())} if request_key else None
        return self.request("POST", path, body, headers=headers).json()


def error_for(response: requests.Response) -> RunyardError:
    """The SDK error for an API error response ({"error": message})."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    message = body.get("error") if isinstance(body, dict) else None
    if not isinstance(message, str):
        message = f"{status} {response.text[:200]}".strip()
    if status in (400, 413, 422):
        param = body.get("param") if isinstance(body, dict) else None
        return ValidationError(param if isinstance(param, str) else "", message, http_status=status)
    if status == 429:
        return RateLimitError(
            message,
            retry_after_ms=_retry_after_ms(response),
            limit=_int_header(response, "x-ratelimit-limit"),
            remaining=_int_header(response, "x-ratelimit-remaining"),
            http_status=status,
        )
    classes: dict[int, type[RunyardError]] = {401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError}
    return classes.get(status, ServerError if status >= 500 else RunyardError)(message, http_status=status)


def _retry_after_ms(response: requests.Response) -> int | None:
    """Milliseconds until `x-ratelimit-reset` (epoch ms), else `retry-after` (seconds)."""
    reset = _int_header(response, "x-ratelimit-reset")
    if reset is not None:
        return max(reset - round(time.time() * 1000), 0)
    seconds = _int_header(response, "retry-after")
    return None if seconds is None else seconds * 1000


def _int_header(response: requests.Response, name: str) -> int | None:
    value = response.headers.get(name, "")
    return int(value) if value.isdigit() else None


class RemoteTasks:
    def __init__(self, client: Client) -> None:
        self.client = client

    def retrieve_pause(self, task_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.client.get_json(f"{_task_path(task_id)}/pause")
        return result

    def pause(self, task_id: str, *, reason: str = "", resume_at: datetime | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.client.post_json(f"{_task_path(task_id)}/pause", pause_fields(reason, resume_at))
        return result

    def resume(self, task_id: str, *, reason: str = "") -> dict[str, Any]:
        result: dict[str, Any] = self.client.post_json(f"{_task_path(task_id)}/resume", pause_fields(reason, None))
        return result

    def trigger(self, task_id: str, payload: Any = None, options: dict[str, Any] | None = None) -> TriggerHandle:
        """POST /api/v1/tasks/{taskId}/trigger, as the official SDK sends it."""
        body: dict[str, Any] = {"options": trigger_options(options, payload)}
        if (encoded := encode_payload(payload)) is not None:  # absent, as the official SDK sends none
            body["payload"] = encoded
        path = f"/api/v1/tasks/{quote(task_id, safe='')}/trigger"
        answer = self.client.post_json(path, body, request_key=True)
        return TriggerHandle(id=answer["id"], is_cached=bool(answer.get("isCached", False)))

    def batch_trigger(self, task_id: str, items: BatchItems, options: dict[str, Any] | None = None) -> BatchHandle:
        """One run per item ({"payload": ..., "options": {...}}), all or nothing."""

        def for_task(item: Any) -> Any:
            if not isinstance(item, dict):
                raise ValidationError("items", "each item must be a dict like {'payload': ...}")
            return {**item, "id": task_id}

        return create_batch(self.client, (for_task(item) for item in iterate(items)), options)


class RemoteBatch:
    def __init__(self, client: Client) -> None:
        self.client = client

    def trigger(self, items: BatchItems, options: dict[str, Any] | None = None) -> BatchHandle:
        """Items name their task: {"id": task id, "payload": ..., "options": ...}."""
        return create_batch(self.client, iterate(items), options)


class RemoteQueues:
    """/api/v1/queues as the official SDK calls it; each verb returns the QueueItem."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def list(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            body = self.client.get_json(f"/api/v1/queues?page={page}&perPage=100")
            found.extend(body["data"])
            if page >= body["pagination"]["totalPages"]:
                return found
            page += 1

    def retrieve(self, queue: str, *, type: str = "id") -> dict[str, Any]:
        result: dict[str, Any] = self.client.get_json(f"{_queue_path(queue)}?type={quote(type, safe='')}")
        return result

    def pause(self, queue: str, *, type: str = "id") -> dict[str, Any]:
        result: dict[str, Any] = self.client.post_json(f"{_queue_path(queue)}/pause", {"type": type, "action": "pause"})
        return result

    def resume(self, queue: str, *, type: str = "id") -> dict[str, Any]:
        body = {"type": type, "action": "resume"}
        result: dict[str, Any] = self.client.post_json(f"{_queue_path(queue)}/pause", body)
        return result

    def override_concurrency_limit(self, queue: str, limit: int, *, type: str = "id") -> dict[str, Any]:
        body = {"type": type, "concurrencyLimit": limit}
        result: dict[str, Any] = self.client.post_json(f"{_queue_path(queue)}/concurrency/override", body)
        return result

    def reset_concurrency_limit(self, queue: str, *, type: str = "id") -> dict[str, Any]:
        result: dict[str, Any] = self.client.post_json(f"{_queue_path(queue)}/concurrency/reset", {"type": type})
        return result


MAX_REASON = 512  # the server's (runs.engine.pauses.REASON_LENGTH); this module imports no Django


def pause_fields(reason: str, resume_at: datetime | None) -> dict[str, Any]:
    """The body of a task's or environment's pause; checks what the server could not be told
    (both modes raise the same ValidationError: the field as the REST API names it)."""
    if not isinstance(reason, str):
        raise ValidationError("reason", "reason must be a string")
    if len(reason) > MAX_REASON:
        raise ValidationError("reason", f"reason must be at most {MAX_REASON} characters ({len(reason)} given)")
    if resume_at is not None and not isinstance(resume_at, datetime):
        raise ValidationError("resumeAt", "resume_at must be a datetime")
    body: dict[str, Any] = {"reason": reason} if reason else {}
    if resume_at is not None:
        body["resumeAt"] = (resume_at if resume_at.tzinfo else resume_at.replace(tzinfo=UTC)).isoformat()
    return body


def _task_path(task_id: str) -> str:
    return f"/api/v1/tasks/{quote(task_id, safe='')}"


class RemoteEnvironment:
    """/api/v1/environment: the key's environment's pause."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def retrieve_pause(self) -> dict[str, Any]:
        result: dict[str, Any] = self.client.get_json("/api/v1/environment/pause")
        return result

    def pause(self, *, reason: str = "", resume_at: datetime | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.client.post_json("/api/v1/environment/pause", pause_fields(reason, resume_at))
        return result

    def resume(self, *, reason: str = "") -> dict[str, Any]:
        result: dict[str, Any] = self.client.post_json("/api/v1/environment/resume", pause_fields(reason, None))
        return result


class RemoteWorkers:
    """/api/v1/workers; each verb returns the WorkerItem."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def list(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.client.get_json("/api/v1/workers")["data"]
        return items

    def retrieve(self, hostname: str) -> dict[str, Any]:
        result: dict[str, Any] = self.client.get_json(_worker_path(hostname))
        return result

    def drain(self, hostname: str, *, reason: str = "") -> dict[str, Any]:
        result: dict[str, Any] = self.client.post_json(f"{_worker_path(hostname)}/drain", {"reason": reason})
        return result

    def undrain(self, hostname: str, *, reason: str = "") -> dict[str, Any]:
        result: dict[str, Any] = self.client.post_json(f"{_worker_path(hostname)}/undrain", {"reason": reason})
        return result


def _worker_path(hostname: str) -> str:
    return f"/api/v1/workers/{quote(hostname, safe='')}"


def _queue_path(queue: str) -> str:
    # As the official SDK does: a "/" of the name is written %2F before the whole is encoded.
    return f"/api/v1/queues/{quote(queue.replace('/', '%2F'), safe='')}"


class RemoteSchedules:
    """/api/v1/schedules as the official SDK calls it. `body` is runs.sdk_types.schedule_body's."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def create(self, body: dict[str, Any]) -> ScheduleInfo:
        return schedule_info(self.client.post_json("/api/v1/schedules", body))

    def retrieve(self, schedule_id: str) -> ScheduleInfo:
        return schedule_info(self.client.get_json(_schedule_path(schedule_id)))

    def update(self, schedule_id: str, body: dict[str, Any]) -> ScheduleInfo:
        return schedule_info(self.client.request("PUT", _schedule_path(schedule_id), body).json())

    def list(self, *, page: int = 1, per_page: int = 10) -> SchedulePage:
        params = {"page": str(page), "perPage": str(per_page)}
        return schedule_page(self.client.request("GET", "/api/v1/schedules", params=params).json())

    def activate(self, schedule_id: str) -> ScheduleInfo:
        return schedule_info(self.client.post_json(f"{_schedule_path(schedule_id)}/activate"))

    def deactivate(self, schedule_id: str) -> ScheduleInfo:
        return schedule_info(self.client.post_json(f"{_schedule_path(schedule_id)}/deactivate"))

    def delete(self, schedule_id: str) -> str:
        deleted: str = self.client.request("DELETE", _schedule_path(schedule_id)).json()["id"]
        return deleted

    def timezones(self, *, exclude_utc: bool = False) -> builtins.list[str]:
        query = "?excludeUtc=true" if exclude_utc else ""
        zones: builtins.list[str] = self.client.get_json(f"/api/v1/timezones{query}")["timezones"]
        return zones


def _schedule_path(schedule_id: str) -> str:
    return f"/api/v1/schedules/{quote(schedule_id, safe='')}"


class RemoteRuns:
    def __init__(self, client: Client) -> None:
        self.client = client

    def retrieve(self, run_id: str) -> RunInfo:
        """GET /api/v3/runs/{id}; an offloaded payload or output is fetched from its URL."""
        body = self.client.get_json(f"/api/v3/runs/{quote(run_id, safe='')}")
        for what in ("payload", "output"):
            if f"{what}PresignedUrl" in body:
                body[what] = self._download(body[f"{what}PresignedUrl"])
        return run_info(body)

    def list(self, **filters: Any) -> RunList:
        """Every run matching the filters of reference 3.5, newest first, a page at a time."""
        return RunList(self.page, list_params(**filters))

    def page(self, params: dict[str, str]) -> RunPage:
        """One page of GET /api/v1/runs for these query parameters."""
        answer = self.client.request("GET", "/api/v1/runs", params=params).json()
        pagination = answer.get("pagination", {})
        runs = [run_summary(item) for item in answer["data"]]
        return RunPage(runs=runs, next=pagination.get("next"), previous=pagination.get("previous"))

    def logs(
        self, run_id: str, *, attempt: int | None = None, level: str | None = None, search: str | None = None
    ) -> LogLines:
        """Every line of GET /api/v1/runs/{id}/logs matching the filters, page after page."""
        path = f"/api/v1/runs/{quote(run_id, safe='')}/logs"

        def fetch(params: dict[str, str]) -> tuple[list[dict[str, Any]], str | None]:
            answer = self.client.request("GET", path, params=params).json()
            return answer["data"], answer["pagination"]["next"]

        return LogLines(fetch, log_params(attempt=attempt, level=level, search=search))

    def cancel(self, run_id: str) -> RunInfo:
        self.client.post_json(f"/api/v2/runs/{quote(run_id, safe='')}/cancel")
        return self.retrieve(run_id)

    def reschedule(self, run_id: str, delay: str | datetime) -> RunInfo:
        """Move a delayed run to a new time: a duration ("2h") or a date. Raises RunStateError."""
        when = delay.isoformat() if isinstance(delay, datetime) else delay
        try:
            body = self.client.post_json(f"/api/v1/runs/{quote(run_id, safe='')}/reschedule", {"delay": when})
        except ValidationError as exc:
            if "not delayed" in exc.message:
                raise RunStateError(exc.message) from exc
            raise
        return run_info(body)

    def replay(self, run_id: str, *, payload: Any = UNSET, **overrides: Any) -> TriggerHandle:
        """A new run of the same task, with the original's payload and options but `overrides`."""
        if unknown := sorted(set(overrides) - set(REPLAY_KEYS)):
            raise TypeError(f"replay() got an unexpected keyword argument {unknown[0]!r}")
        body = {REPLAY_KEYS[name]: value for name, value in overrides.items() if value is not None}
        if payload is not UNSET:
            body.update(payload=json.dumps({"json": payload}, separators=(",", ":")), payloadType=SUPERJSON)
        path = f"/api/v1/runs/{quote(run_id, safe='')}/replay"
        answer = self.client.post_json(path, body or None, request_key=True)
        return TriggerHandle(id=answer["id"], is_cached=False)

    def update_metadata(self, run_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """PUT the metadata change (FlushedRunMetadata's keys, those given); the metadata after."""
        given = {key: value for key, value in body.items() if value is not None}
        try:
            answer = self.client.request("PUT", self._metadata_path(run_id), given).json()
        except ValidationError as exc:
            if exc.http_status == 422 and not exc.field:  # the run finished over an hour ago
                raise RunStateError(exc.message, http_status=exc.http_status) from exc
            raise
        return dict(answer["metadata"])

    def get_metadata(self, run_id: str) -> dict[str, Any]:
        return dict(self.client.get_json(self._metadata_path(run_id))["metadata"])

    @staticmethod
    def _metadata_path(run_id: str) -> str:
        return f"/api/v1/runs/{quote(run_id, safe='')}/metadata"

    def _download(self, url: str) -> Any:
        try:
            response = self.client.session.get(url, timeout=self.client.timeout)
        except requests.RequestException as exc:
            raise ApiConnectionError(f"Could not download {url}: {exc}") from exc
        if response.status_code >= 300:
            raise error_for(response)
        if response.headers.get("Content-Type", "").startswith("text/plain"):
            return response.text
        data = response.json()
        return data.get("json") if response.headers.get("Content-Type", "").startswith(SUPERJSON) else data


# --- wire shapes --------------------------------------------------------------------------


def encode_payload(payload: Any) -> str | None:
    """The payload as the official SDK sends it: a SuperJSON string (None: no payload)."""
    if payload is None:
        return None
    try:
        return json.dumps({"json": payload}, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError("payload", f"payload must be a JSON value: {exc}") from exc


def trigger_options(options: dict[str, Any] | None, payload: Any) -> dict[str, Any]:
    """Trigger options with the key hashed and the payload's type, as the official SDK sends them."""
    if options is not None and not isinstance(options, dict):
        raise ValidationError("options", "options must be a dict")
    sent = dict(hash_idempotency_key(options) or {})
    sent["payloadType"] = SUPERJSON if payload is not None else "application/json"
    return {key: _wire(value) for key, value in sent.items()}


def _wire(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def create_batch(client: Client, items: Iterable[Any], options: dict[str, Any] | None) -> BatchHandle:
    """POST /api/v3/batches, then the items as NDJSON, then the batch's run ids.

    Like the official SDK, the items are read (and checked) first: the create call must say
    how many there are.
    """
    lines = []
    for index, item in enumerate(items):
        if index >= MAX_BATCH_ITEMS:
            raise ValidationError("items", f"a batch takes at most {MAX_BATCH_ITEMS} items; more were given")
        lines.append(_item_line(index, item))
    if not 1 <= len(lines) <= MAX_BATCH_ITEMS:
        raise ValidationError("items", f"a batch takes 1 to {MAX_BATCH_ITEMS} items, not {len(lines)}")
    body: dict[str, Any] = {"runCount": len(lines), "taskIdentifiers": sorted({line["task"] for line in lines})}
    hashed = hash_idempotency_key(options) or {}
    key = hashed.get("idempotencyKey", hashed.get("idempotency_key"))
    if key is not None:
        body.update(idempotencyKey=key, idempotencyKeyOptions=hashed["idempotencyKeyOptions"])
    try:
        created = client.post_json("/api/v3/batches", body, request_key=True)
    except RateLimitError as exc:
        raise _batch_error(exc, len(lines), "create") from exc
    batch_id = created["id"]
    if not created.get("isCached"):
        ndjson = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()
        headers = {"Content-Type": "application/x-ndjson"}
        try:
            client.request("POST", f"/api/v3/batches/{batch_id}/items", data=ndjson, headers=headers)
        except RateLimitError as exc:
            raise _batch_error(exc, len(lines), "stream", batch_id) from exc
    run_ids = client.get_json(f"/api/v2/batches/{batch_id}")["runs"]
    return BatchHandle(
        batch_id=batch_id, run_count=created["runCount"], run_ids=run_ids, is_cached=bool(created.get("isCached"))
    )


def _item_line(index: int, item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ValidationError(f"items[{index}]", f"item {index}: must be a dict, not {type(item).__name__}")
    task_id = item.get("id")
    if not isinstance(task_id, str) or not task_id:
        raise ValidationError(f"items[{index}].taskId", f"item {index}: needs a task id")
    line: dict[str, Any] = {"index": index, "task": task_id}
    payload = encode_payload(item.get("payload"))
    if payload is not None:
        line["payload"] = payload
    line["options"] = trigger_options(item.get("options"), item.get("payload"))
    return line


def _batch_error(exc: RateLimitError, count: int, phase: str, batch_id: str | None = None) -> BatchTriggerError:
    wait = round((exc.retry_after_ms or 0) / 1000)
    return BatchTriggerError(
        f"Failed to create batch with {count} items: Rate limit exceeded - retry after {wait}s",
        phase=phase,
        item_count=count,
        batch_id=batch_id,
        is_rate_limited=True,
        retry_after_ms=exc.retry_after_ms,
        cause=exc,
    )


def _date(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _flags(body: dict[str, Any]) -> dict[str, bool]:
    names = ("isQueued", "isExecuting", "isWaiting", "isCompleted", "isSuccess", "isFailed", "isCancelled")
    return {_snake(name): bool(body.get(name)) for name in names}


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def run_info(body: dict[str, Any]) -> RunInfo:
    """RunInfo from a RetrieveRunResponse."""
    return RunInfo(
        id=body["id"],
        status=body["status"],
        task_identifier=body["taskIdentifier"],
        payload=body.get("payload"),
        output=body.get("output"),
        error=body.get("error"),
        created_at=datetime.fromisoformat(body["createdAt"]),
        started_at=_date(body.get("startedAt")),
        finished_at=_date(body.get("finishedAt")),
        tags=list(body.get("tags", [])),
        metadata=body.get("metadata"),
        attempt_count=int(body.get("attemptCount", 0)),
        is_test=bool(body.get("isTest")),
        updated_at=_date(body.get("updatedAt")),
        delayed_until=_date(body.get("delayedUntil")),
        idempotency_key=body.get("idempotencyKey"),
        batch_id=body.get("batchId"),
        **_flags(body),
    )


def run_summary(body: dict[str, Any]) -> RunSummary:
    """RunSummary from a ListRunItem."""
    return RunSummary(
        id=body["id"],
        status=body["status"],
        task_identifier=body["taskIdentifier"],
        created_at=datetime.fromisoformat(body["createdAt"]),
        updated_at=datetime.fromisoformat(body["updatedAt"]),
        started_at=_date(body.get("startedAt")),
        finished_at=_date(body.get("finishedAt")),
        delayed_until=_date(body.get("delayedUntil")),
        tags=list(body.get("tags", [])),
        metadata=body.get("metadata"),
        idempotency_key=body.get("idempotencyKey"),
        batch_id=body.get("batchId"),
        is_test=bool(body.get("isTest")),
        **_flags(body),
    )
