"""4. Time: delayed runs promoted, started and expired on time (absolute targets, default settings)."""

from __future__ import annotations

import random
import time
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from bench import stack
from bench.context import Context
from bench.end_to_end import TASK, count_status, trigger_runs
from bench.loadgen import percentile
from bench.report import Figure
from bench.trigger_api import pretend_worker
from runs import engine
from runs.models import Environment

KEY = "time"
UNSERVED = "bench-unserved"  # no worker serves it: its runs wait PENDING_VERSION until their TTL


def delayed_all_queued(bench: stack.Stack, count: int) -> tuple[float, float, float]:
    """`count` runs due at the same instant; seconds from then until the first and the last left
    DELAYED, and how long inserting them took."""
    began = time.perf_counter()
    # Due in an hour while they are inserted; then all due at one instant (one UPDATE).
    trigger_runs(count, engine.TriggerOptions(delay_until=timezone.now() + timedelta(hours=1)))
    inserted = time.perf_counter() - began
    return inserted, *_wait_promoted(bench)


def _wait_promoted(bench: stack.Stack) -> tuple[float, float]:
    with bench.db() as conn:
        due = conn.execute(
            # Far enough ahead that the UPDATE of every row has committed before they are due
            # (now() is when the statement began): 2 s was not, on a busy machine.
            "UPDATE runs_run SET delay_until = date_trunc('second', now()) + interval '6 seconds'"
            " WHERE status = 'DELAYED' RETURNING delay_until"
        ).fetchone()
        assert due is not None
        due_at = due[0].timestamp()
        if time.time() > due_at:
            raise stack.BenchError("the runs were due before the UPDATE making them due had committed")
        first = None
        while True:
            # Cheap (partial indexes, stops at the first row): a count(*) of 10,000 rows every
            # 10 ms took CPU from the engine it measures on a 2-core machine.
            moved, left = conn.execute(_PROGRESS).fetchone()  # type: ignore[misc]
            now = time.time()
            if first is None and moved:
                first = now - due_at
            if not left:
                return first or 0.0, now - due_at
            if now > due_at + 120:
                raise stack.BenchError("runs still DELAYED 120 s after they were due")
            time.sleep(0.01)


_PROGRESS = (
    "SELECT EXISTS (SELECT FROM runs_run WHERE status = 'QUEUED')"
    " OR EXISTS (SELECT FROM runs_run WHERE status IN ('DEQUEUED', 'EXECUTING')),"
    " EXISTS (SELECT FROM runs_run WHERE status = 'DELAYED')"
)


def start_latencies(bench: stack.Stack, count: int, spread: float) -> tuple[list[float], list[float]]:
    """Seconds from each delayed run's time to its start (Run.started_at), with a worker; and to
    its admission by the engine (the engine's part of the wait)."""
    environment = Environment.objects.get(slug="dev")
    for _ in range(count):
        due = timezone.now() + timedelta(seconds=1 + random.uniform(0, spread))
        options = engine.TriggerOptions(delay_until=due)
        engine.trigger(environment=environment, task_id=TASK, payload='{"n":1}', options=options, actor="bench")
    starts = _wait_gaps(bench, "started_at", "delay_until", count, "started_at IS NOT NULL", spread)
    with bench.db() as conn:
        # The DEQUEUED event's stamp: the engine's clock as it admitted the run (it is sent to
        # Celery as that transaction commits).
        admitted = conn.execute(
            "SELECT extract(epoch FROM min(event.at) - run.delay_until) FROM runs_runevent AS event"
            " JOIN runs_run AS run ON run.id = event.run_id"
            " WHERE event.to_status = 'DEQUEUED' AND run.delay_until IS NOT NULL GROUP BY run.id, run.delay_until"
        ).fetchall()
    return starts, [float(row[0]) for row in admitted]


def expiry_latencies(bench: stack.Stack, count: int, spread: float) -> list[float]:
    """Seconds from each run's expires_at to its expired_at, for runs no worker serves."""
    environment = Environment.objects.get(slug="dev")
    for _ in range(count):
        options = engine.TriggerOptions(ttl=1 + round(random.uniform(0, spread)))
        engine.trigger(environment=environment, task_id=UNSERVED, payload='{"n":1}', options=options, actor="bench")
    return _wait_gaps(bench, "expired_at", "expires_at", count, "status = 'EXPIRED'", spread)


