"""Dashboard pages: the runs list and the run page. Read-only: actions go through runs.engine.

The same partials serve the first render, the htmx response and the websocket push
(dashboard.consumers renders them with the context functions below).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django_htmx.middleware import HtmxDetails

from runs.models import Environment, Run

PAGE_SIZE = 25
DEFAULT_ENVIRONMENT = "dev"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def home(request: HttpRequest) -> HttpResponse:
    return HttpResponseRedirect(reverse("runs"))


def runs_list(request: HtmxHttpRequest) -> HttpResponse:
    environment = current_environment(request)
    runs = Run.objects.filter(environment=environment)
    page = paginate(runs, after=parse_cursor(request.GET.get("after")), before=parse_cursor(request.GET.get("before")))
    context = {"environment": environment, "page": page, "live_query": live_query(environment, page)}
    return render(request, "dashboard/runs.html", context)


def run_detail(request: HtmxHttpRequest, run_id: str) -> HttpResponse:
    environment = current_environment(request)
    run = Run.objects.select_related("environment").filter(pk=run_id).first()
    if run is None or run.environment_id != environment.id:
        context = {"environment": environment, "run_id": run_id, "elsewhere": run.environment if run else None}
        return render(request, "dashboard/run_not_found.html", context, status=404)
    template = "dashboard/partials/run_panel.html" if request.htmx else "dashboard/run.html"
    live = urlencode({"since": to_micros(timezone.now())})
    return render(request, template, {"environment": environment, "live_query": live, **run_panel_context(run)})


def run_panel_context(run: Run) -> dict[str, Any]:
    """Everything partials/run_panel.html shows, from current database state."""
    return {"run": run, "events": list(run.events.all()), "attempts": list(run.attempts.all())}


def current_environment(request: HttpRequest) -> Environment:
    """The environment named by ?env=, else the session's, else dev; remembered in the session."""
    slug = request.GET.get("env") or request.session.get("env") or DEFAULT_ENVIRONMENT
    environment = Environment.objects.filter(slug=slug).first()
    if environment is None:
        environment = Environment.objects.filter(slug=DEFAULT_ENVIRONMENT).first()
    if environment is None:
        raise Http404("No environments are set up; run the migrations.")
    if request.session.get("env") != environment.slug:
        request.session["env"] = environment.slug
    return environment


# --- keyset pagination on (created_at, id), newest first; never COUNT(*) ------------------

Cursor = tuple[datetime, str]


@dataclass
class Page:
    runs: list[Run]
    is_first: bool  # no newer runs: live updates prepend new runs to this page
    newer: str | None  # cursor for ?before= (the page of newer runs)
    older: str | None  # cursor for ?after= (the page of older runs), None on the last page


def paginate(runs: QuerySet[Run], *, after: Cursor | None, before: Cursor | None) -> Page:
    """One page of runs, newest first: older than `after`, newer than `before`, or the newest."""
    if before is not None and after is None:
        rows = list(runs.filter(newer_than(before)).order_by("created_at", "id")[: PAGE_SIZE + 1])
        if len(rows) >= PAGE_SIZE:
            more_older = runs.filter(~newer_than(before)).exists()
            return _page(rows[:PAGE_SIZE][::-1], more_newer=len(rows) > PAGE_SIZE, more_older=more_older)
        # Fewer than a page of newer runs left: that is the first page.
    scoped = runs.filter(~newer_than(after, inclusive=True)) if after else runs
    rows = list(scoped.order_by("-created_at", "-id")[: PAGE_SIZE + 1])
    more_newer = after is not None and runs.filter(newer_than(after, inclusive=True)).exists()
    return _page(rows[:PAGE_SIZE], more_newer=more_newer, more_older=len(rows) > PAGE_SIZE)


def _page(rows: list[Run], *, more_newer: bool, more_older: bool) -> Page:
    newer = make_cursor(rows[0]) if more_newer and rows else None
    older = make_cursor(rows[-1]) if more_older and rows else None
    return Page(runs=rows, is_first=not more_newer, newer=newer, older=older)


def newer_than(cursor: Cursor, *, inclusive: bool = False) -> Q:
    """Runs whose (created_at, id) sorts after the cursor."""
    at, run_id = cursor
    same_time = Q(created_at=at, id__gte=run_id) if inclusive else Q(created_at=at, id__gt=run_id)
    return Q(created_at__gt=at) | same_time


def to_micros(at: datetime) -> int:
    return (at - EPOCH) // timedelta(microseconds=1)


def from_micros(value: str) -> datetime | None:
    """The time `value` microseconds after the epoch; None if that is no time."""
    try:
        return EPOCH + timedelta(microseconds=int(value)) if value.isdigit() else None
    except OverflowError:
        return None


def make_cursor(run: Run) -> str:
    return format_cursor((run.created_at, run.id))


def format_cursor(cursor: Cursor) -> str:
    return f"{to_micros(cursor[0])}.{cursor[1]}"


def parse_cursor(value: str | None) -> Cursor | None:
    """`<microseconds since epoch>.<run id>`; anything else is ignored (first page)."""
    micros, _, run_id = (value or "").partition(".")
    at = from_micros(micros)
    return (at, run_id) if at is not None and run_id else None


def live_query(environment: Environment, page: Page) -> str:
    """Query string of the list's websocket: which rows are on screen, and since when."""
    params: dict[str, str | int] = {"env": environment.slug, "since": to_micros(timezone.now())}
    if page.runs:
        params["newest"] = make_cursor(page.runs[0])
        params["oldest"] = make_cursor(page.runs[-1])
    if page.is_first:
        params["prepend"] = 1
    return urlencode(params)
