"""The queues page and the workers page of the current environment.

The queues page also carries the operators' queue controls (pause and resume, override and
reset the concurrency limit): forms that POST to queue_action, which calls runs.engine.queues
(it audits) and sends the browser back to the page.

Both pages are live by htmx polling, not the websocket: their partial's root element asks
for itself every POLL_SECONDS and the view answers 204 (htmx swaps nothing) when the data
has not changed since the copy on screen, so a quiet page costs a few GROUP BYs and no DOM
churn. Polling suits them: queue counts change with every run of the environment, which
the per-run websocket messages would turn into a storm of re-counts.

Counting never touches finished runs: each count filters on a status set with its own
partial index (run_active for DEQUEUED/EXECUTING, run_queued for QUEUED, run_delayed for
DELAYED) and groups in PostgreSQL: three queries for the table, three more for the keys of
all expanded queues together. Measured on a million runs (55,000 unfinished, 300 queues,
5,000 keys) on 2 busy cores: 70 to 150 ms per refresh, most of it reading queued_at for
"waiting since". Hidden tabs do not poll.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Count, Min, Q, QuerySet
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from dashboard import action_forms as forms
from dashboard.audit import actor
from dashboard.permissions import OPERATE, can_operate, require
from dashboard.views import HtmxHttpRequest, current_environment
from runs import engine, registry
from runs.models import Environment, Queue, Run, Worker
from runs.states import ACTIVE_STATUSES, RunStatus

POLL_SECONDS = 2
QUEUES_SHOWN = 100  # busiest first; the rest are reached with the name filter
KEYS_SHOWN = 50  # concurrency keys listed under an expanded queue, busiest first
OPEN_MAX = 20  # queues expanded at once (?open= values kept)
RUNS_SHOWN = 20  # active runs linked per worker
OFFLINE_SHOWN = timedelta(hours=24)  # offline workers stay listed (greyed) this long
MAX_NAME = 256

RUNNING = sorted(ACTIVE_STATUSES)


# --- queues ------------------------------------------------------------------------------


@dataclass
class Counts:
    """Runs of one queue (or one concurrency key of it) holding a slot, queued and delayed."""

    name: str
    running: int = 0
    queued: int = 0
    delayed: int = 0
    waiting_since: datetime | None = None  # queued_at of its oldest queued run
    limit: int | None = None
    full: bool = False  # running has reached the limit (of this key, or of a keyless queue)
    keys_full: int = 0  # concurrency keys at the limit (queues only)
    has_keys: bool = False
    is_open: bool = False
    keys: list[Counts] = field(default_factory=list)
    keys_total: int = 0
    toggle_query: str = ""  # the page's query with this queue's keys shown or hidden
    control: Control | None = None  # queues with a row only: what an operator has set on them

    @property
    def busy(self) -> tuple[int, int, str]:
        return (-(self.running + self.queued), -self.delayed, self.name)

    @property
    def dom_id(self) -> str:
        return "q-" + hashlib.sha1(self.name.encode(), usedforsecurity=False).hexdigest()[:12]


@dataclass
class Control:
    """A queue's pause and limit override, as the page shows them (`limit` of Counts is the
    limit admission enforces now)."""

    queue_id: int
    base_limit: int | None
    paused: bool = False
    paused_by: str = ""
    paused_at: datetime | None = None
    pause_reason: str = ""
    resume_at: datetime | None = None
    override: int | None = None
    overridden_by: str = ""
    overridden_at: datetime | None = None
    override_until: datetime | None = None


def control_of(queue: Queue, now: datetime) -> Control:
    control = Control(queue_id=queue.pk, base_limit=queue.concurrency_limit)
    if queue.paused_as_of(now):
        control.paused, control.paused_by, control.paused_at = True, who(queue.paused_by), queue.paused_at
        control.pause_reason, control.resume_at = queue.pause_reason, queue.resume_at
    if (override := queue.override_as_of(now)) is not None:
        control.override, control.overridden_by = override, who(queue.limit_overridden_by)
        control.overridden_at, control.override_until = queue.limit_overridden_at, queue.limit_override_until
    return control


def who(actor: str) -> str:
    """An engine actor as the audit log names it: a dashboard user by username."""
    return actor.removeprefix("user:")


def queues(request: HtmxHttpRequest) -> HttpResponse:
    environment = current_environment(request)
    context, digest_of = queues_context(request, environment)
    return render_live(request, "queues", context, digest_of=digest_of)


def queues_context(request: HtmxHttpRequest, environment: Environment) -> tuple[dict[str, Any], list[Any]]:
    """The queues page's context, and what its digest is made of."""
    search = clean(request.GET.get("q", ""))
    opened = list(dict.fromkeys(clean(v) for v in request.GET.getlist("open") if clean(v)))[:OPEN_MAX]
    rows, total = queue_rows(environment, search=search, opened=opened)
    state = {"env": environment.slug, **({"q": search} if search else {})}
    for row in rows:
        toggled = [name for name in opened if name != row.name] + ([] if row.is_open else [row.name])
        row.toggle_query = urlencode([*state.items(), *(("open", name) for name in toggled)])
    context = {
        "environment": environment,
        "queues": rows,
        "total": total,
        "search": search,
        "opened": opened,
        "now": timezone.now(),
        "state": state,
        "runs_query": urlencode({"env": environment.slug}),
        "perms_operate": can_operate(request.user),
        "environment_paused": environment.paused_as_of(timezone.now()),
    }
    return context, [asdict(row) for row in rows] + [total]


