"""django-tasks functions the live stack's worker serves (RUNYARD_TASK_MODULES in tests/live.py)."""

from __future__ import annotations

from django_tasks import task


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def shout(text: str, *, times: int = 1) -> str:
    return " ".join([text.upper()] * times)
