"""The audit log: every operator action taken in the dashboard, with who, when and why."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils import timezone

from runs.models import AuditEntry, Environment


def actor(request: HttpRequest) -> str:
    """The engine's actor for a dashboard user: `user:<username>`."""
    return f"user:{request.user.get_username()}"


def audit(
    request: HttpRequest,
    action: str,
    *,
    environment: Environment | None,
    target: str = "",
    reason: str = "",
    data: dict[str, Any] | None = None,
) -> AuditEntry:
    """Record an action by the request's user; call it inside the action's transaction."""
    user = request.user if request.user.is_authenticated else None
    return AuditEntry.objects.create(
        at=timezone.now(),
        user=user,
        username=request.user.get_username(),
        environment=environment,
        action=action,
        target=target,
        reason=reason[:512],
        data=data or {},
    )