QUEUE_ACTIONS = ("pause", "resume", "override", "reset")


@require(OPERATE)
@require_POST
def queue_action(request: HtmxHttpRequest, queue_id: int, action: str) -> HttpResponse:
    """Pause, resume, override or reset a queue of the current environment, then back to the page."""
    environment = current_environment(request)
    queue = Queue.objects.filter(pk=queue_id, environment=environment).first()
    if queue is None or action not in QUEUE_ACTIONS:
        raise Http404("No such queue in this environment")
    now = timezone.now()
    form_class = {"pause": forms.PauseForm, "override": forms.OverrideForm}.get(action, forms.ActionForm)
    form = form_class(request.POST, now=now)
    if not form.is_valid():
        context, digest_of = queues_context(request, environment)
        context |= {"errors": forms.errors_of(form), "failed": queue}
        response = render_live(request, "queues", context, digest_of=digest_of)
        response.status_code = 422
        return response
    data = form.cleaned_data
    kwargs: dict[str, Any] = {"queue_id": queue.pk, "actor": actor(request), "reason": data["reason"], "now": now}
    kwargs["user"] = request.user
    if action == "pause":
        engine.pause_queue(resume_at=data["resume_at"], **kwargs)
    elif action == "resume":
        engine.resume_queue(**kwargs)
    elif action == "override":
        engine.override_queue_limit(limit=data["limit"], until=data["until"], **kwargs)
    else:
        engine.reset_queue_limit(**kwargs)
    return redirect(f"{reverse('queues')}?{urlencode({'env': environment.slug})}")


def clean(value: str) -> str:
    """A queue name as typed: PostgreSQL text cannot hold NUL, and no name is longer than MAX_NAME."""
    return value.replace("\x00", "").strip()[:MAX_NAME]


def queue_rows(environment: Environment, *, search: str = "", opened: list[str]) -> tuple[list[Counts], int]:
    """The busiest QUEUES_SHOWN queues with their counts (and keys of the opened ones), and how many queues match."""
    runs = Run.objects.filter(environment=environment)
    declared = Queue.objects.filter(environment=environment)
    if search:
        runs, declared = runs.filter(queue__icontains=search), declared.filter(name__icontains=search)
    # Queue rows, plus queues that only appear on runs (e.g. made before queues had rows).
    now = timezone.now()
    by_name = {q.name: Counts(q.name, limit=q.limit_as_of(now), control=control_of(q, now)) for q in declared}
    count_queues(runs, by_name)
    shown = sorted(by_name.values(), key=lambda c: c.busy)[:QUEUES_SHOWN]
    expanded = {counts.name: counts for counts in shown if counts.name in opened}
    for counts in expanded.values():
        counts.is_open = True
    if expanded:
        count_keys(runs, expanded)
    return shown, len(by_name)


def count_queues(runs: QuerySet[Run], by_name: dict[str, Counts]) -> None:
    """Fill in each queue's running, queued and delayed counts: one GROUP BY per status set."""
    keyed = Count("id", filter=~Q(concurrency_key=""))
    # Runs holding a slot are few (at most the workers' slots): grouping them by key is cheap.
    active = runs.filter(status__in=RUNNING).values_list("queue", "concurrency_key").annotate(n=Count("id"))
    for name, key, n in active.order_by():
        counts = by_name.setdefault(name, Counts(name))
        counts.running += n
        counts.has_keys |= key != ""
        counts.keys_full += counts.limit is not None and n >= counts.limit
    queued = runs.filter(status=RunStatus.QUEUED).values_list("queue")
    for name, n, since, with_key in queued.annotate(n=Count("id"), since=Min("queued_at"), k=keyed).order_by():
        counts = by_name.setdefault(name, Counts(name))
        counts.queued, counts.waiting_since, counts.has_keys = n, since, counts.has_keys or with_key > 0
    delayed = runs.filter(status=RunStatus.DELAYED).values_list("queue")
    for name, n, with_key in delayed.annotate(n=Count("id"), k=keyed).order_by():
        counts = by_name.setdefault(name, Counts(name))
        counts.delayed, counts.has_keys = n, counts.has_keys or with_key > 0
    for counts in by_name.values():
        counts.full = not counts.has_keys and counts.limit is not None and counts.running >= counts.limit


