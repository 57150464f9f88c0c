"""Celery publish: the cost of `.delay()` of a plain Celery task Runyard adopts (its run is one
INSERT in the ledger) against `.delay()` of the same task left to Celery (one message to Redis),
from one Django process, one call after another, as a web request publishes."""

from __future__ import annotations

import statistics
import time

from bench import stack
from bench.context import Context
from bench.report import Figure

KEY = "celery"


def publish_round(task: object, count: int) -> float:
    """Seconds per .delay() over `count` calls."""
    delay = task.delay  # type: ignore[attr-defined]
    began = time.perf_counter()
    for n in range(count):
        delay(n)
    return (time.perf_counter() - began) / count


def run(ctx: Context) -> list[Figure]:
    from bench.tasks import adopted_noop, plain_publish_noop
    from dashboard.celery import app
    from runs import celery_adoption, celery_serving, engine, registry
    from runs.models import Run

    sizes = ctx.sizes
    count = max(sizes.e2e_runs, 3)
    with stack.stack(KEY, ctx.template, ctx.log_dir) as bench:
        # A worker announced the task (as one serving it does at start), so a publish finds it
        # queued at once; no worker runs: only the publishing is measured.
        celery_serving.serve(app)
        engine.register_worker(hostname="bench@publish", queues=[], specs=[registry.REGISTRY[adopted_noop.name]])
        celery_adoption._definitions.clear()
        celery_adoption._environments.clear()
        publish_round(adopted_noop, min(count, 50))  # warm-up: connections, the environment's read
        publish_round(plain_publish_noop, min(count, 50))
        plains: list[float] = []
        adopted: list[float] = []
        for i in range(sizes.e2e_rounds):
            steps = [(plain_publish_noop, plains), (adopted_noop, adopted)]
            for task, results in steps if i % 2 == 0 else steps[::-1]:
                results.append(publish_round(task, count))
        runs = Run.objects.filter(task_identifier=adopted_noop.name).count()
        queued = bench.redis().llen(app.conf.task_default_queue)
    expected = min(count, 50) + count * sizes.e2e_rounds
    if runs != expected or queued != expected:
        raise stack.BenchError(f"expected {expected} runs and messages, found {runs} runs and {queued} messages")
    base, got = statistics.median(plains), statistics.median(adopted)
    ratio = got / base
    return [
        Figure(
            key=KEY,
            title="Added cost of .delay() of an adopted Celery task",
            measured=f"{got * 1e6:.0f} µs per call",
            baseline=f"{base * 1e6:.0f} µs per call (plain Celery .delay())",
            ratio=f"{ratio:.2f}x",
            target="<= 2.00x",
            passed=ratio <= 2.0,
            details=[
                f"{count:,} calls per round, {sizes.e2e_rounds} rounds of each, alternating; medians; one process,"
                " one call after another, Django's connection in autocommit (each run commits on its own)",
                "adopted (a run: one INSERT statement), µs per call: " + ", ".join(f"{s * 1e6:.0f}" for s in adopted),
                "plain (a message to Redis), µs per call: " + ", ".join(f"{s * 1e6:.0f}" for s in plains),
            ],
        )
    ]
