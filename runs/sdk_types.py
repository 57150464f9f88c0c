"""What the Python SDK returns and raises, in both modes (in-process and remote).

No Django here: the remote client (runs.sdk_remote) works in any Python program.
Every failure has one class, raised the same way by both modes:

    RunyardError                  base of them all
      ValidationError             a bad argument, option or filter (HTTP 400, 413, 422)
      AuthenticationError         the secret key is missing or wrong (401)
      PermissionDeniedError       the key may not do this (403)
      NotFoundError               no such run or batch in this environment (404)
      RunStateError               the run's status does not allow the action
      RateLimitError              over a rate limit (429); retry_after_ms says when to retry
      ServerError                 the server failed (5xx)
      ApiConnectionError          no answer from the server
      BatchTriggerError           a batch that was not triggered (a rate limit, phase create/stream)
      SubtaskUnwrapError          unwrap() of a child run that did not complete
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

T = TypeVar("T")
UNSET: Any = object()  # an override left out (None is a value: a null payload)
# Items of a batch: a list, any iterable (a generator) or an async iterable.
BatchItems = Iterable[dict[str, Any]] | AsyncIterable[dict[str, Any]]


class RunyardError(Exception):
    """Base class of every error the SDK raises. `http_status`: the HTTP status in remote mode."""

    def __init__(self, message: str = "", *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


class ValidationError(RunyardError):
    """A bad argument, option or filter; `field` names it ("" when the server did not say)."""

    def __init__(self, field: str, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message, http_status=http_status)
        self.field, self.message = field, message


class AuthenticationError(RunyardError):
    """The secret key is missing, wrong or revoked."""


class PermissionDeniedError(RunyardError):
    """The key may not do this."""


class NotFoundError(RunyardError):
    """No run (or batch) with that id in the key's environment."""


RunNotFoundError = NotFoundError  # the name of the first SDK release


class RunStateError(RunyardError):
    """The run's status does not allow the action (e.g. rescheduling a run that is not delayed)."""


