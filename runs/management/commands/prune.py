"""`manage.py prune --older-than 30d`: delete finished runs (and what hangs off them) in batches.

Each batch is its own short transaction: `DELETE FROM runs_run WHERE id IN (SELECT ... LIMIT n
FOR UPDATE SKIP LOCKED)`, then the rows that belong to those runs. Only row locks are taken,
so triggers, workers and the engine go on meanwhile. Candidates are found per environment and
final status on the (environment, status, created_at) index, so every batch reads only what it
deletes. A run is kept while an unfinished run still points at it (its parent, a child waiting
on it, a replay of it): unfinished runs are never touched. Offloaded payloads and outputs are
deleted from object storage after their batch commits, and finished batches left without runs
are deleted last.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any, cast

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, models, transaction
from django.utils import timezone

from runs import packets
from runs.models import Batch, BatchStatus, Environment, Run
from runs.options import parse_duration
from runs.states import FINAL_STATUSES

RUN = Run._meta.db_table
FINAL = sorted(FINAL_STATUSES)
FINISHED_BATCHES = [BatchStatus.COMPLETED, BatchStatus.PARTIAL_FAILED, BatchStatus.ABORTED]
# Runs pointing at runs (parent, root, replayed_from): an unfinished one keeps its target.
SELF_LINKS = [field.column for field in Run._meta.concrete_fields if field.related_model is Run]


class Command(BaseCommand):
    help = "Delete finished runs older than a duration, in small batches, without locking tables."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", required=True, help='finished longer ago than this, e.g. "30d" or "12h"')
        parser.add_argument("--batch-size", type=int, default=1000, help="runs deleted per transaction (1000)")
        parser.add_argument("--dry-run", action="store_true", help="count what would be deleted; delete nothing")
        parser.add_argument("--pause", type=float, default=0.0, help="seconds to sleep between batches")

    def handle(self, *args: Any, **options: Any) -> None:
        seconds = parse_duration(options["older_than"])
        if not seconds:
            raise CommandError(f'--older-than must be a duration like "30d" or "12h", not {options["older_than"]!r}')
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        cutoff = timezone.now() - timedelta(seconds=seconds)
        if options["dry_run"]:
            runs, batches = count_prunable(cutoff)
            self.stdout.write(f"Would delete {runs} runs finished before {cutoff:%Y-%m-%d %H:%M} UTC")
            self.stdout.write(f"and {batches} finished batches that have no runs left (dry run: nothing deleted)")
            return
        total = 0
        for deleted in prune_runs(cutoff, batch_size=options["batch_size"]):
            total += deleted
            self.stdout.write(f"deleted {deleted} runs ({total} so far)")
            time.sleep(options["pause"])
        batches = sum(prune_batches(cutoff, batch_size=options["batch_size"]))
        self.stdout.write(
            self.style.SUCCESS(
                f"Deleted {total} runs finished before {cutoff:%Y-%m-%d %H:%M} UTC and {batches} batches"
            )
        )


def _candidates(extra: str = "") -> str:
    """Prunable runs of one environment and final status, oldest first, on run_env_status."""
    # One NOT EXISTS per link, each a lookup on that column's index (an OR of them would not be).
    kept_by_link = "\n".join(
        f"AND NOT EXISTS (SELECT 1 FROM {RUN} c WHERE c.{column} = r.id AND c.status <> ALL(%(final)s))"
        for column in SELF_LINKS
    )
    return f"""
        SELECT r.id FROM {RUN} r
        WHERE r.environment_id = %(environment)s AND r.status = %(status)s
          AND r.created_at < %(cutoff)s AND r.finished_at < %(cutoff)s
          {kept_by_link}
          AND NOT EXISTS (SELECT 1 FROM {RUN} p WHERE p.id = r.parent_id AND p.status <> ALL(%(final)s))
        ORDER BY r.created_at {extra}
    """


def prune_runs(cutoff: datetime, *, batch_size: int) -> Any:
    """Delete prunable runs batch by batch; yields how many each batch deleted."""
    for environment in Environment.objects.order_by("id").values_list("id", flat=True):
        for status in FINAL:
            while deleted := _delete_batch(environment, status, cutoff, batch_size):
                yield deleted


def _delete_batch(environment: int, status: str, cutoff: datetime, batch_size: int) -> int:
    params: dict[str, Any] = {
        "environment": environment,
        "status": status,
        "cutoff": cutoff,
        "final": FINAL,
        "limit": batch_size,
    }
    with transaction.atomic(), connection.cursor() as cursor:
        # The candidates are picked once (a MATERIALIZED CTE): as a plain IN (subquery) the planner
        # may run the LIMIT subquery more than once and delete more than a batch.
        # Foreign keys are checked at commit (Django makes them DEFERRABLE INITIALLY DEFERRED),
        # so the runs go first and the rows hanging off them follow in the same transaction.
        cursor.execute(
            f"""
            WITH doomed AS MATERIALIZED ({_candidates("LIMIT %(limit)s FOR UPDATE OF r SKIP LOCKED")})
            DELETE FROM {RUN} WHERE id IN (SELECT id FROM doomed)
            RETURNING id, environment_id,
                CASE WHEN payload_type = %(store)s THEN payload END,
                CASE WHEN output_type = %(store)s THEN output END
            """,
            {**params, "store": packets.STORE},
        )
        rows = cursor.fetchall()
        ids = [row[0] for row in rows]
        if ids:
            _delete_dependents(ids)
            transaction.on_commit(lambda: _discard_packets(rows))
    return len(ids)


def _delete_dependents(ids: list[str]) -> None:
    """Cascade to every model that refers to Run (events, attempts, waitpoints, ...) and
    unlink the rest, as the models' on_delete says."""
    for relation in Run._meta.related_objects:
        if not isinstance(relation, models.ManyToOneRel):
            continue
        model = cast(type[models.Model], relation.related_model)
        related = model._base_manager.filter(**{f"{relation.field.name}__in": ids})
        if relation.on_delete is models.CASCADE:
            related.delete()
        elif relation.on_delete is models.SET_NULL:
            related.update(**{relation.field.name: None})
        else:
            raise CommandError(f"prune does not know how to delete {model.__name__} rows")


