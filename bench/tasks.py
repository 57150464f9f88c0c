"""The no-op of the end-to-end benchmark, as a Runyard task and as a plain Celery task.

Workers load this module with RUNYARD_TASK_MODULES=example_tasks,bench.tasks.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.conf import settings

from runs import logcapture
from runs.registry import task

PLAIN_DONE_KEY = "bench:plain-noop:done"
LOGGED_LINES = 100
log = logging.getLogger("bench.tasks")
_redis: Any = None


@task(id="bench-noop")
def bench_noop(payload: Any) -> None:
    return None


@task(id="bench-log100")
def bench_log100(payload: Any) -> None:
    """The no-op, logging LOGGED_LINES short INFO lines through `logging` first."""
    for n in range(LOGGED_LINES):
        log.info("step %d done", n)


@task(id="bench-log100-uncaptured")
def bench_log100_uncaptured(payload: Any) -> None:
    """The same lines with the run's capture paused: what logging costs without Runyard."""
    with logcapture.paused():
        for n in range(LOGGED_LINES):
            log.info("step %d done", n)


@shared_task(name="bench.plain_noop", acks_late=True, ignore_result=True)
def plain_noop() -> None:
    """The same no-op; counts itself done in Redis (the plain task has no ledger)."""
    global _redis
    if _redis is None:
        import redis

        _redis = redis.Redis.from_url(settings.REDIS_URL)
    _redis.incr(PLAIN_DONE_KEY)


@shared_task(name="bench.adopted_noop", ignore_result=True)
def adopted_noop(n: int) -> None:
    """A plain Celery task RUNYARD_CELERY_TASKS adopts (bench/settings.py): its .delay() is a run."""
    return None


@shared_task(name="bench.plain_publish_noop", ignore_result=True)
def plain_publish_noop(n: int) -> None:
    """The same task, not adopted: its .delay() is a plain Celery message."""
    return None