class RateLimitError(RunyardError):
    """A rate limit refused the request; retry after `retry_after_ms` milliseconds.

    In-process, `decision` is the rate limiter's own answer (None in remote mode).
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after_ms: int | None = None,
        limit: int | None = None,
        remaining: int | None = None,
        decision: Any = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message, http_status=http_status)
        self.retry_after_ms, self.limit, self.remaining, self.decision = retry_after_ms, limit, remaining, decision


class ServerError(RunyardError):
    """The server failed (5xx); the request may or may not have taken effect."""


class ApiConnectionError(RunyardError):
    """The server could not be reached or did not answer in time."""


class BatchTriggerError(RunyardError):
    """A batch that was not triggered, described like the official SDK's BatchTriggerError.

    phase "create": refused before anything was created (the size was known up front).
    phase "stream": the items of a source of unknown size were read first; the batch they
    were staged into was rolled back (batch_id is None: it no longer exists).
    """

    def __init__(
        self,
        message: str,
        *,
        phase: str,
        item_count: int,
        batch_id: str | None = None,
        is_rate_limited: bool = False,
        retry_after_ms: int | None = None,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        self.phase, self.item_count, self.batch_id = phase, item_count, batch_id
        self.is_rate_limited, self.retry_after_ms, self.cause = is_rate_limited, retry_after_ms, cause


class SubtaskUnwrapError(RunyardError):
    """unwrap() of a child run that did not complete."""

    def __init__(self, run_id: str, task_id: str, cause: Any) -> None:
        message = cause.get("message") if isinstance(cause, dict) else str(cause)
        super().__init__(f"Child run {run_id} of task {task_id} did not complete: {message}")
        self.run_id, self.task_id, self.cause = run_id, task_id, cause


# --- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TriggerHandle:
    id: str
    is_cached: bool


@dataclass(frozen=True)
class BatchHandle:
    batch_id: str
    run_count: int
    run_ids: list[str]  # in item order
    is_cached: bool = False  # an earlier batch with the same idempotency key


@dataclass(frozen=True)
class TaskRunResult:
    """What a wait returns for one child run."""

    ok: bool
    id: str
    task_identifier: str
    output: Any = None
    error: dict[str, Any] | None = None

    def unwrap(self) -> Any:
        """The output, or SubtaskUnwrapError if the child did not complete."""
        if not self.ok:
            raise SubtaskUnwrapError(self.id, self.task_identifier, self.error)
        return self.output


@dataclass(frozen=True)
class RunInfo:
    """A run as runs.retrieve (and cancel, reschedule) return it."""

    id: str
    status: str
    task_identifier: str
    payload: Any
    output: Any
    error: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    tags: list[str]
    metadata: dict[str, Any] | None
    attempt_count: int
    is_queued: bool
    is_executing: bool
    is_waiting: bool
    is_completed: bool
    is_success: bool
    is_failed: bool
    is_cancelled: bool
    is_test: bool
    updated_at: datetime | None = None
    delayed_until: datetime | None = None
    idempotency_key: str | None = None  # the caller's key as given
    batch_id: str | None = None


@dataclass(frozen=True)
class RunSummary:
    """A run as runs.list yields it: no payload, output or error."""

    id: str
    status: str
    task_identifier: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    delayed_until: datetime | None
    tags: list[str]
    metadata: dict[str, Any] | None
    idempotency_key: str | None
    batch_id: str | None
    is_test: bool
    is_queued: bool
    is_executing: bool
    is_waiting: bool
    is_completed: bool
    is_success: bool
    is_failed: bool
    is_cancelled: bool


@dataclass(frozen=True)
class ScheduleInfo:
    """A schedule as schedules.create, retrieve, update, activate and deactivate return it.

    next_run is the tick that fires next (None while inactive); upcoming, the next five.
    payload, options, overlap and missed are Runyard's (the reference has none of them).
    """

    id: str
    type: str  # "IMPERATIVE", or "DECLARATIVE" for a schedule a task's code declares
    task: str
    active: bool
    cron: str
    cron_description: str
    timezone: str
    next_run: datetime | None
    external_id: str | None
    deduplication_key: str | None
    environments: list[dict[str, Any]]
    payload: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    overlap: str = "allow"
    missed: str = "once"
    upcoming: list[datetime] = field(default_factory=list)


@dataclass(frozen=True)
class SchedulePage:
    """One page of schedules.list, newest first."""

    schedules: list[ScheduleInfo]
    current_page: int
    total_pages: int
    count: int


def schedule_info(body: dict[str, Any]) -> ScheduleInfo:
    """ScheduleInfo from a ScheduleObject (both modes read the same shape)."""
    generator = body["generator"]
    return ScheduleInfo(
        id=body["id"],
        type=body["type"],
        task=body["task"],
        active=bool(body["active"]),
        cron=generator["expression"],
        cron_description=generator["description"],
        timezone=body["timezone"],
        next_run=datetime.fromisoformat(body["nextRun"]) if body.get("nextRun") else None,
        external_id=body.get("externalId"),
        deduplication_key=body.get("deduplicationKey"),
        environments=list(body.get("environments", [])),
        payload=body.get("payload"),
        options=dict(body.get("options") or {}),
        overlap=body.get("overlap", "allow"),
        missed=body.get("missed", "once"),
        upcoming=[datetime.fromisoformat(moment) for moment in body.get("upcoming", [])],
    )


def schedule_page(body: dict[str, Any]) -> SchedulePage:
    """SchedulePage from a ListSchedulesResult."""
    pagination = body["pagination"]
    return SchedulePage(
        schedules=[schedule_info(item) for item in body["data"]],
        current_page=pagination["currentPage"],
        total_pages=pagination["totalPages"],
        count=pagination["count"],
    )


def schedule_body(
    task: str,
    cron: str,
    *,
    timezone: str | None = None,
    external_id: str | None = None,
    deduplication_key: str | None = None,
    payload: Any = UNSET,
    options: dict[str, Any] | None = None,
    overlap: str | None = None,
    missed: str | None = None,
    active: bool | None = None,
) -> dict[str, Any]:
    """The JSON body of schedules.create and update: the wire's keys, only those given."""
    given = {
        "task": task,
        "cron": cron,
        "timezone": timezone,
        "externalId": external_id,
        "deduplicationKey": deduplication_key,
        "options": options,
        "overlap": overlap,
        "missed": missed,
        "active": active,
    }
    body = {key: value for key, value in given.items() if value is not None}
    if payload is not UNSET:
        body["payload"] = payload
    return body


@dataclass(frozen=True)
class RunPage:
    """One page of runs.list: cursors are run ids, None at either end."""

    runs: list[RunSummary]
    next: str | None
    previous: str | None


class RunList:
    """runs.list's result: iterating yields every matching run, fetching a page at a time.

    Pages follow the keyset cursor (`next`, or `previous` when the list started `before` a
    run), so runs created meanwhile never shift or repeat a page. Nothing is fetched until
    the first item is asked for; each iteration starts again from the first page.
    """

    def __init__(self, fetch: Callable[[dict[str, str]], RunPage], params: dict[str, str]) -> None:
        self._fetch, self.params = fetch, params

    def __iter__(self) -> Iterator[RunSummary]:
        for page in self.pages():
            yield from page.runs

    def pages(self) -> Iterator[RunPage]:
        params = dict(self.params)
        backwards = "page[before]" in params
        while True:
            page = self._fetch(params)
            yield page
            cursor = page.previous if backwards else page.next
            if cursor is None:
                return
            params.pop("page[after]", None)
            params.pop("page[before]", None)
            params["page[before]" if backwards else "page[after]"] = cursor

    def first_page(self) -> RunPage:
        return next(self.pages())


class LogLines:
    """runs.logs's result: iterating yields every matching line (a dict: attempt, seq,
    timestamp, level, logger, message, extra), fetching a page at a time by its cursor.
    Each iteration starts again from the first line; lines written meanwhile are included."""

    def __init__(
        self, fetch: Callable[[dict[str, str]], tuple[list[dict[str, Any]], str | None]], params: dict[str, str]
    ) -> None:
        self._fetch, self.params = fetch, params

    def __iter__(self) -> Iterator[dict[str, Any]]:
        params = dict(self.params)
        while True:
            lines, cursor = self._fetch(params)
            yield from lines
            if cursor is None:
                return
            params["cursor"] = cursor


