"""Operator actions: cancel, reschedule and replay a run; cancel or replay many runs at once.

Every action is confirmed. GET renders its form: a <dialog> when htmx asks for it from the run
page, a page of its own otherwise, so it works without JavaScript. POST validates and calls the
engine, which audits the action in its transaction; bad input re-renders the form with the
error beside its input (422). Only operators (runs.operate_run) may act: others get 403.

Bulk actions are only recorded here (runs.engine.bulk.create_bulk_action): the engine process
works them off in chunks, and /runs/bulk/<id>/ shows the progress.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.http import Http404, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django_htmx.http import HttpResponseClientRedirect

from dashboard import action_forms as forms
from dashboard.audit import actor, audit
from dashboard.permissions import OPERATE, can_view_payload, require, roles
from dashboard.views import HtmxHttpRequest, current_environment, with_relations
from runs import registry
from runs.engine import (
    BULK_ACTIONS,
    MAX_BULK_SELECTED,
    EngineError,
    create_bulk_action,
    replay_run,
    reschedule_run,
    start_now,
    try_cancel_run,
)
from runs.filters import RunFilters
from runs.models import BulkAction, BulkActionStatus, Environment, Run
from runs.states import LABELS, RunStatus, is_final

PREVIEW_CAP = 10_000  # "all matching" counts stop here: never an unbounded COUNT(*) in a request
PREVIEW_SHOWN = 5  # runs listed in a bulk preview
BULK_IDS_SHOWN = 10  # selected run ids linked from a bulk action's page
SCOPES = ("selected", "matching")
BULK_COLOURS = {"PENDING": "grey", "RUNNING": "blue", "COMPLETED": "green", "FAILED": "red"}


# --- one run ------------------------------------------------------------------------------


@require(OPERATE)
def run_cancel(request: HtmxHttpRequest, run_id: str) -> HttpResponse:
    environment = current_environment(request)
    run = with_relations(Run.objects.filter(pk=run_id, environment=environment)).first()
    if run is None:
        return run_not_found(request, environment, run_id)
    form = forms.ActionForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        reason = form.cleaned_data["reason"]
        after, changed = try_cancel_run(run_id=run.id, actor=actor(request), reason=reason, user=request.user)
        if changed:
            return done(request, reverse("run", args=[run.id]))
        run = after  # finished meanwhile
        form.add_error(None, blocked_cancel(run))
    return action_form(request, "cancel", run, form, blocked=blocked_cancel(run))


@require(OPERATE)
def run_reschedule(request: HtmxHttpRequest, run_id: str) -> HttpResponse:
    environment = current_environment(request)
    run = with_relations(Run.objects.filter(pk=run_id, environment=environment)).first()
    if run is None:
        return run_not_found(request, environment, run_id)
    now = timezone.now()
    initial = {"when": "delay", "at": forms.at_input(run.delay_until)}
    form = forms.RescheduleForm(request.POST if request.method == "POST" else None, initial=initial, now=now)
    if form.is_bound and blocked_reschedule(run):
        form.add_error(None, blocked_reschedule(run))
    if form.is_valid():
        reason, delay_until = form.cleaned_data["reason"], form.cleaned_data["delay_until"]
        try:
            who, user = actor(request), request.user
            if delay_until is None:
                start_now(run_id=run.id, actor=who, reason=reason, user=user, now=now)
            else:
                reschedule_run(run_id=run.id, delay_until=delay_until, actor=who, reason=reason, user=user, now=now)
            return done(request, reverse("run", args=[run.id]))
        except EngineError as exc:
            form.add_error(None, str(exc))
            run.refresh_from_db(fields=["status", "delay_until"])
    return action_form(request, "reschedule", run, form, blocked=blocked_reschedule(run))


@require(OPERATE)
def run_replay(request: HtmxHttpRequest, run_id: str) -> HttpResponse:
    environment = current_environment(request)
    run = with_relations(Run.objects.filter(pk=run_id, environment=environment)).first()
    if run is None:
        return run_not_found(request, environment, run_id)
    editor = forms.payload_editor(run) if can_view_payload(request.user) else None
    now = timezone.now()
    form = forms.ReplayForm(request.POST if request.method == "POST" else None, run=run, editor=editor, now=now)
    if form.is_valid():
        replay, reason = form.cleaned_data["replay"], form.cleaned_data["reason"]
        new = replay_run(
            run_id=run.id,
            actor=actor(request),
            options=replay.options,
            payload=forms.offloaded(run, replay.payload),
            overridden=replay.overridden,
            source="dashboard",
            request_key=f"dashboard:{form.cleaned_data['request_key'][:40]}",
            reason=reason,
            user=request.user,
            changed=replay.changed,
            now=now,
        ).run
        return done(request, reverse("run", args=[new.id]))
    extra = {"editor": editor, "machines": registry.MACHINES}
    return action_form(request, "replay", run, form, **extra)


def blocked_cancel(run: Run) -> str:
    """Why the run cannot be canceled ("" when it can)."""
    if is_final(run.status):
        return f"This run is {LABELS[run.status].lower()}: a finished run cannot be canceled."
    return ""


def blocked_reschedule(run: Run) -> str:
    """Why the run cannot be rescheduled ("" when it can)."""
    if run.status != RunStatus.DELAYED:
        return f"Only a delayed run can be rescheduled; this one is {LABELS[run.status].lower()}."
    return ""


def action_form(request: HtmxHttpRequest, name: str, run: Run, form: forms.ActionForm, **extra: Any) -> HttpResponse:
    """The action's form: the fragment for an htmx submit, a dialog for an htmx open, else a page."""
    errors = forms.errors_of(form)
    context = {
        "environment": run.environment,
        "run": run,
        "title": name.capitalize(),
        "blocked": "",
        "form_template": f"dashboard/actions/{name}.html",
        "values": forms.values_of(form),
        "errors": errors,
        **roles(request.user),
        **extra,
    }
    if request.htmx and request.method == "POST":
        template = context["form_template"]
    elif request.htmx:
        template = "dashboard/actions/dialog.html"
    else:
        template = "dashboard/actions/page.html"
    return render(request, template, context, status=422 if errors else 200)


