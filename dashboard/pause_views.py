"""Operators pause and resume a task (in the current environment) or the whole environment:
forms that POST here, through runs.engine.pauses (which audits), then back to the page.

The task's controls are on the tasks page, the environment's on the queues page and, to
resume it, on the banner every page of a paused environment shows (dashboard.templatetags).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from dashboard import action_forms as forms
from dashboard.audit import actor
from dashboard.ops_views import queues_context, render_live
from dashboard.permissions import OPERATE, require
from dashboard.task_views import render_tasks
from dashboard.views import HtmxHttpRequest, current_environment
from runs import engine

PAUSE_ACTIONS = ("pause", "resume")


@require(OPERATE)
@require_POST
def task_pause_action(request: HtmxHttpRequest, task_id: str, action: str) -> HttpResponse:
    """Pause or resume the task in the current environment, then back to the tasks page."""
    environment = current_environment(request)
    if action not in PAUSE_ACTIONS or not engine.task_known(environment_id=environment.pk, task_id=task_id):
        raise Http404("No such task")
    errors, kwargs = parse(request, action)
    if errors:
        return render_tasks(request, environment, errors=errors, failed=task_id, status=422)
    if action == "pause":
        engine.pause_task(environment_id=environment.pk, task_id=task_id, **kwargs)
    else:
        engine.resume_task(environment_id=environment.pk, task_id=task_id, **kwargs)
    return redirect(f"{reverse('tasks')}?{urlencode({'env': environment.slug})}")


@require(OPERATE)
@require_POST
def environment_pause_action(request: HtmxHttpRequest, action: str) -> HttpResponse:
    """Pause or resume the current environment, then back to the page it was done from."""
    environment = current_environment(request)
    if action not in PAUSE_ACTIONS:
        raise Http404("No such action")
    errors, kwargs = parse(request, action)
    if errors:
        context, digest_of = queues_context(request, environment)
        context |= {"environment_errors": errors}
        response = render_live(request, "queues", context, digest_of=digest_of)
        response.status_code = 422
        return response
    if action == "pause":
        engine.pause_environment(environment_id=environment.pk, **kwargs)
    else:
        engine.resume_environment(environment_id=environment.pk, **kwargs)
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=False):
        back = f"{reverse('queues')}?{urlencode({'env': environment.slug})}"
    return redirect(back)


def parse(request: HtmxHttpRequest, action: str) -> tuple[dict[str, str], dict[str, Any]]:
    """The form's errors by input name, and the engine's keyword arguments."""
    now = timezone.now()
    form = (forms.PauseForm if action == "pause" else forms.ActionForm)(request.POST, now=now)
    errors = forms.errors_of(form)
    return errors, {"actor": actor(request), "user": request.user, "now": now, **form.cleaned_data}
