"""The Logs panel of the run page: a run's lines with their filters, the live tail, downloads.

The panel (partials/run_logs.html) shows the newest page of the lines its filters select, with
a control to load earlier pages above it. While the run executes, the run page's websocket
pushes a signal (partials/run_logs_signal.html) whenever the worker wrote lines; the signal
asks run_logs_tail for the lines after the last one shown, with the filters on screen, so a
push never resets what the user chose. Lines are read through runs.logs only.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import Http404, HttpResponse, HttpResponseBase, QueryDict, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from dashboard import views
from dashboard.permissions import VIEW_PAYLOAD, can, forbidden
from runs import logs, logsearch
from runs.models import Run, RunEvent, RunLog
from runs.states import is_final

LEVEL_CHOICES = [("", "All levels"), *((name, f"{name} and above") for name in logsearch.LEVELS)]
LATEST, ALL = "", "all"


class BadQuery(ValueError):
    """A query parameter the panel cannot use; the message names it and the rule."""


@dataclass(frozen=True)
class LogQuery:
    """What the panel's controls chose, parsed from the query string."""

    attempt: str = LATEST  # LATEST, ALL or an attempt number
    level: str = ""
    search: str = ""
    events: bool = False
    follow: bool = True

    @classmethod
    def parse(cls, query: QueryDict) -> LogQuery:
        attempt = query.get("attempt", LATEST).strip().lower()
        if attempt not in (LATEST, ALL) and not (attempt.isdigit() and 0 < int(attempt) < 100_000):
            raise BadQuery('attempt: must be an attempt number, "all" or empty (the latest attempt)')
        level = query.get("level", "").strip().upper()
        if level and logsearch.parse_level(level) is None:
            raise BadQuery(f"level: must be one of {', '.join(logsearch.LEVELS)} or empty (all levels)")
        search = query.get("q", "")
        if len(search) > logsearch.MAX_SEARCH_LENGTH:
            raise BadQuery(f"q: the search may have at most {logsearch.MAX_SEARCH_LENGTH} characters")
        # A checkbox sends nothing when cleared, so the form sends follow=0 before it.
        follow = (query.getlist("follow") or ["1"])[-1] == "1"
        return cls(attempt, level, search, query.get("events") == "1", follow)

    def line_filter(self, run: Run) -> logs.LineFilter:
        number = run.attempt_count if self.attempt == LATEST else None if self.attempt == ALL else int(self.attempt)
        level = logsearch.parse_level(self.level) if self.level else None
        return logs.LineFilter(attempt=number or None, min_level=level, search=self.search)

    def params(self) -> dict[str, str]:
        """The query string of the downloads and of the "load earlier" control."""
        chosen = {"attempt": self.attempt, "level": self.level, "q": self.search, "events": "1" if self.events else ""}
        return {name: value for name, value in chosen.items() if value}


def parse_cursor(value: str | None, name: str) -> tuple[int, int] | None:
    """`<attempt>.<seq>` of a line; empty for none."""
    if not value:
        return None
    attempt, _, seq = value.partition(".")
    if not (attempt.isdigit() and seq.isdigit() and len(value) < 24):
        raise BadQuery(f"{name}: must be <attempt>.<seq> of a line, as the page gives it")
    return int(attempt), int(seq)


