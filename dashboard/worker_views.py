"""A worker's page: its state (online, draining, offline, gone), its queues and tasks, the
runs it executes now and the attempts it ran, newest first; operators drain and undrain it.

The page lives by polling like the workers page (ops_views.render_live). Its history is read
through the attempts' (worker, started_at) index, a page at a time with a keyset cursor, and
scoped to the current environment as the workers page's active runs are. A worker whose row is
gone (it shut down without draining) still has a page while attempts name it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import QuerySet
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from dashboard import action_forms as forms
from dashboard.audit import actor
from dashboard.ops_views import RUNNING, RUNS_SHOWN, render_live, who
from dashboard.permissions import OPERATE, can_operate, require
from dashboard.views import HtmxHttpRequest, current_environment
from runs import engine
from runs.keyset import Cursor, Keyset, Page
from runs.models import Environment, Run, RunAttempt, Worker

HISTORY_SHOWN = 50  # attempts per page of the history

# An attempt's (started_at, id). The page's ?before= is the keyset's `after`: older attempts.
ATTEMPTS = Keyset("started_at")
History = Page[RunAttempt]


def worker(request: HtmxHttpRequest, hostname: str) -> HttpResponse:
    context, digest_of = worker_context(request, hostname)
    return render_live(request, "worker", context, digest_of=digest_of)


def worker_context(request: HtmxHttpRequest, hostname: str) -> tuple[dict[str, Any], list[Any]]:
    """The worker page's context, and what its digest is made of; Http404 for a worker never seen."""
    environment = current_environment(request)
    now = timezone.now()
    row = Worker.objects.filter(hostname=hostname).first()
    before = ATTEMPTS.decode(request.GET.get("before"))  # a bad one: the newest page
    history = worker_history(hostname, environment, before=before)
    if row is None and history.is_first and not history.rows:
        raise Http404("No such worker")
    active = Run.objects.filter(status__in=RUNNING, worker=hostname)
    here = list(active.filter(environment=environment).order_by("started_at", "id")[: RUNS_SHOWN + 1])
    state = {"env": environment.slug, **({"before": request.GET["before"]} if before else {})}
    context: dict[str, Any] = {
        "environment": environment,
        "hostname": hostname,
        "worker": row,
        "status": status_of(row, now),
        "online": row is not None and alive(row, now),
        "drained_by": who(row.drained_by) if row else "",
        "runs": here[:RUNS_SHOWN],
        "more_runs": len(here) > RUNS_SHOWN,
        "elsewhere": active.exclude(environment=environment).count(),
        "history": history,
        "now": now,
        "state": state,
        "env_query": urlencode({"env": environment.slug}),
        "timeout": int(settings.RUNYARD_WORKER_TIMEOUT),
        "perms_operate": can_operate(request.user) and row is not None,
    }
    digest = [
        context["status"],
        context["online"],
        row and (row.queues, row.tasks, row.started_at, row.last_seen_at, row.draining_at),
        [(run.id, run.status) for run in here],
        context["elsewhere"],
        [(a.pk, a.status, a.finished_at) for a in history.rows],
    ]
    return context, digest


def status_of(row: Worker | None, now: datetime) -> str:
    """draining (whether or not it is up), online, offline (not seen lately) or gone (no row)."""
    if row is None:
        return "gone"
    if row.draining:
        return "draining"
    return "online" if alive(row, now) else "offline"


def alive(row: Worker, now: datetime) -> bool:
    return row.last_seen_at >= now - timedelta(seconds=settings.RUNYARD_WORKER_TIMEOUT)


def worker_history(hostname: str, environment: Environment, *, before: Cursor | None) -> History:
    """A page of the attempts the worker ran in the environment, newest first (no link to newer ones)."""
    attempts: QuerySet[RunAttempt] = RunAttempt.objects.filter(worker=hostname, run__environment=environment)
    fields = ("number", "status", "started_at", "finished_at", "run__id", "run__task_identifier", "run__status")
    attempts = attempts.select_related("run").only(*fields)
    return ATTEMPTS.page(attempts, size=HISTORY_SHOWN, after=before, look_newer=False)


WORKER_ACTIONS = ("drain", "undrain")


@require(OPERATE)
@require_POST
def worker_action(request: HtmxHttpRequest, hostname: str, action: str) -> HttpResponse:
    """Drain or undrain the worker, then back to its page; a reason too long is a 422."""
    if action not in WORKER_ACTIONS:
        raise Http404("No such action")
    form = forms.ActionForm(request.POST)
    if not form.is_valid():
        context, digest_of = worker_context(request, hostname)
        response = render_live(request, "worker", context | {"errors": forms.errors_of(form)}, digest_of=digest_of)
        response.status_code = 422
        return response
    operate = engine.drain_worker if action == "drain" else engine.undrain_worker
    try:
        operate(hostname=hostname, actor=actor(request), reason=form.cleaned_data["reason"], user=request.user)
    except engine.WorkerNotFound as exc:
        raise Http404(str(exc)) from exc
    environment = current_environment(request)
    return redirect(f"{reverse('worker', args=[hostname])}?{urlencode({'env': environment.slug})}")
