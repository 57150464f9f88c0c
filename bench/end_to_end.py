"""3. End to end: no-op runs triggered through Runyard and executed by the Celery worker, against
the same no-op as a plain Celery task on the same queue, broker and worker."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from bench import stack
from bench.context import Context
from bench.report import Figure
from bench.tasks import PLAIN_DONE_KEY
from runs import engine, registry
from runs.models import Environment
from runs.states import FINAL_STATUSES, RunStatus

KEY = "e2e"
TASK = "bench-noop"
CHUNK = 1000  # runs per trigger_batch: the engine's bulk insert path
POLL = 0.05
Round = Callable[[stack.Stack, int, float], float]  # seconds of one round of `count` runs


def trigger_runs(count: int, options: engine.TriggerOptions | None = None, task: str = TASK) -> None:
    """Trigger `count` runs of `task` (bench-noop) in-process, a batch of up to 1,000 at a time."""
    environment = Environment.objects.get(slug="dev")
    options = options or engine.TriggerOptions()
    for start in range(0, count, CHUNK):
        entries = [
            engine.BatchEntry(task, '{"n":1}', "application/json", options) for _ in range(min(CHUNK, count - start))
        ]
        engine.trigger_batch(environment=environment, entries=entries, actor="bench")


UNFINISHED = sorted(set(RunStatus.values) - set(FINAL_STATUSES))
FAILED = sorted(str(status) for status in set(FINAL_STATUSES) - {RunStatus.COMPLETED})


def count_status(bench: stack.Stack, *statuses: str) -> int:
    with bench.db() as conn:
        return count_in(conn, dev_environment_id(conn), list(statuses))


def count_in(conn: Any, environment_id: int, statuses: list[str]) -> int:
    """Runs of the environment in these statuses, through the index on (environment, status)."""
    row = conn.execute(
        "SELECT count(*) FROM runs_run WHERE environment_id = %s AND status = ANY(%s)", (environment_id, statuses)
    ).fetchone()
    return int(row[0]) if row else 0


def dev_environment_id(conn: Any) -> int:
    row = conn.execute("SELECT id FROM runs_environment WHERE slug = 'dev'").fetchone()
    assert row is not None, "the bench database has no dev environment"
    return int(row[0])


def runyard_round(bench: stack.Stack, count: int, timeout: float, task: str = TASK) -> float:
    """Seconds from the first trigger until no run of the dev environment is unfinished (the
    `count` runs triggered are then COMPLETED, or the round fails)."""
    began = time.perf_counter()
    trigger_runs(count, task=task)
    deadline = began + timeout
    with bench.db() as conn:
        dev = dev_environment_id(conn)
        # The poll counts the runs not yet finished, a number that falls to 0, by the index on
        # (environment, status). Counting the COMPLETED ones grew with every round (a scan of
        # each run done so far, 20 times a second): the benchmark's work, not Runyard's, on the
        # same two cores.
        while left := count_in(conn, dev, UNFINISHED):
            if time.perf_counter() > deadline:
                raise stack.BenchError(f"{left} of {count} runs not finished in {timeout:g}s")
            time.sleep(POLL)
        seconds = time.perf_counter() - began
        if failed := count_in(conn, dev, FAILED):
            raise stack.BenchError(f"{failed} {task} runs did not complete; see {bench.log_dir}")
    return seconds


def plain_round(bench: stack.Stack, count: int, timeout: float) -> float:
    """Seconds from the first send until `count` plain Celery no-ops have run."""
    from dashboard.celery import app

    client = bench.redis()
    client.delete(PLAIN_DONE_KEY)
    queue = registry.celery_queue(registry.DEFAULT_MACHINE)  # where the engine sends bench-noop runs
    began = time.perf_counter()
    with app.producer_or_acquire() as producer:
        for _ in range(count):
            app.send_task("bench.plain_noop", queue=queue, producer=producer)
    deadline = began + timeout
    while int(client.get(PLAIN_DONE_KEY) or 0) < count:
        if time.perf_counter() > deadline:
            raise stack.BenchError(f"only {client.get(PLAIN_DONE_KEY)!r} of {count} plain tasks ran in {timeout:g}s")
        time.sleep(POLL)
    return time.perf_counter() - began


def alternating(
    bench: stack.Stack, first: Round, second: Round, *, count: int, rounds: int, timeout: float
) -> tuple[list[float], list[float]]:
    """Seconds of `rounds` rounds of each, after a warm-up of each (imports, connections); the
    order flips every round, so neither always runs on a machine the other just warmed."""
    first(bench, min(count, 50), timeout)
    second(bench, min(count, 50), timeout)
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(rounds):
        steps = [(first, times[0]), (second, times[1])]
        for measure, results in steps if i % 2 == 0 else steps[::-1]:
            results.append(measure(bench, count, timeout))
    return times


def run(ctx: Context) -> list[Figure]:
    sizes = ctx.sizes
    count = sizes.e2e_runs
    timeout = max(60.0, count / 5)
    with stack.stack(KEY, ctx.template, ctx.log_dir) as bench:
        bench.start("engine", "worker")
        plains, runyards = alternating(
            bench, plain_round, runyard_round, count=count, rounds=sizes.e2e_rounds, timeout=timeout
        )
    base = count / statistics.median(plains)
    got = count / statistics.median(runyards)
    ratio = got / base
    return [
        Figure(
            key=KEY,
            title="No-op runs completed end to end",
            measured=f"{got:.0f} runs/s",
            baseline=f"{base:.0f} tasks/s (plain Celery task)",
            ratio=f"{ratio:.2f}x",
            target=">= 0.50x",
            passed=ratio >= 0.5,
            details=[
                f"{count:,} no-ops per round, {sizes.e2e_rounds} rounds of each, alternating; medians;"
                " one worker, `--concurrency=2` (prefork), the queue runyard.small-1x, one engine",
                "Runyard: engine.trigger_batch in-process (1,000 runs per batch) until all COMPLETED in the ledger, s: "
                + ", ".join(f"{s:.2f}" for s in runyards),
                "plain: send_task of bench.plain_noop (INCR of a Redis key) until the counter reaches the count, s: "
                + ", ".join(f"{s:.2f}" for s in plains),
            ],
        )
    ]
