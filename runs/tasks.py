"""Celery entry points: load by id, hand to the executor, nothing else."""

from __future__ import annotations

from celery import Task, shared_task

from runs import worker


@shared_task(bind=True, name="runyard.execute_run", acks_late=True, reject_on_worker_lost=True)
def execute_run(self: Task, run_id: str) -> None:
    worker.execute(run_id=run_id, hostname=self.request.hostname or "unknown")
