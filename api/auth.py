"""API key authentication: `Authorization: Bearer <secret>` names one environment."""

from __future__ import annotations

from datetime import timedelta
from functools import cache

from django.db import connection
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from api.errors import ApiError
from runs.models import ApiKey, Environment

# last_used_at is for people ("used 3 minutes ago"); a write per request would cost more.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def authenticate_request(request: HttpRequest) -> ApiKey:
    """The active key of the request's bearer secret, with its environment. Raises ApiError(401)."""
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise ApiError(401, "Invalid API key")
    key = _active_key(ApiKey.hash(secret))
    if key is None:
        raise ApiError(401, "Invalid API key")
    _touch(key)
    return key


def _active_key(key_hash: str) -> ApiKey | None:
    """ApiKey.objects.active().select_related("environment").filter(key_hash=key_hash).first():
    the same row in one query, without the ORM's compiling (most of a trigger's CPU once)."""
    key_fields, env_fields = ApiKey._meta.concrete_fields, Environment._meta.concrete_fields
    with connection.cursor() as cursor:
        cursor.execute(_key_sql(), [key_hash])
        row = cursor.fetchone()
    if row is None:
        return None
    key = ApiKey.from_db(connection.alias, [f.attname for f in key_fields], row[: len(key_fields)])
    key.environment = Environment.from_db(connection.alias, [f.attname for f in env_fields], row[len(key_fields) :])
    return key


@cache
def _key_sql() -> str:
    quote = connection.ops.quote_name
    key, env = ApiKey._meta, Environment._meta
    columns = [f"k.{quote(f.column)}" for f in key.concrete_fields]
    columns += [f"e.{quote(f.column)}" for f in env.concrete_fields]
    column = {f.name: quote(f.column) for f in key.concrete_fields}
    return (
        f"SELECT {', '.join(columns)} FROM {quote(key.db_table)} k"
        f" JOIN {quote(env.db_table)} e ON e.{quote(env.pk.column)} = k.{column['environment']}"
        f" WHERE k.{column['key_hash']} = %s AND k.{column['revoked_at']} IS NULL"
    )


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
