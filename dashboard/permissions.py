"""Who may do what in the dashboard, from Django groups (made by runs migration 0003).

- Viewers (and any logged-in user in no group): see runs; payloads, outputs, metadata and
  errors only with `runs.view_payload`, which the Viewers group has until an admin removes it.
- Operators: also cancel, reschedule, replay, bulk-act and trigger (`runs.operate_run`).
- Admins: also manage API keys and environments and read the audit log.
Superusers may do everything.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

VIEW_PAYLOAD = "runs.view_payload"
OPERATE = "runs.operate_run"
MANAGE_KEYS = "runs.add_apikey"
MANAGE_ENVIRONMENTS = "runs.add_environment"
VIEW_AUDIT = "runs.view_auditentry"

User = AbstractBaseUser | AnonymousUser


def can(user: Any, permission: str) -> bool:
    return bool(user is not None and user.is_authenticated and user.has_perm(permission))


def can_view_payload(user: Any) -> bool:
    return can(user, VIEW_PAYLOAD)


def can_operate(user: Any) -> bool:
    return can(user, OPERATE)


def roles(user: Any) -> dict[str, bool]:
    """What templates need to know: `perms_payload`, `perms_operate`, `perms_admin`, `perms_audit`."""
    return {
        "perms_payload": can_view_payload(user),
        "perms_operate": can_operate(user),
        "perms_admin": can(user, MANAGE_KEYS),
        "perms_audit": can(user, VIEW_AUDIT),
    }


def require(permission: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """View decorator: a 403 page naming what is missing when the user lacks `permission`."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not can(request.user, permission):
                return render(request, "403.html", {"permission": permission}, status=403)
            return view(request, *args, **kwargs)

        return guarded

    return decorate
