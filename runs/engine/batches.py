"""Batches: up to 1,000 runs triggered together, all or nothing."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from runs.engine.core import Actor
from runs.engine.triggering import TriggerOptions, trigger
from runs.models import Batch, BatchStatus, Environment

MAX_BATCH_ITEMS = 1000


@dataclass
class BatchEntry:
    """One item of a batch, already validated."""

    task_id: str
    payload: str = ""
    payload_type: str = "application/json"
    options: TriggerOptions = field(default_factory=TriggerOptions)


def trigger_batch(
    *,
    environment: Environment,
    entries: list[BatchEntry],
    actor: Actor,
    source: str = "api",
    parent_run_id: str | None = None,
    resume_parent: bool = False,
    now: datetime | None = None,
) -> Batch:
    """Create a batch and all its runs in one transaction (any failure creates nothing)."""
    now = now or timezone.now()
    if not 1 <= len(entries) <= MAX_BATCH_ITEMS:
        raise ValueError(f"a batch holds 1 to {MAX_BATCH_ITEMS} items, not {len(entries)}")
    function = "batchTriggerAndWait" if resume_parent else "batchTrigger"
    with transaction.atomic():
        batch = Batch.objects.create(
            environment=environment,
            status=BatchStatus.COMPLETED,
            run_count=len(entries),
            task_identifiers=sorted({entry.task_id for entry in entries}),
            parent_id=parent_run_id,
            resume_parent_on_completion=resume_parent,
            created_at=now,
            updated_at=now,
            sealed_at=now,
        )
        for entry in entries:
            options = replace(
                entry.options,
                batch_id=batch.id,
                parent_run_id=parent_run_id,
                resume_parent=resume_parent,
                trigger_function=function,
            )
            trigger(
                environment=environment,
                task_id=entry.task_id,
                payload=entry.payload,
                payload_type=entry.payload_type,
                options=options,
                actor=actor,
                source=source,
                now=now,
            )
    return batch