def _discard_packets(rows: list[tuple[str, int, str | None, str | None]]) -> None:
    for _, environment_id, payload, output in rows:
        for path in (payload, output):
            if path:
                packets.discard(path, packets.STORE, environment_id=environment_id)


def prune_batches(cutoff: datetime, *, batch_size: int) -> Any:
    """Delete finished batches created before cutoff that no run belongs to any more."""
    while True:
        with transaction.atomic():
            ids = list(_empty_batches(cutoff).values_list("id", flat=True)[:batch_size])
            if not ids:
                return
            Batch.objects.filter(id__in=ids).delete()
        yield len(ids)


def _empty_batches(cutoff: datetime) -> models.QuerySet[Batch]:
    has_runs = Run.objects.filter(batch_id=models.OuterRef("id"))
    return (
        Batch.objects.filter(status__in=FINISHED_BATCHES, created_at__lt=cutoff)
        .exclude(models.Exists(has_runs))
        .order_by("created_at")
    )


def count_prunable(cutoff: datetime) -> tuple[int, int]:
    """(runs, batches) a prune with this cutoff would delete now (batches: those empty already)."""
    runs = 0
    with connection.cursor() as cursor:
        for environment in Environment.objects.values_list("id", flat=True):
            for status in FINAL:
                params: dict[str, Any] = {
                    "environment": environment,
                    "status": status,
                    "cutoff": cutoff,
                    "final": FINAL,
                }
                cursor.execute(f"SELECT count(*) FROM ({_candidates()}) x", params)
                runs += cursor.fetchone()[0]
    return runs, _empty_batches(cutoff).count()