def done(request: HtmxHttpRequest, url: str) -> HttpResponse:
    """After an action: to the page that shows its effect (a full load, also for htmx)."""
    if request.htmx:
        return HttpResponseClientRedirect(url)
    return HttpResponseRedirect(url, status=303)


def run_not_found(request: HtmxHttpRequest, environment: Environment, run_id: str) -> HttpResponse:
    elsewhere = Run.objects.select_related("environment").filter(pk=run_id).first()
    context = {"environment": environment, "run_id": run_id, "elsewhere": elsewhere.environment if elsewhere else None}
    return render(request, "dashboard/run_not_found.html", context, status=404)


# --- many runs ----------------------------------------------------------------------------


@require(OPERATE)
def bulk_start(request: HtmxHttpRequest) -> HttpResponse:
    """The bulk bar's submit: a preview of how many runs; with `confirm` and a reason, the bulk action."""
    if request.method != "POST":
        return HttpResponseRedirect(reverse("runs"))
    environment = current_environment(request)
    now = timezone.now()
    preview = bulk_preview(environment, request.POST, now)
    form = forms.BulkForm(request.POST)
    errors = preview.pop("errors") | forms.errors_of(form)
    values = forms.values_of(form)
    if "confirm" in request.POST and not errors:
        filters: RunFilters = preview["filters"]
        selected = preview["selected"] if preview["scope"] == "selected" else None
        with transaction.atomic():
            bulk = create_bulk_action(
                environment=environment,
                action=preview["action"],
                reason=form.cleaned_data["reason"],
                username=request.user.get_username(),
                user_id=request.user.pk,
                run_ids=selected,
                filters=None if selected else filters.as_dict(),
                now=now,
            )
            data = {"scope": preview["scope"], "preview": preview["count_text"], "filters": bulk.filters}
            audit(
                request, f"bulk.{bulk.action}", environment=environment, target=bulk.id, reason=bulk.reason, data=data
            )
        return HttpResponseRedirect(reverse("bulk", args=[bulk.id]), status=303)
    context = {"environment": environment, "values": values, "errors": errors, **preview}
    return render(request, "dashboard/bulk_preview.html", context, status=422 if errors else 200)


