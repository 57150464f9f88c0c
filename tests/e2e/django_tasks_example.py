"""django-tasks functions and plain Celery tasks the live stack's worker serves (see tests/live.py)."""

from __future__ import annotations

import time

from celery import Task, shared_task
from django_tasks import task


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def shout(text: str, *, times: int = 1) -> str:
    return " ".join([text.upper()] * times)


# Plain Celery tasks, unchanged: RUNYARD_CELERY_TASKS ("*" by default) makes them runs.


@shared_task(name="e2e.nap")
def nap(seconds: float) -> str:
    time.sleep(seconds)
    return "rested"


@shared_task(name="e2e.flaky", bind=True, max_retries=3)
def flaky(self: Task) -> int:
    if self.request.retries == 0:
        raise self.retry(countdown=0.5)
    return int(self.request.retries)