def count_keys(runs: QuerySet[Run], opened: dict[str, Counts]) -> None:
    """Fill in the concurrency keys of the opened queues, busiest first: one GROUP BY per status set."""
    runs = runs.filter(queue__in=list(opened))
    found: dict[tuple[str, str], Counts] = {}

    def key(name: str, value: str) -> Counts:
        return found.setdefault((name, value), Counts(value, limit=opened[name].limit))

    by_key = ("queue", "concurrency_key")
    for name, value, n in runs.filter(status__in=RUNNING).values_list(*by_key).annotate(n=Count("id")).order_by():
        key(name, value).running = n
    queued = runs.filter(status=RunStatus.QUEUED).values_list(*by_key)
    for name, value, n, since in queued.annotate(n=Count("id"), since=Min("queued_at")).order_by():
        key(name, value).queued, key(name, value).waiting_since = n, since
    for name, value, n in runs.filter(status=RunStatus.DELAYED).values_list(*by_key).annotate(n=Count("id")).order_by():
        key(name, value).delayed = n
    for (name, _), counts in sorted(found.items(), key=lambda item: item[1].busy):
        counts.full = counts.limit is not None and counts.running >= counts.limit
        queue = opened[name]
        queue.keys_total += 1
        if len(queue.keys) < KEYS_SHOWN:
            queue.keys.append(counts)


# --- workers -----------------------------------------------------------------------------


@dataclass
class WorkerRow:
    worker: Worker
    online: bool
    runs: list[Run]
    runs_total: int = 0  # active runs of this environment on it
    elsewhere: int = 0  # active runs of other environments on it

    @property
    def more(self) -> int:
        return self.runs_total - len(self.runs)


def workers(request: HtmxHttpRequest) -> HttpResponse:
    environment = current_environment(request)
    now = timezone.now()
    online, offline = worker_rows(environment, now)
    context = {
        "environment": environment,
        "sections": [
            {"key": "online", "title": "Online", "online": True, "rows": online},
            {"key": "offline", "title": "Offline", "online": False, "rows": offline},
        ],
        "now": now,
        "state": {"env": environment.slug},
        "timeout": int(settings.RUNYARD_WORKER_TIMEOUT),
        "offline_hours": int(OFFLINE_SHOWN.total_seconds() // 3600),
        "worker_command": worker_command(),
    }
    return render_live(request, "workers", context, digest_of=[worker_digest(row) for row in online + offline])


def worker_rows(environment: Environment, now: datetime) -> tuple[list[WorkerRow], list[WorkerRow]]:
    """Workers seen within the heartbeat timeout, and those seen within OFFLINE_SHOWN before it."""
    alive_since = now - timedelta(seconds=settings.RUNYARD_WORKER_TIMEOUT)
    listed = list(Worker.objects.filter(last_seen_at__gte=now - OFFLINE_SHOWN).order_by("hostname"))
    hostnames = [w.hostname for w in listed]
    # DEQUEUED/EXECUTING: a few rows per worker slot, found through the run_active index.
    active = Run.objects.filter(status__in=RUNNING, worker__in=hostnames)
    here: dict[str, list[Run]] = {}
    for run in active.filter(environment=environment).order_by("started_at", "id"):
        here.setdefault(run.worker, []).append(run)
    elsewhere = dict(active.exclude(environment=environment).values_list("worker").annotate(n=Count("id")).order_by())
    rows = [
        WorkerRow(
            worker=w,
            online=w.last_seen_at >= alive_since,
            runs=here.get(w.hostname, [])[:RUNS_SHOWN],
            runs_total=len(here.get(w.hostname, [])),
            elsewhere=elsewhere.get(w.hostname, 0),
        )
        for w in listed
    ]
    return [r for r in rows if r.online], [r for r in rows if not r.online]


def worker_digest(row: WorkerRow) -> list[Any]:
    w = row.worker
    runs = [(run.id, run.status) for run in row.runs]
    return [
        w.hostname,
        row.online,
        w.queues,
        w.tasks,
        w.started_at,
        w.last_seen_at,
        w.draining_at,
        w.drain_reason,
        runs,
        row.runs_total,
        row.elsewhere,
    ]


def worker_command() -> str:
    """The worker command `make run` starts (see dashboard.management.launcher)."""
    return "celery -A dashboard worker -l info -Q " + ",".join(registry.worker_queues())


# --- live by polling ---------------------------------------------------------------------


def render_live(request: HtmxHttpRequest, page: str, context: dict[str, Any], *, digest_of: Any) -> HttpResponse:
    """The page, or (for htmx) its partial; 204 when the partial's data is what the browser shows."""
    digest = hashlib.sha1(json.dumps(digest_of, default=str).encode(), usedforsecurity=False).hexdigest()[:16]
    is_poll = request.htmx and not request.htmx.history_restore_request
    if is_poll and request.GET.get("seen") == digest:
        return HttpResponse(status=204)
    poll = [*context["state"].items(), *(("open", name) for name in context.get("opened", [])), ("seen", digest)]
    context |= {"poll_query": urlencode(poll), "poll_seconds": POLL_SECONDS}
    template = f"dashboard/partials/{page}_table.html" if is_poll else f"dashboard/{page}.html"
    return render(request, template, context)
