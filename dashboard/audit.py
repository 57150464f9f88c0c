"""The audit log: every operator action, taken in the dashboard or through the REST API, with
who, when and why."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils import timezone

from runs.models import ApiKey, AuditEntry, Environment


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
    return _record(request.user.get_username(), user, action, environment, target, reason, data)


def audit_api(
    key: ApiKey, action: str, *, target: str, reason: str = "", data: dict[str, Any] | None = None
) -> AuditEntry:
    """Record an action taken through the REST API with `key`, named as the run's timeline names
    it (`api:<the key's hint>`, never the key); call it inside the action's transaction."""
    return _record(f"api:{key.hint}", None, action, key.environment, target, reason, data)


def _record(
    username: str,
    user: Any,  # the dashboard's user, or None
    action: str,
    environment: Environment | None,
    target: str,
    reason: str,
    data: dict[str, Any] | None,
) -> AuditEntry:
    return AuditEntry.objects.create(
        at=timezone.now(),
        user=user,
        username=username[:150],
        environment=environment,
        action=action,
        target=target,
        reason=reason[:512],
        data=data or {},
    )
