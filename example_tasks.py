"""Example tasks, loaded by `make run` (RUNYARD_TASK_MODULES=example_tasks)."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import shared_task
from pydantic import BaseModel, Field

from runs.registry import Retry, task

log = logging.getLogger(__name__)


@task(id="hello-world")
def hello_world(payload: Any) -> dict[str, str]:
    """Greets whoever the payload names: {"name": "Ada"} -> {"message": "Hello, Ada!"}.

    Its run's Logs show what it logs and prints: no setup, any logger, print included."""
    name = payload.get("name", "world") if isinstance(payload, dict) else (payload or "world")
    log.info("Greeting %s", name)
    print("hello-world done")
    return {"message": f"Hello, {name}!"}


@task(id="hello-world-2", queue="greetings", concurrency_limit=5)
def hello_world_2(payload: Any) -> dict[str, Any]:
    return {"message": "Hello again!", "received": payload}


@task(id="always-fails", retry=Retry(max_attempts=2, min_timeout=1))
def always_fails(payload: Any) -> None:
    raise RuntimeError("this task always fails")


@task(id="sleep", max_duration=3600)
def sleep(payload: Any) -> dict[str, float]:
    seconds = float(payload.get("seconds", 1)) if isinstance(payload, dict) else 1.0
    time.sleep(seconds)
    return {"slept": seconds}


@task(id="fan-out")
def fan_out(payload: Any) -> dict[str, Any]:
    """Batch-triggers payload["n"] hello-world runs, waits for them, returns their outputs.

    payload["child_delay"] (e.g. "2s") delays the children: the parent is seen WAITING longer.
    """
    from runs.sdk import tasks  # imported here: task modules load before Django is ready

    n = int(payload.get("n", 3)) if isinstance(payload, dict) else 3
    options = {"delay": payload["child_delay"]} if isinstance(payload, dict) and payload.get("child_delay") else {}
    items = [{"payload": {"name": f"child {i}"}, "options": options} for i in range(n)]
    results = tasks.batch_trigger_and_wait("hello-world", items)
    return {"outputs": [result.unwrap() for result in results]}


class EmailRequest(BaseModel):
    """One email to send, as many copies as asked for."""

    to: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", description="Recipient's email address")
    subject: str = Field(min_length=1, max_length=200, description="Subject line")
    urgent: bool = Field(default=False, description="Send ahead of the queue")
    count: int = Field(ge=1, le=10, description="How many copies to send (1-10)")


@task(id="send-email", queue="emails", concurrency_limit=5)
def send_email(payload: EmailRequest) -> dict[str, Any]:
    """Pretends to send `count` copies of an email; the payload arrives as an EmailRequest."""
    return {"sent": payload.count, "to": payload.to, "subject": payload.subject, "urgent": payload.urgent}


@shared_task(name="example.add")
def add(a: float, b: float) -> float:
    """A plain Celery task, unchanged: `add.apply_async((2, 3), countdown=60)` is a Delayed run.
    What it logs is its run's log, as for any task."""
    log.info("adding %s and %s", a, b)
    return a + b


@task(id="log-lines", max_duration=3600)
def log_lines(payload: Any) -> dict[str, int]:
    """Logs payload["lines"] lines (10), one every payload["interval"] seconds (0.2): a run whose
    Logs panel tails as it executes. payload["fail"] ends it with an ERROR line and an exception."""
    options = payload if isinstance(payload, dict) else {}
    lines, interval = int(options.get("lines", 10)), float(options.get("interval", 0.2))
    for number in range(1, lines + 1):
        log.info("line %d of %d", number, lines, extra={"line": number})
        time.sleep(interval)
    if options.get("fail"):
        log.error("giving up after %d lines", lines)
        raise RuntimeError("log-lines was asked to fail")
    return {"lines": lines}


@task(id="progress-steps", max_duration=3600)
def progress_steps(payload: Any) -> dict[str, int]:
    """Sets its metadata's `progress` from 0 to 1 in payload["steps"] steps (4), one every
    payload["interval"] seconds (0.5): the run page and the runs list show a moving bar.

    payload["gated"]: step n waits instead until the run's metadata key `advance` is at least
    n, which anyone may raise while it runs (PUT /api/v1/runs/{id}/metadata with an increment
    operation): a run whose progress you drive by hand."""
    from runs.sdk import metadata  # imported here: task modules load before Django is ready

    options = payload if isinstance(payload, dict) else {}
    steps, interval = max(int(options.get("steps", 4)), 1), float(options.get("interval", 0.5))
    metadata.set("progress", 0).set("step", 0)
    metadata.flush()
    for step in range(1, steps + 1):
        if options.get("gated"):
            while (metadata.get("advance") or 0) < step:
                time.sleep(0.05)
                metadata.refresh()
        else:
            time.sleep(interval)
        metadata.set("progress", step / steps).set("step", step)
    return {"steps": steps}