def _wait_gaps(bench: stack.Stack, late: str, early: str, count: int, done: str, spread: float) -> list[float]:
    deadline = time.time() + spread + 120
    with bench.db() as conn:
        while True:
            rows = conn.execute(
                f"SELECT extract(epoch FROM {late} - {early}) FROM runs_run WHERE {done} AND {early} IS NOT NULL"
            ).fetchall()
            if len(rows) >= count:
                return [float(row[0]) for row in rows]
            if time.time() > deadline:
                raise stack.BenchError(f"only {len(rows)} of {count} runs got {late} in time")
            time.sleep(0.2)


def run(ctx: Context) -> list[Figure]:
    sizes = ctx.sizes
    poll = settings.RUNYARD_ENGINE_POLL_INTERVAL
    with stack.stack(KEY, ctx.template, ctx.log_dir) as bench:
        pretend_worker()  # bench-noop runs are QUEUED and admitted, as if a worker served them
        bench.start("engine")
        inserted, first, last = delayed_all_queued(bench, sizes.delayed_runs)
        # The engine admits the promoted runs for a while: expiry is timed once it is idle again.
        bench.wait_for(lambda: count_status(bench, "QUEUED") == 0, "the promoted runs to be admitted", 300)
        expiries = expiry_latencies(bench, sizes.ttl_runs, sizes.time_spread)
    spread = sizes.time_spread
    with stack.stack(f"{KEY}_start", ctx.template, ctx.log_dir) as bench:
        bench.start("engine", "worker")
        starts, admitted = start_latencies(bench, sizes.start_runs, spread)
    engine_note = f"one engine, default settings: RUNYARD_ENGINE_POLL_INTERVAL = {poll:g} s"
    start_p99, expiry_p99 = percentile(starts, 99), percentile(expiries, 99)
    return [
        Figure(
            key=KEY,
            title=f"{sizes.delayed_runs:,} delayed runs due in the same second all QUEUED",
            measured=f"{last:.2f} s after due",
            baseline="-",
            ratio="-",
            target="<= 2 s",
            passed=last <= 2.0,
            details=[
                engine_note + "; no worker (admitted runs wait in Celery)",
                f"inserted with engine.trigger_batch in {inserted:.1f} s, then all made due at one instant;"
                f" first left DELAYED {first:.2f} s after it, the last {last:.2f} s after it"
                " (observed by polling the ledger every 10 ms)",
            ],
        ),
        Figure(
            key=KEY,
            title="Delayed run starts on time (p99)",
            measured=f"p99 {start_p99:.2f} s late",
            baseline="-",
            ratio="-",
            target="<= 1 s",
            passed=start_p99 <= 1.0,
            details=[
                engine_note + "; one worker (`--concurrency=2`)",
                f"{len(starts)} runs with delays spread uniformly over {spread:g} s; Run.started_at - delay_until:"
                f" p50 {percentile(starts, 50):.2f} s, p99 {start_p99:.2f} s, max {max(starts):.2f} s",
                "the engine's part, admitted to Celery (the DEQUEUED event's stamp) - delay_until:"
                f" p50 {percentile(admitted, 50):.3f} s, p99 {percentile(admitted, 99):.3f} s,"
                f" max {max(admitted):.3f} s; the rest is the worker's (a free slot, then start_attempt)",
            ],
        ),
        Figure(
            key=KEY,
            title="TTL expiry on time (p99)",
            measured=f"p99 {expiry_p99:.2f} s late",
            baseline="-",
            ratio="-",
            target="<= 1 s",
            passed=expiry_p99 <= 1.0,
            details=[
                engine_note + "; the task is served by no worker (runs wait PENDING_VERSION)",
                f"{len(expiries)} runs with ttl 1 to {1 + round(spread)} s; Run.expired_at - expires_at:"
                f" p50 {percentile(expiries, 50):.2f} s, p99 {expiry_p99:.2f} s, max {max(expiries):.2f} s",
            ],
        ),
    ]
