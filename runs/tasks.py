"""Celery entry points: load by id, hand to the executor, nothing else."""

from __future__ import annotations

from celery import Task, shared_task
from django.db import DatabaseError, close_old_connections

from runs import engine, worker


@shared_task(bind=True, name=engine.EXECUTE_RUN, acks_late=True, reject_on_worker_lost=True)
def execute_run(self: Task, run_id: str) -> None:
    # The pool process keeps its database connection from run to run (CELERY_DB_REUSE_MAX):
    # one PostgreSQL closed meanwhile (a restart) is dropped before it fails the run, and one
    # that failed during the run is not used again if it is broken.
    worker.drop_closed_connection()
    try:
        worker.execute(run_id=run_id, hostname=self.request.hostname or "unknown", finish_in_background=True)
    except DatabaseError:
        close_old_connections()
        raise