def bulk_preview(environment: Environment, post: QueryDict, now: Any) -> dict[str, Any]:
    """What a bulk submit would do: action, scope, the runs (counted, capped) and any errors."""
    errors: dict[str, str] = {}
    action, _, scope = post.get("do", "").partition(":")
    action, scope = post.get("action", action), post.get("scope", scope)
    if action not in BULK_ACTIONS:
        errors["form"] = f"Unknown bulk action {action!r}: cancel or replay"
    if scope not in SCOPES:
        errors["form"] = "Choose the selected runs or every run matching the filters"
    filters = RunFilters.from_query(post, now)
    selected = list(dict.fromkeys(run_id.strip() for run_id in post.getlist("runs") if run_id.strip()))
    runs = Run.objects.filter(environment=environment, created_at__lte=now)
    if scope == "selected":
        if len(selected) > MAX_BULK_SELECTED:
            errors["form"] = (
                f"{len(selected)} runs selected: at most {MAX_BULK_SELECTED}; act on all matching runs instead"
            )
        runs = runs.filter(pk__in=selected[:MAX_BULK_SELECTED])
        selected = list(runs.values_list("id", flat=True))
        if not selected and "form" not in errors:
            errors["form"] = "No runs selected: tick the runs on the list first, or act on every matching run"
    else:
        if filters.errors:
            wrong = "; ".join(f"{name}: {message}" for name, message in filters.errors.items())
            errors["form"] = f"Fix the filters first ({wrong}): a bulk action must not match more than you see"
        runs = runs.filter(filters.q())
    count = runs[: PREVIEW_CAP + 1].count()
    count_text = f"at least {PREVIEW_CAP:,}" if count > PREVIEW_CAP else f"{count:,}"
    if count == 0 and not errors:
        errors["form"] = "No runs match: there is nothing to do"
    sample = list(runs.order_by("-created_at", "-id")[:PREVIEW_SHOWN])
    return {
        "action": action,
        "scope": scope,
        "filters": filters,
        "selected": selected,
        "count": count,
        "capped": count > PREVIEW_CAP,
        "count_text": count_text,
        "sample": sample,
        "errors": errors,
    }


def bulk_detail(request: HtmxHttpRequest, bulk_id: str) -> HttpResponse:
    """A bulk action's progress and result; htmx polls the progress partial while it works."""
    # Like a run, a bulk action belongs to one environment: another's is not found here.
    environment = current_environment(request)
    bulk = BulkAction.objects.select_related("environment").filter(pk=bulk_id, environment=environment).first()
    if bulk is None:
        raise Http404(f"No bulk action {bulk_id} in {environment.name}")
    shown = bulk.run_ids[:BULK_IDS_SHOWN]
    context = {"environment": bulk.environment, "shown_ids": shown, "more_ids": len(bulk.run_ids) - len(shown)}
    context |= bulk_context(bulk)
    template = "dashboard/partials/bulk_progress.html" if request.htmx else "dashboard/bulk.html"
    return render(request, template, context)


def bulk_context(bulk: BulkAction) -> dict[str, Any]:
    """Everything partials/bulk_progress.html shows."""
    is_open = bulk.status in (BulkActionStatus.PENDING, BulkActionStatus.RUNNING)
    percent = 100 if not is_open else (100 * bulk.processed // bulk.total if bulk.total else 0)
    filters = RunFilters.from_query(bulk.filters, bulk.created_at)
    query = "&".join(part for part in (f"env={bulk.environment.slug}", filters.query_string()) if part)
    colour = BULK_COLOURS.get(bulk.status, "grey")
    return {"bulk": bulk, "is_open": is_open, "percent": percent, "status_colour": colour} | {
        "filters": filters,
        "runs_query": query,
    }
