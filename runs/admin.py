"""Runyard's models in Django's admin, read-only.

The engine is the only writer of run state, and the dashboard holds every operator action
(with its checks and audit entry), so the admin only looks: no add, change or delete here.
Payloads, outputs, metadata and errors are left out: the dashboard shows them to those with
`runs.view_payload`, and the admin would show them to any staff user who may view runs.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.http import HttpRequest

from runs import models

# The admin counts a table for its pager; past this many rows it says "10000" rather than
# counting a million runs on every page.
COUNT_CAP = 10_000
PAYLOAD_FIELDS = {"payload", "output", "error", "metadata", "errors", "data", "options", "debounce"}


class CappedCountPaginator(Paginator):
    @cached_property
    def count(self) -> int:
        rows: Any = self.object_list  # the admin pages a queryset
        return int(rows[:COUNT_CAP].count())


class ReadOnlyAdmin(admin.ModelAdmin):
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 50

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [field.name for field in self.model._meta.concrete_fields if field.name not in self.hidden_fields]

    hidden_fields: frozenset[str] = frozenset(PAYLOAD_FIELDS)


@admin.register(models.Environment)
class EnvironmentAdmin(ReadOnlyAdmin):
    list_display = ["slug", "name", "kind"]


@admin.register(models.ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    list_display = ["hint", "name", "environment", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["environment"]
    hidden_fields = frozenset({"key_hash"})


@admin.register(models.TaskDefinition)
class TaskDefinitionAdmin(ReadOnlyAdmin):
    list_display = ["task_id", "queue", "machine", "concurrency_limit", "max_attempts", "updated_at"]
    search_fields = ["task_id"]


@admin.register(models.Worker)
class WorkerAdmin(ReadOnlyAdmin):
    list_display = ["hostname", "started_at", "last_seen_at"]


@admin.register(models.Queue)
class QueueAdmin(ReadOnlyAdmin):
    list_display = ["name", "environment", "concurrency_limit"]
    list_filter = ["environment"]


@admin.register(models.Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = ["id", "task_identifier", "status", "environment", "created_at", "finished_at"]
    list_filter = ["status", "environment"]
    search_fields = ["=id", "=task_identifier"]  # exact: the runs table may hold millions of rows
    list_select_related = ["environment"]


@admin.register(models.RunEvent)
class RunEventAdmin(ReadOnlyAdmin):
    list_display = ["run", "at", "from_status", "to_status", "actor", "reason"]
    search_fields = ["=run__id"]
    hidden_fields = frozenset({"data"})


@admin.register(models.Batch)
class BatchAdmin(ReadOnlyAdmin):
    list_display = ["id", "status", "environment", "run_count", "created_at"]
    list_filter = ["status", "environment"]
    search_fields = ["=id"]


@admin.register(models.AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["at", "username", "action", "target", "environment", "reason"]
    list_filter = ["action", "environment"]
    search_fields = ["=target", "username"]
    hidden_fields = frozenset()
