"""API key authentication: `Authorization: Bearer <secret>` names one environment."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from api.errors import ApiError
from runs.models import ApiKey

# last_used_at is for people ("used 3 minutes ago"); a write per request would cost more.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def authenticate_request(request: HttpRequest) -> ApiKey:
    """The active key of the request's bearer secret, with its environment. Raises ApiError(401)."""
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise ApiError(401, "Invalid API key")
    key = ApiKey.objects.active().select_related("environment").filter(key_hash=ApiKey.hash(secret)).first()
    if key is None:
        raise ApiError(401, "Invalid API key")
    _touch(key)
    return key


def _touch(key: ApiKey) -> None:
    now = timezone.now()
    stale = now - LAST_USED_RESOLUTION
    if key.last_used_at is not None and key.last_used_at > stale:
        return
    # The WHERE clause keeps concurrent requests from all writing the same minute.
    ApiKey.objects.filter(Q(last_used_at__isnull=True) | Q(last_used_at__lte=stale), pk=key.pk).update(last_used_at=now)
    key.last_used_at = now


def actor(key: ApiKey) -> str:
    """How engine events name this caller (the key's hint, never the key)."""
    return f"api:{key.hint}"
