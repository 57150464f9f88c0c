"""Who may do what in the dashboard, from Django groups (made by runs migration 0003).

- Viewers: see runs (`runs.view_run`, which every page, fragment and websocket needs:
  ViewRunMiddleware and the consumers check it); payloads, outputs, metadata and errors only with `runs.view_payload`,
  which the Viewers group has until an admin removes it from the group.
- A logged-in user in no group is a viewer: they get exactly the Viewers group's permissions
  (RolesBackend), so removing `runs.view_payload` from Viewers hides payloads from them too.
- Operators: also cancel, reschedule, replay, bulk-act and trigger (`runs.operate_run`).
- Admins: also manage API keys and environments and read the audit log.
Superusers may do everything. See docs/permissions.md.

The REST API authenticates API keys, not users: none of this applies to it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Permission
from django.contrib.auth.views import redirect_to_login
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render, resolve_url

VIEW_RUN = "runs.view_run"
VIEW_PAYLOAD = "runs.view_payload"
OPERATE = "runs.operate_run"
MANAGE_KEYS = "runs.add_apikey"
MANAGE_ENVIRONMENTS = "runs.add_environment"
VIEW_AUDIT = "runs.view_auditentry"

VIEWERS = "Viewers"

V = TypeVar("V", bound=Callable[..., Any])

# Which group grants a permission, for the 403 page ("ask to be added to ...").
GRANTED_BY = {
    VIEW_RUN: "Viewers",
    VIEW_PAYLOAD: "Viewers",
    OPERATE: "Operators",
    MANAGE_KEYS: "Admins",
    MANAGE_ENVIRONMENTS: "Admins",
    VIEW_AUDIT: "Admins",
}


class RolesBackend(ModelBackend):
    """Django's ModelBackend, except that a user in no group has the Viewers group's permissions."""

    def _get_group_permissions(self, user_obj: Any) -> QuerySet[Permission]:
        groups = user_obj.groups.all()
        if groups.exists():
            return Permission.objects.filter(group__in=groups)
        return Permission.objects.filter(group__name=VIEWERS)


def can(user: Any, permission: str) -> bool:
    return bool(user is not None and user.is_authenticated and user.has_perm(permission))


def can_view_payload(user: Any) -> bool:
    return can(user, VIEW_PAYLOAD)


def can_operate(user: Any) -> bool:
    return can(user, OPERATE)


def roles(user: Any) -> dict[str, bool]:
    """What templates need to know: `perms_payload`, `perms_operate`, `perms_admin`, `perms_audit`.

    Websocket consumers pass their connection's user, so a live push shows what the page did.
    """
    return {
        "perms_payload": can_view_payload(user),
        "perms_operate": can_operate(user),
        "perms_admin": can(user, MANAGE_KEYS),
        "perms_environments": can(user, MANAGE_ENVIRONMENTS),
        "perms_audit": can(user, VIEW_AUDIT),
    }


def forbidden(request: HttpRequest, permission: str) -> HttpResponse:
    """The 403 page: what is missing and which group grants it."""
    context = {"permission": permission, "group": GRANTED_BY.get(permission, "")}
    return render(request, "403.html", context, status=403)


def require(permission: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """View decorator: a 403 page naming what is missing when the user lacks `permission`."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not can(request.user, permission):
                return forbidden(request, permission)
            return view(request, *args, **kwargs)

        return guarded

    return decorate


def view_run_not_required(view: V) -> V:
    """Marks a view that a logged-in user without `runs.view_run` may open (log out)."""
    view.view_run_required = False  # type: ignore[attr-defined]
    return view


class ViewRunMiddleware:
    """Every view needs `runs.view_run` unless it says otherwise, so a new page cannot forget it.

    Left alone: views open to anyone (`login_not_required`: log in, the REST API, metrics),
    views marked `view_run_not_required`, and the Django admin, which checks staff and its
    own model permissions. Runs after LoginRequiredMiddleware, so anonymous users are sent
    to log in first.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view: Callable[..., Any], args: Any, kwargs: Any
    ) -> HttpResponse | None:
        exempt = not getattr(view, "login_required", True) or not getattr(view, "view_run_required", True)
        match = request.resolver_match
        if exempt or not is_ours(view) or (match is not None and "admin" in match.namespaces):
            return None
        if not request.user.is_authenticated:
            # A project that installs Runyard need not have LoginRequiredMiddleware (it would
            # close the project's own pages too), so Runyard's pages send strangers to log in.
            return redirect_to_login(request.get_full_path(), resolve_url(settings.LOGIN_URL))
        return None if can(request.user, VIEW_RUN) else forbidden(request, VIEW_RUN)


def is_ours(view: Callable[..., Any]) -> bool:
    """Whether a view is Runyard's: the project that installs Runyard keeps its own rules."""
    module = getattr(view, "__module__", "") or ""
    return module.split(".")[0] in {"dashboard", "api"}