def parse_time(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    at = views.from_micros(value)
    if at is None:
        raise BadQuery(f"{name}: must be microseconds since the epoch")
    return at


def logs_view(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """GET only; and what a run logs often holds its payload (hello-world greets the name it is
    given), so its lines are shown only to users who may see payloads: a 403 naming that otherwise."""

    @require_safe
    @wraps(view)
    def guarded(request: views.HtmxHttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not can(request.user, VIEW_PAYLOAD):
            return forbidden(request, VIEW_PAYLOAD)
        return view(request, *args, **kwargs)

    return guarded


def find_run(request: views.HtmxHttpRequest, run_id: str) -> Run:
    """The run of the current environment (as the run page finds it); a 404 otherwise."""
    environment = views.current_environment(request)
    run = Run.objects.filter(pk=run_id, environment=environment).first()
    if run is None:
        raise Http404("No such run in this environment")
    return run


def show(request: views.HtmxHttpRequest, template: str, context: dict[str, Any]) -> HttpResponse:
    # Only users who may see payloads get here (logs_view): failure reasons of events are shown.
    return render(request, f"dashboard/partials/{template}.html", {**context, "perms_payload": True})


def bad(request: views.HtmxHttpRequest, error: BadQuery) -> HttpResponse:
    return render(request, "400.html", {"message": str(error)}, status=400)


# --- views -------------------------------------------------------------------------------


@logs_view
def run_logs(request: views.HtmxHttpRequest, run_id: str) -> HttpResponse:
    """The panel for the controls' values; with `before`, only the page of lines above it."""
    run = find_run(request, run_id)
    try:
        query = LogQuery.parse(request.GET)
        before = parse_cursor(request.GET.get("before"), "before")
        until = parse_time(request.GET.get("until"), "until")
    except BadQuery as error:
        return bad(request, error)
    if before is None:
        return show(request, "run_logs", panel_context(run, query))
    page = page_context(run, query, before=before, until=until)
    return show(request, "run_log_rows", page)


@logs_view
def run_logs_tail(request: views.HtmxHttpRequest, run_id: str) -> HttpResponse:
    """The lines after `after` (and timeline events after `shown`), to append at the end."""
    run = find_run(request, run_id)
    try:
        query = LogQuery.parse(request.GET)
        after = parse_cursor(request.GET.get("after"), "after") or (0, 0)
        shown = parse_time(request.GET.get("shown"), "shown")
    except BadQuery as error:
        return bad(request, error)
    if not query.follow:
        return HttpResponse(status=204)  # htmx swaps nothing: the user reads where they are
    if query.attempt == LATEST and 0 < after[0] < run.attempt_count:
        # A new attempt began: its lines belong in a panel of their own.
        response = show(request, "run_logs", panel_context(run, query))
        return retarget(response, "#run-logs", "outerHTML")
    context = tail_context(run, query, after=after, shown=shown)
    return show(request, "run_logs_tail", context)


@logs_view
def run_logs_download(request: views.HtmxHttpRequest, run_id: str, kind: str) -> HttpResponse | StreamingHttpResponse:
    """The lines the controls select (all of them, not a page), as a .log or JSON lines file."""
    run = find_run(request, run_id)
    try:
        which = LogQuery.parse(request.GET).line_filter(run)
    except BadQuery as error:
        return bad(request, error)
    render, content_type = (logs.as_text, "text/plain") if kind == "log" else (as_json_line, "application/x-ndjson")
    chunks = rendered(run.id, which, render)
    # Daphne would read a plain iterator to its end before sending a byte (Django's ASGI handler
    # lists it): it gets the pages one by one from the database thread instead.
    body = in_thread(chunks) if isinstance(request, ASGIRequest) else chunks
    response = StreamingHttpResponse(body, content_type=f"{content_type}; charset=utf-8")
    name = f"{run.id}-attempt-{which.attempt}" if which.attempt is not None else run.id
    response["Content-Disposition"] = f'attachment; filename="{name}.{"log" if kind == "log" else "jsonl"}"'
    return response


def as_json_line(line: RunLog) -> str:
    return json.dumps(logs.as_json(line), ensure_ascii=False)


def rendered(run_id: str, which: logs.LineFilter, render: Callable[[RunLog], str]) -> Iterator[str]:
    """The file, a page of lines per chunk."""
    for page in logs.pages(run_id, which):
        yield "".join(render(line) + "\n" for line in page)


async def in_thread(chunks: Iterator[str]) -> AsyncIterator[str]:
    following = sync_to_async(lambda: next(chunks, None))
    while (chunk := await following()) is not None:
        yield chunk


def retarget(response: HttpResponse, target: str, swap: str) -> HttpResponse:
    response["HX-Retarget"], response["HX-Reswap"] = target, swap
    return response


# --- what the partials show --------------------------------------------------------------


def panel_context(run: Run, query: LogQuery | None = None) -> dict[str, Any]:
    """Everything partials/run_logs.html shows: controls, counts, the newest page of lines."""
    query = query or LogQuery()
    counts = logs.summaries(run.id)
    return {
        "run": run,
        "log_query": query,
        "log_qs": urlencode(query.params()),
        "attempt_choices": [(str(n), f"Attempt {n}") for n in range(run.attempt_count, 0, -1)],
        "level_choices": LEVEL_CHOICES,
        "log_counts": counts,
        "log_dropped": [count for count in counts if count.dropped],
        "log_limits": {"lines": settings.RUNYARD_LOG_MAX_LINES, "megabytes": settings.RUNYARD_LOG_MAX_BYTES / 1e6},
        "run_final": is_final(run.status),
        **page_context(run, query),
    }


def page_context(
    run: Run, query: LogQuery, *, before: tuple[int, int] | None = None, until: datetime | None = None
) -> dict[str, Any]:
    """A page of lines ending before `before` (or the newest), with the run's timeline events
    of its time span when asked for: from its first line (from the start on the first page)
    to `until` (the first item of the page below it; no end on the newest page)."""
    found = logs.newest_lines(run.id, query.line_filter(run), before=before, limit=logs.PAGE_SIZE + 1)
    earlier, page = len(found) > logs.PAGE_SIZE, found[-logs.PAGE_SIZE :]
    since = page[0].at if earlier and page else None
    events = timeline(run, since=since, until=until) if query.events else []
    items = interleave(page, events)
    last = page[-1] if page else None
    return {
        "run": run,
        "log_items": items,
        "log_earlier": {"before": f"{page[0].attempt}.{page[0].seq}", "until": views.to_micros(items[0]["at"])}
        if earlier
        else None,
        "log_after": f"{last.attempt}.{last.seq}" if last else "",
        "log_shown": views.to_micros(items[-1]["at"]) if items else "",
        "log_qs": urlencode(query.params()),
    }


def tail_context(run: Run, query: LogQuery, *, after: tuple[int, int], shown: datetime | None) -> dict[str, Any]:
    """The lines (and events) to append, where the panel then stands, and its counts."""
    page = logs.lines(run.id, query.line_filter(run), after=after, limit=logs.PAGE_SIZE)
    events = timeline(run, since=shown, until=None, inclusive=False) if query.events else []
    items = interleave(page, events)
    last = page[-1] if page else None
    counts = logs.summaries(run.id)
    return {
        "run": run,
        "log_items": items,
        "log_after": f"{last.attempt}.{last.seq}" if last else "{}.{}".format(*after),
        "log_shown": views.to_micros(items[-1]["at"]) if items else (views.to_micros(shown) if shown else ""),
        "log_counts": counts,
        "log_dropped": [count for count in counts if count.dropped],
        "log_limits": {"lines": settings.RUNYARD_LOG_MAX_LINES, "megabytes": settings.RUNYARD_LOG_MAX_BYTES / 1e6},
        "run_final": is_final(run.status),
        "log_any": after != (0, 0) or bool(items),
        "oob": True,
    }


def timeline(run: Run, *, since: datetime | None, until: datetime | None, inclusive: bool = True) -> list[RunEvent]:
    found = run.events.all()
    if since is not None:
        found = found.filter(at__gte=since) if inclusive else found.filter(at__gt=since)
    if until is not None:
        found = found.filter(at__lt=until)
    return list(found.order_by("at", "id"))


def interleave(lines: list[RunLog], events: list[RunEvent]) -> list[dict[str, Any]]:
    """Lines in their own order, each event before the first line written after it."""
    items: list[dict[str, Any]] = []
    waiting = iter(events)
    event = next(waiting, None)
    for line in lines:
        while event is not None and event.at <= line.at:
            items.append({"at": event.at, "event": event})
            event = next(waiting, None)
        items.append({"at": line.at, "line": line, **shown_line(line)})
    items += [{"at": later.at, "event": later} for later in ([event] if event else []) + list(waiting)]
    return items


def shown_line(line: RunLog) -> dict[str, Any]:
    extra = line.extra or {}
    return {
        "level": logsearch.level_name(line.level),
        "tone": "red" if line.level >= logsearch.ERROR else "amber" if line.level >= 30 else "grey",
        "extra": [(key, json.dumps(value, ensure_ascii=False)) for key, value in extra.items()],
    }
