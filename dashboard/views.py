"""Dashboard pages: the runs list, the run page and the batch page. Read-only: actions go through runs.engine.

The same partials serve the first render, the htmx response and the websocket push
(dashboard.consumers renders them with the context functions below).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Count, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django_htmx.middleware import HtmxDetails

from dashboard import log_views
from dashboard.permissions import roles
from runs import keyset, registry
from runs.engine import open_children
from runs.filters import (
    SINGLE,
    RunFilters,
    period_choices,
    queue_choices,
    region_choices,
    status_choices,
    task_choices,
)
from runs.holds import held_count, holds_in, mark_held
from runs.keyset import Keyset, to_micros
from runs.keyset import from_micros as from_micros  # dashboard.log_views reads times with it
from runs.models import Batch, Environment, Queue, Run, Worker
from runs.states import ACTIVE_STATUSES, LABELS, RunStatus, is_final

PAGE_SIZE = 25
SLUG_RE = re.compile(r"^[-a-zA-Z0-9_]{1,50}$")
RUN_ID_RE = re.compile(r"[0-9a-z_]{1,64}")  # matched whole (fullmatch)
DEFAULT_ENVIRONMENT = "dev"
CHILDREN_SHOWN = 50  # child runs listed on a run page; more are reached through their batch
REPLAYS_SHOWN = 10  # newest replays of a run linked from its page
WAITING_SHOWN = 10  # open children linked from a waiting run's explanation
MATCHED_SHOWN = 10  # runs a batch's items matched by key, linked from the batch page


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def home(request: HttpRequest) -> HttpResponse:
    return HttpResponseRedirect(reverse("runs"))


def runs_list(request: HtmxHttpRequest) -> HttpResponse:
    environment = current_environment(request)
    now = timezone.now()
    filters = RunFilters.from_query(request.GET, now)
    runs = Run.objects.filter(filters.q(), environment=environment)
    page = paginate(runs, after=parse_cursor(request.GET.get("after")), before=parse_cursor(request.GET.get("before")))
    mark_held(page.rows, now)
    kept = [("env", environment.slug), *filters.params()]
    context = {
        "environment": environment,
        "page": page,
        "filters": filters,
        "errors": filters.errors,
        "page_query": urlencode(kept),
        "live_query": live_query(page, kept, now),
        **filter_choices(environment, filters),
    }
    return render(request, "dashboard/runs.html", context)


# The one-value filters behind "More filters": name, label, placeholder, input size.
MORE_FILTERS = [
    ("batch", "Batch", "batch_…", 22),
    ("queue", "Queue", "task/…", 16),
    ("machine", "Machine", "", 0),
    ("region", "Region", "", 10),
    ("idempotency", "Idempotency key", "", 16),
    ("id", "Run ID", "run_…", 22),
    ("schedule", "Schedule", "sched_…", 22),
]


def filter_choices(environment: Environment, filters: RunFilters) -> dict[str, Any]:
    """What the filter bar (partials/run_filters.html) offers and shows, beside the filters."""
    env = urlencode({"env": environment.slug})
    chips = [{"value": tag, "without": f"{env}&{filters.query_string_without('tag', tag)}"} for tag in filters.tag]
    return {
        "status_choices": status_choices(),
        "status_summary": summary([LABELS[status] for status in filters.status], "Any status", "statuses"),
        "task_choices": task_choices(environment.id, filters.task),
        "task_summary": summary(list(filters.task), "Any task", "tasks"),
        "period_choices": period_choices(filters.period),
        "tag_chips": chips,
        "log_chips": log_chips(env, filters),
        "single_fields": more_fields(environment, filters),
        "more_open": bool(filters.more_active) or any(name in filters.errors for name in ("tag", *SINGLE)),
    }


def log_chips(env: str, filters: RunFilters) -> list[dict[str, str]]:
    """The active log filters as chips, each with the link that removes it."""
    shown = [("logs", f"Logs contain {filters.logs}", bool(filters.logs))]
    shown.append(("log_errors", "Has ERROR logs", filters.log_errors))
    return [
        {"name": name, "label": label, "without": f"{env}&{filters.query_string_without(name)}"}
        for name, label, active in shown
        if active
    ]


def more_fields(environment: Environment, filters: RunFilters) -> list[dict[str, Any]]:
    suggestions = {"queue": queue_choices(environment.id), "region": region_choices()}
    return [
        {
            "name": name,
            "label": label,
            "placeholder": placeholder,
            "size": size,
            "value": getattr(filters, name),
            "error": filters.errors.get(name, ""),
            "select": name == "machine",
            "choices": registry.MACHINES if name == "machine" else suggestions.get(name),
        }
        for name, label, placeholder, size in MORE_FILTERS
    ]


def summary(names: list[str], none: str, plural: str) -> str:
    """How a filter menu's button reads: "Any task", "hello-world", "Queued, Executing", "3 tasks"."""
    if not names:
        return none
    return ", ".join(names) if len(names) <= 2 else f"{len(names)} {plural}"


