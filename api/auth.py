"""API key authentication: `Authorization: Bearer <secret>` names one environment."""

from __future__ import annotations

from datetime import timedelta
from functools import cache

from django.db import connection
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from api.errors import ApiError
from runs.engine import definition_from_row
from runs.models import ApiKey, Environment, TaskDefinition

# last_used_at is for people ("used 3 minutes ago"); a write per request would cost more.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def authenticate_request(request: HttpRequest, task_id: str | None = None) -> ApiKey:
    """The active key of the request's bearer secret, with its environment. Raises ApiError(401).

    Given a task_id, the same query reads that task's definition (the one a trigger needs) into
    `request.task_definitions` ({task_id: definition, or None when no worker registered it}).
    """
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise ApiError(401, "Invalid API key")
    found = _active_key(ApiKey.hash(secret), task_id)
    if found is None:
        raise ApiError(401, "Invalid API key")
    key, definition = found
    if task_id is not None:
        request.task_definitions = {task_id: definition}  # type: ignore[attr-defined]
    _touch(key)
    return key


def _active_key(key_hash: str, task_id: str | None = None) -> tuple[ApiKey, TaskDefinition | None] | None:
    """ApiKey.objects.active().select_related("environment").filter(key_hash=key_hash).first()
    and TaskDefinition.objects.filter(task_id=task_id).first(): the same rows in one query (a
    round trip less for a trigger), without the ORM's compiling (most of a trigger's CPU once)."""
    key_fields, env_fields = ApiKey._meta.concrete_fields, Environment._meta.concrete_fields
    with connection.cursor() as cursor:
        if task_id is None:
            cursor.execute(_key_sql(False), [key_hash])
        else:
            cursor.execute(_key_sql(True), [task_id, key_hash])
        row = cursor.fetchone()
    if row is None:
        return None
    key_end = len(key_fields)
    env_end = key_end + len(env_fields)
    key = ApiKey.from_db(connection.alias, [f.attname for f in key_fields], row[:key_end])
    key.environment = Environment.from_db(connection.alias, [f.attname for f in env_fields], row[key_end:env_end])
    definition = None
    if task_id is not None and row[env_end + _DEFINITION_PK] is not None:  # else no such task
        definition = definition_from_row(row[env_end:])
    return key, definition


_DEFINITION_PK = TaskDefinition._meta.concrete_fields.index(TaskDefinition._meta.pk)


@cache
def _key_sql(with_definition: bool) -> str:
    quote = connection.ops.quote_name
    key, env, task = ApiKey._meta, Environment._meta, TaskDefinition._meta
    columns = [f"k.{quote(f.column)}" for f in key.concrete_fields]
    columns += [f"e.{quote(f.column)}" for f in env.concrete_fields]
    column = {f.name: quote(f.column) for f in key.concrete_fields}
    joins = f" JOIN {quote(env.db_table)} e ON e.{quote(env.pk.column)} = k.{column['environment']}"
    if with_definition:
        # A LEFT JOIN: an unknown task still authenticates (its run waits for a worker).
        columns += [f"d.{quote(f.column)}" for f in task.concrete_fields]
        joins += f" LEFT JOIN {quote(task.db_table)} d ON d.{quote(task.get_field('task_id').column)} = %s"
    return (
        f"SELECT {', '.join(columns)} FROM {quote(key.db_table)} k{joins}"
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