def log_params(*, attempt: int | None = None, level: str | None = None, search: str | None = None) -> dict[str, str]:
    """runs.logs's keywords as the API's query parameters (checked by the server's rules)."""
    given = {"attempt": attempt, "level": level, "search": search}
    return {name: str(value) for name, value in given.items() if value is not None}


def list_params(
    *,
    status: str | Sequence[str] | None = None,
    task_identifier: str | Sequence[str] | None = None,
    version: str | Sequence[str] | None = None,
    tag: str | Sequence[str] | None = None,
    batch: str | None = None,
    bulk_action: str | None = None,
    schedule: str | None = None,
    is_test: bool | None = None,
    from_: datetime | int | None = None,
    to: datetime | int | None = None,
    period: str | None = None,
    queue: str | dict[str, str] | Sequence[str | dict[str, str]] | None = None,
    machine: str | Sequence[str] | None = None,
    region: str | Sequence[str] | None = None,
    limit: int | None = None,
    after: str | None = None,
    before: str | None = None,
) -> dict[str, str]:
    """runs.list's keyword arguments as the query parameters of reference 3.5."""
    lists = {
        "filter[status]": status,
        "filter[taskIdentifier]": task_identifier,
        "filter[version]": version,
        "filter[tag]": tag,
        "filter[batch]": batch,
        "filter[bulkAction]": bulk_action,
        "filter[schedule]": schedule,
        "filter[machine]": machine,
        "filter[region]": region,
        "filter[queue]": _queues(queue),
        "filter[createdAt][period]": period,
        "page[after]": after,
        "page[before]": before,
    }
    params = {name: _comma(value) for name, value in lists.items() if value is not None}
    if is_test is not None:
        params["filter[isTest]"] = "true" if is_test else "false"
    for name, when in (("filter[createdAt][from]", from_), ("filter[createdAt][to]", to)):
        if when is not None:
            params[name] = str(round(when.timestamp() * 1000) if isinstance(when, datetime) else when)
    if limit is not None:
        params["page[size]"] = str(limit)
    return params


def _comma(value: str | Sequence[str]) -> str:
    return value if isinstance(value, str) else ",".join(value)


def _queues(queue: str | dict[str, str] | Sequence[str | dict[str, str]] | None) -> list[str] | None:
    """Queue filters as the official SDK sends them: {"type": "task", "name": n} is "task/n"."""
    if queue is None:
        return None
    given = [queue] if isinstance(queue, str | dict) else list(queue)
    return [q if isinstance(q, str) else (f"task/{q['name']}" if q.get("type") == "task" else q["name"]) for q in given]


def run_error(error: Any) -> dict[str, Any] | None:
    """A run's error in the wire protocol's TaskRunError shape (message, name?, stackTrace?)."""
    if error is None:
        return None
    if not isinstance(error, dict):
        return {"message": str(error)}
    shaped = {"message": str(error.get("message") or "Unknown error")}
    for key in ("name", "stackTrace"):
        if error.get(key) not in (None, ""):
            shaped[key] = str(error[key])
    return shaped


def hash_idempotency_key(options: dict[str, Any] | None) -> dict[str, Any] | None:
    """Hash the caller's idempotency key as the official SDK does, so both clients share keys.

    A 64-character key is taken as already hashed.
    """
    if not options:
        return options
    name = "idempotencyKey" if "idempotencyKey" in options else "idempotency_key"
    key = options.get(name)
    if not isinstance(key, str) or len(key) == 64:
        return options
    hashed = {**options, name: hashlib.sha256(key.encode()).hexdigest()}
    hashed.setdefault("idempotencyKeyOptions", {"key": key, "scope": "global"})
    return hashed


# --- batch items --------------------------------------------------------------------------


def iterate(items: Iterable[T] | AsyncIterable[T]) -> Iterator[T]:
    """Any iterable or async iterable, read as a plain iterator."""
    if isinstance(items, AsyncIterable):
        return _from_async(items)
    return iter(items)


def _from_async(items: AsyncIterable[T]) -> Iterator[T]:
    """An async iterable read one item at a time, on an event loop in a helper thread.

    The SDK is synchronous (the ORM is); one loop for the whole iteration keeps a source
    that holds loop-bound resources (a connection, a cursor) working from first to last.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="runyard-batch-items", daemon=True)
    thread.start()
    iterator = aiter(items)
    try:
        while True:
            found, item = asyncio.run_coroutine_threadsafe(_anext(iterator), loop).result()
            if not found:
                return
            yield cast(T, item)
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:  # runs the source's own cleanup (finally blocks) on its loop
            asyncio.run_coroutine_threadsafe(aclose(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


async def _anext(iterator: AsyncIterator[T]) -> tuple[bool, T | None]:
    try:
        return True, await anext(iterator)
    except StopAsyncIteration:
        return False, None
