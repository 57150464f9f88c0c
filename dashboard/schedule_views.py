"""Schedules of the current environment: the list, a schedule's page, and the operators' forms.

Every change goes through runs.engine.schedules (which audits it in its transaction); a
schedule declared in a task's code can only be activated or deactivated here, since the next
worker registration would put anything else back.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from dashboard.audit import actor
from dashboard.permissions import OPERATE, can_operate, require, roles
from dashboard.schedule_form import ScheduleForm, initial_of, pretty
from dashboard.views import HtmxHttpRequest, current_environment
from runs import cron, engine
from runs.filters import task_choices
from runs.models import Environment, Run, Schedule, ScheduleTick, ScheduleType
from runs.schedule_spec import spec_of

PER_PAGE = 50
TICKS_SHOWN = 20
RUNS_SHOWN = 20
RUN_SUMMARY = ("id", "task_identifier", "status", "created_at")
SCHEDULE_ID_RE = re.compile(r"^[0-9A-Za-z_]{1,64}$")


@dataclass
class ScheduleRow:
    schedule: Schedule
    words: str
    upcoming: list[datetime] = field(default_factory=list)
    last_run: Run | None = None

    @property
    def declarative(self) -> bool:
        return self.schedule.type == ScheduleType.DECLARATIVE


def rows_of(schedules: list[Schedule], now: datetime) -> list[ScheduleRow]:
    """Each schedule with its cron in words, its next fire times and its last run (one query for all)."""
    last_ids = [s.last_run_id for s in schedules if s.last_run_id]
    last_runs = {run.id: run for run in Run.objects.filter(pk__in=last_ids).only(*RUN_SUMMARY)}
    return [
        ScheduleRow(
            schedule=s,
            words=cron.describe(s.cron),
            upcoming=engine.upcoming(s, now=now),
            last_run=last_runs.get(s.last_run_id),
        )
        for s in schedules
    ]


def schedules_list(request: HtmxHttpRequest) -> HttpResponse:
    environment = current_environment(request)
    page = Paginator(Schedule.objects.filter(environment=environment), PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "environment": environment,
        "rows": rows_of(list(page.object_list), timezone.now()),
        "page": page,
        "env_query": urlencode({"env": environment.slug}),
        "perms_operate": can_operate(request.user),
    }
    return render(request, "dashboard/schedules.html", context)


def schedule_detail(request: HtmxHttpRequest, schedule_id: str) -> HttpResponse:
    environment = current_environment(request)
    schedule = found(environment, schedule_id)
    return render(request, "dashboard/schedule.html", detail_context(request, environment, schedule))


def detail_context(request: HtmxHttpRequest, environment: Environment, schedule: Schedule) -> dict[str, Any]:
    ticks = list(ScheduleTick.objects.filter(schedule=schedule)[:TICKS_SHOWN])
    runs = Run.objects.filter(environment=environment, schedule_id=schedule.id).order_by("-created_at", "-id")
    shown_runs = list(runs.only(*RUN_SUMMARY)[:RUNS_SHOWN])
    tick_runs = {
        run.id: run for run in Run.objects.filter(pk__in=[t.run_id for t in ticks if t.run_id]).only(*RUN_SUMMARY)
    }
    return {
        "environment": environment,
        "row": rows_of([schedule], timezone.now())[0],
        "schedule": schedule,
        "ticks": [(tick, tick_runs.get(tick.run_id)) for tick in ticks],
        "runs": shown_runs,
        "runs_query": urlencode({"env": environment.slug, "schedule": schedule.id}),
        "env_query": urlencode({"env": environment.slug}),
        "created_by": schedule.created_by.removeprefix("user:"),  # as the audit log names users
        "payload_text": pretty(schedule.payload),
        "options_text": pretty(schedule.options or None),
        **roles(request.user),
    }


@require(OPERATE)
def schedule_new(request: HtmxHttpRequest) -> HttpResponse:
    environment = current_environment(request)
    form = ScheduleForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            schedule, created = engine.create_schedule(
                environment=environment, spec=form.cleaned_data["spec"], actor=actor(request), user=request.user
            )
        except engine.DeclarativeSchedule as exc:
            # The deduplication key is a declared schedule's: only its task's code may change it.
            form.add_error("deduplication_key", str(exc))
            return render_form(request, environment, form, None)
        verb = "Created" if created else "Updated the schedule with this deduplication key:"
        messages.success(request, f"{verb} {schedule.id}.")
        return redirect_to(environment, schedule)
    return render_form(request, environment, form, None)


def gone_is_404(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A schedule deleted between the page's lookup and the engine's lock is not found, not a 500."""

    @wraps(view)
    def guarded(request: HtmxHttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except engine.ScheduleNotFound as exc:
            raise Http404(str(exc)) from None

    return guarded


@require(OPERATE)
@gone_is_404
def schedule_edit(request: HtmxHttpRequest, schedule_id: str) -> HttpResponse:
    environment = current_environment(request)
    schedule = found(environment, schedule_id)
    if schedule.type == ScheduleType.DECLARATIVE:
        return declared(request, environment, schedule)
    base = spec_of(schedule)
    form = ScheduleForm(request.POST if request.method == "POST" else None, base=base, initial=initial_of(schedule))
    if request.method == "POST" and form.is_valid():
        engine.update_schedule(
            environment_id=environment.pk,
            schedule_id=schedule.id,
            spec=form.cleaned_data["spec"],
            actor=actor(request),
            user=request.user,
        )
        messages.success(request, f"Saved {schedule.id}.")
        return redirect_to(environment, schedule)
    return render_form(request, environment, form, schedule)


def render_form(
    request: HtmxHttpRequest, environment: Environment, form: ScheduleForm, schedule: Schedule | None
) -> HttpResponse:
    context = {
        "environment": environment,
        "form": form,
        "schedule": schedule,
        "task_choices": task_choices(environment.pk),
        "timezones": sorted(cron.timezones()),
        "env_query": urlencode({"env": environment.slug}),
    }
    return render(request, "dashboard/schedule_form.html", context, status=422 if form.errors else 200)


SCHEDULE_ACTIONS = ("activate", "deactivate", "delete")


@require(OPERATE)
@require_POST
@gone_is_404
def schedule_action(request: HtmxHttpRequest, schedule_id: str, action: str) -> HttpResponse:
    """Activate, deactivate or delete a schedule, then back to its page (the list after a delete)."""
    environment = current_environment(request)
    schedule = found(environment, schedule_id)
    if action not in SCHEDULE_ACTIONS:
        raise Http404("No such schedule action")
    kwargs: dict[str, Any] = {"environment_id": environment.pk, "schedule_id": schedule.id}
    kwargs |= {"actor": actor(request), "user": request.user}
    if action == "delete":
        if schedule.type == ScheduleType.DECLARATIVE:
            return declared(request, environment, schedule)
        engine.delete_schedule(**kwargs)
        messages.success(request, f"Deleted {schedule.id}; its runs stay.")
        return HttpResponseRedirect(f"{reverse('schedules')}?{urlencode({'env': environment.slug})}")
    engine.set_schedule_active(active=action == "activate", **kwargs)
    messages.success(request, f"{action.title()}d {schedule.id}.")
    return redirect_to(environment, schedule)


@require(OPERATE)
@require_POST
@gone_is_404
def schedule_run_now(request: HtmxHttpRequest, schedule_id: str) -> HttpResponse:
    """Trigger the schedule's task now, as a tick would, then back to its page (the run is listed there)."""
    environment = current_environment(request)
    schedule = found(environment, schedule_id)
    # Written beside this page by the engine's firing work (#18.2); the merge brings it.
    engine.run_schedule_now(  # type: ignore[attr-defined, unused-ignore]
        environment_id=environment.pk, schedule_id=schedule.id, actor=actor(request), user=request.user
    )
    messages.success(request, f"Triggered {schedule.task_id} from {schedule.id}.")
    return redirect_to(environment, schedule)


def declared(request: HtmxHttpRequest, environment: Environment, schedule: Schedule) -> HttpResponse:
    """409: the schedule's page, saying why it cannot be changed here."""
    context = detail_context(request, environment, schedule) | {"refused": True}
    return render(request, "dashboard/schedule.html", context, status=409)


def found(environment: Environment, schedule_id: str) -> Schedule:
    if not SCHEDULE_ID_RE.match(schedule_id):
        raise Http404("No such schedule")  # PostgreSQL text cannot even hold some of what a URL can
    try:
        return engine.find_schedule(environment_id=environment.pk, schedule_id=schedule_id)
    except engine.ScheduleNotFound as exc:
        raise Http404(str(exc)) from None


def redirect_to(environment: Environment, schedule: Schedule) -> HttpResponse:
    return HttpResponseRedirect(f"{reverse('schedule', args=[schedule.id])}?{urlencode({'env': environment.slug})}")
