from typing import Any

from celery import shared_task

from runs.registry import task


@task(id="proj.hello")
def hello(payload: Any) -> dict[str, str]:
    return {"greeting": f"Hello, {payload['name']}!"}


@shared_task(name="proj.add")
def add(a: int, b: int) -> int:
    return a + b


@shared_task(name="proj.mul")
def mul(a: int, b: int) -> int:
    """Not in RUNYARD_CELERY_TASKS: a plain Celery task as before."""
    return a * b