def run_detail(request: HtmxHttpRequest, run_id: str) -> HttpResponse:
    environment = current_environment(request)
    run = with_relations(Run.objects.filter(pk=run_id)).first()
    if run is None or run.environment_id != environment.id:
        context = {"environment": environment, "run_id": run_id, "elsewhere": run.environment if run else None}
        return render(request, "dashboard/run_not_found.html", context, status=404)
    template = "dashboard/partials/run_panel.html" if request.htmx else "dashboard/run.html"
    now = timezone.now()
    live = urlencode({"since": to_micros(now)})
    context = {"environment": environment, "live_query": live, **run_panel_context(run, now), **roles(request.user)}
    if not request.htmx and context["perms_payload"]:
        context |= log_views.panel_context(run)
    return render(request, template, context)


def batch_detail(request: HtmxHttpRequest, batch_id: str) -> HttpResponse:
    environment = current_environment(request)
    batch = Batch.objects.select_related("environment", "parent").filter(pk=batch_id).first()
    if batch is None or batch.environment_id != environment.id:
        context = {"environment": environment, "batch_id": batch_id, "elsewhere": batch.environment if batch else None}
        return render(request, "dashboard/batch_not_found.html", context, status=404)
    runs = Run.objects.filter(batch=batch)
    page = paginate(runs, after=parse_cursor(request.GET.get("after")), before=parse_cursor(request.GET.get("before")))
    mark_held(page.rows, timezone.now())  # its live rows are marked too (dashboard.consumers.render_push)
    context = {
        "environment": environment,
        "page": page,
        "page_query": urlencode({"env": environment.slug}),
        "live_query": live_query(page, []),
        **batch_counts_context(batch),
    }
    return render(request, "dashboard/batch.html", context)


def with_relations(runs: QuerySet[Run]) -> QuerySet[Run]:
    """Runs with what the run panel shows of their relatives, in one query."""
    return runs.select_related("environment", "parent", "root", "batch", "replayed_from")


def run_panel_context(run: Run, now: datetime | None = None) -> dict[str, Any]:
    """Everything partials/run_panel.html shows, from current database state."""
    now = now or timezone.now()
    children = list(run.children.order_by("created_at", "id")[: CHILDREN_SHOWN + 1])
    return {
        "run": run,
        "events": list(run.events.all()),
        "attempts": list(run.attempts.all()),
        "children": children[:CHILDREN_SHOWN],
        "children_total": run.children.count() if len(children) > CHILDREN_SHOWN else len(children),
        "child_batches": list(run.child_batches.order_by("created_at", "id")),
        "replays": list(run.replays.order_by("-created_at", "-id")[:REPLAYS_SHOWN]),
        "why": not_running_reason(run, now),
    }


def batch_counts_context(batch: Batch) -> dict[str, Any]:
    """Everything partials/batch_counts.html shows: the batch and how many of its runs are in each status."""
    rows = Run.objects.filter(batch=batch).values_list("status").annotate(n=Count("id")).order_by()
    by_status = dict(rows)
    counts = [{"status": status, "count": by_status[status]} for status in RunStatus.values if by_status.get(status)]
    total = sum(by_status.values())
    finished = sum(n for status, n in by_status.items() if is_final(status))
    # An item whose idempotency key (or debounce key) matched an existing run names that run,
    # which belongs to no batch or another one: it is neither counted nor listed here.
    matched = list(Run.objects.filter(pk__in=batch.run_ids).exclude(batch_id=batch.id).order_by("created_at", "id"))
    context = {"batch": batch, "counts": counts, "total": total, "finished": finished}
    return context | {"matched": matched[:MATCHED_SHOWN], "matched_count": len(matched)}


# --- why a run is not running ------------------------------------------------------------


def not_running_reason(run: Run, now: datetime) -> dict[str, Any] | None:
    """What a run that has not started (or is between attempts) waits for; None otherwise.

    For partials/run_why.html; `kind` says which sentence to show.
    """
    if run.status == RunStatus.DELAYED:
        return {"kind": "delayed", "until": run.delay_until}
    if run.status == RunStatus.PENDING_VERSION:
        return {"kind": "pending_version"}
    if run.status == RunStatus.WAITING:
        return waiting_reason(run)
    if run.status == RunStatus.QUEUED:
        # Only a failed attempt's backoff puts available_at in the future (see runs.engine.execution).
        if run.attempt_count and run.available_at is not None and run.available_at > now:
            return {"kind": "retrying", "attempt": run.attempt_count, "at": run.available_at}
        return queue_reason(run, now)
    if run.status == RunStatus.DEQUEUED:
        return worker_reason(run, now)
    return None


def worker_reason(run: Run, now: datetime) -> dict[str, Any] | None:
    """An admitted run waits for a worker of its Celery queue: say so when every worker online
    there drains, or none is online; None while one could take it."""
    celery_queue = run.celery_queue or registry.celery_queue(run.machine, run.region)
    alive_since = now - timedelta(seconds=settings.RUNYARD_WORKER_TIMEOUT)
    # Workers are a handful of rows: no index needed for the array lookup.
    serving = list(Worker.objects.filter(queues__contains=[celery_queue], last_seen_at__gte=alive_since))
    if not serving:
        return {"kind": "no_worker", "celery_queue": celery_queue}
    if all(w.draining for w in serving):
        return {"kind": "draining", "celery_queue": celery_queue, "workers": serving}
    return None


def waiting_reason(run: Run) -> dict[str, Any]:
    ids = open_children(run.id)
    shown = list(Run.objects.filter(pk__in=ids).order_by("created_at", "id")[:WAITING_SHOWN])
    return {"kind": "waiting", "count": len(ids), "children": shown, "more": len(ids) - len(shown)}


def queue_reason(run: Run, now: datetime) -> dict[str, Any]:
    """The run's queue, its limit (an override's, while one holds) and how many runs hold a slot
    of it (of the run's key: each key has its own); or, while a pause of its environment, its
    task or its queue holds it, that pause (runs.holds)."""
    hold = holds_in([run.environment_id], now).of(run)
    if hold is not None:
        return {
            "kind": "paused",
            "paused": hold.kind,
            "name": hold.name,
            "queue": run.queue,
            "by": hold.by,
            "since": hold.since,
            "reason": hold.reason,
            "resume_at": hold.resume_at,
            "held": held_count(run.environment_id, hold),
        }
    queue = Queue.objects.filter(environment_id=run.environment_id, name=run.queue).first()
    limit = queue.limit_as_of(now) if queue is not None else None
    running = Run.objects.filter(
        environment_id=run.environment_id,
        queue=run.queue,
        concurrency_key=run.concurrency_key,
        status__in=ACTIVE_STATUSES,
    ).count()
    return {
        "kind": "queued",
        "queue": run.queue,
        "key": run.concurrency_key,
        "limit": limit,
        "running": running,
        "full": limit is not None and running >= limit,
    }


def current_environment(request: HttpRequest) -> Environment:
    """The environment named by ?env=, else the session's, else dev; remembered in the session."""
    slug = request.GET.get("env") or request.session.get("env") or DEFAULT_ENVIRONMENT
    if not SLUG_RE.match(slug):
        slug = DEFAULT_ENVIRONMENT  # no environment could have it (and PostgreSQL refuses NUL)
    environment = Environment.objects.filter(slug=slug).first()
    if environment is None:
        environment = Environment.objects.filter(slug=DEFAULT_ENVIRONMENT).first()
    if environment is None:
        raise Http404("No environments are set up; run the migrations.")
    if request.session.get("env") != environment.slug:
        request.session["env"] = environment.slug
    return environment


# --- keyset pagination on (created_at, id), newest first; never COUNT(*) (runs.keyset) -------

RUNS = Keyset("created_at", ids=RUN_ID_RE)
Cursor = tuple[datetime, str]
Page = keyset.Page[Run]


def paginate(runs: QuerySet[Run], *, after: Cursor | None, before: Cursor | None) -> Page:
    """One page of runs, newest first: older than `after` (which wins), newer than `before`, or the
    newest; fewer than a page of newer runs make the first page."""
    return RUNS.page(runs, size=PAGE_SIZE, after=after, before=before if after is None else None, refill=True)


def newer_than(cursor: Cursor, *, inclusive: bool = False) -> Q:
    return RUNS.newer(cursor, inclusive=inclusive)


def make_cursor(run: Run) -> str:
    return RUNS.encode(RUNS.key(run))


def parse_cursor(value: str | None) -> Cursor | None:
    """`<microseconds since epoch>.<run id>`; anything else is ignored (first page)."""
    return RUNS.decode(value)


def live_query(page: Page, params: list[tuple[str, str]], now: datetime | None = None) -> str:
    """Query string of a runs table's websocket: its filters, which rows are on screen, and since when."""
    live: list[tuple[str, str | int]] = [*params, ("since", to_micros(now or timezone.now()))]
    if page.rows:
        live += [("newest", make_cursor(page.rows[0])), ("oldest", make_cursor(page.rows[-1]))]
    if page.is_first:
        live.append(("prepend", 1))
    return urlencode(live)
