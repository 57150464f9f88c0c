"""6. The cost of logs: runs of a task that logs 100 INFO lines through `logging`, end to end,
against no-op runs on the same stack (bench/end_to_end.py's worker, engine and rounds).

Two figures. A run's end-to-end time: single runs one at a time, each from its trigger until it
is COMPLETED with its lines, interleaved run by run with no-op runs and with runs logging the
same lines with the capture paused (what logging costs without Runyard). And the rate of bursts
of runs, where the machine's two cores are saturated and the figure is CPU per run."""

from __future__ import annotations

import contextlib
import logging
import os
import statistics
import time
from pathlib import Path

import psutil
from django.conf import settings

from bench import stack
from bench.context import Context
from bench.end_to_end import TASK, Round, alternating, runyard_round
from bench.report import Figure
from bench.tasks import LOGGED_LINES
from runs import engine
from runs.management.commands.engine import WAKE_GAP
from runs.models import Environment

KEY = "logcost"
LOGGING_TASK = "bench-log100"
UNCAPTURED = "bench-log100-uncaptured"
SINGLE = [TASK, UNCAPTURED, LOGGING_TASK]
ISOLATION = 2 * WAKE_GAP
POLL = 0.05
LATENCY_POLL = 0.0005  # the same for both tasks; a finer poll only takes CPU from the stack


PARTS = ("worker", "engine", "postgres")


def stack_cpu(bench: stack.Stack) -> dict[str, float]:
    """CPU seconds each of the stack's processes used so far: the worker and its pool, the
    engine, and the embedded PostgreSQL (its backends, ended ones included). Unlike a round's
    time, other work on a shared machine does not move it much."""
    pids = {"worker": bench.pid("worker"), "engine": bench.pid("engine")}
    pidfile = settings.VAR_DIR / "pg" / "postmaster.pid"
    if not os.environ.get("DATABASE_URL") and pidfile.exists():
        pids["postgres"] = int(pidfile.read_text().split()[0])
    used = dict.fromkeys(PARTS, 0.0)
    for part, pid in pids.items():
        proc = psutil.Process(pid)
        for each in [proc, *proc.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = each.cpu_times()
                used[part] += times.user + times.system + times.children_user + times.children_system
    return used


def cpu_counted(task: str, per_run: list[dict[str, float]], rounds_of: int) -> Round:
    """A round of `task`'s runs that also appends the stack's CPU seconds per run to per_run
    (for rounds of `rounds_of` runs: not for the warm-ups)."""

    def measure(bench: stack.Stack, count: int, timeout: float) -> float:
        before = stack_cpu(bench)
        seconds = runyard_round(bench, count, timeout, task=task)
        if count == rounds_of:
            after = stack_cpu(bench)
            per_run.append({part: (after[part] - before[part]) / count for part in PARTS})
        return seconds

    return measure


def check_lines(bench: stack.Stack, timeout: float) -> int:
    """Every logging run has exactly LOGGED_LINES lines and every no-op none; the runs checked."""
    deadline = time.perf_counter() + timeout
    sql = (
        "SELECT r.task_identifier, count(*) FILTER (WHERE coalesce(s.lines, 0) <> %s), count(*)"
        " FROM runs_run r LEFT JOIN runs_runlogsummary s ON s.run_id = r.id GROUP BY r.task_identifier"
    )
    with bench.db() as conn:
        while True:
            wrong = {task: (bad, total) for task, bad, total in conn.execute(sql, (LOGGED_LINES,)).fetchall()}
            lines = conn.execute("SELECT count(*) FROM runs_runlog").fetchone()
            logging_runs = wrong.get(LOGGING_TASK, (0, 0))[1]
            if wrong.get(LOGGING_TASK, (1, 0))[0] == 0 and lines == (logging_runs * LOGGED_LINES,):
                break
            if time.perf_counter() > deadline:
                raise stack.BenchError(f"runs with other than {LOGGED_LINES} lines, by task: {wrong}; lines {lines}")
            time.sleep(POLL)
    for task in (TASK, UNCAPTURED):
        if wrong.get(task, (0, 0))[0] != wrong.get(task, (0, 0))[1]:
            raise stack.BenchError(f"{task} runs have lines: {wrong}")
    return logging_runs


def single_run_seconds(bench: stack.Stack, conn: object, environment: Environment, task: str, timeout: float) -> float:
    """Seconds from one run's trigger (in-process, as `tasks.trigger` does) until a poll of
    its row sees it COMPLETED; its last lines commit with its completion."""
    began = time.perf_counter()
    run_id = engine.trigger(environment=environment, task_id=task, payload='{"n":1}', actor="bench").run.id
    deadline = began + timeout
    while True:
        row = conn.execute("SELECT status FROM runs_run WHERE id = %s", (run_id,)).fetchone()  # type: ignore[attr-defined]
        if row and row[0] == "COMPLETED":
            return time.perf_counter() - began
        if row and row[0] in ("FAILED", "CRASHED", "SYSTEM_FAILURE", "EXPIRED", "TIMED_OUT", "CANCELED"):
            raise stack.BenchError(f"{task} run {run_id} ended {row[0]}; see {bench.log_dir}")
        if time.perf_counter() > deadline:
            raise stack.BenchError(f"{task} run {run_id} not finished in {timeout:g}s")
        time.sleep(LATENCY_POLL)


def latencies(bench: stack.Stack, count: int, timeout: float) -> dict[str, list[float]]:
    """End-to-end seconds of `count` single runs of each task in SINGLE, interleaved one by one
    (the order turns each round), after a warm-up of each. Each run is triggered ISOLATION s
    after the one before finished, so none waits for the engine's wake gap (a tick at most every
    WAKE_GAP, and the one before's completion woke it): that wait would add the same ~50 ms to
    both sides and hide what the lines cost."""
    environment = Environment.objects.get(slug="dev")
    times: dict[str, list[float]] = {task: [] for task in SINGLE}
    with bench.db() as conn:
        for task in SINGLE * 5:
            single_run_seconds(bench, conn, environment, task, timeout)
            time.sleep(ISOLATION)
        for i in range(count):
            for task in SINGLE[i % len(SINGLE) :] + SINGLE[: i % len(SINGLE)]:
                times[task].append(single_run_seconds(bench, conn, environment, task, timeout))
                time.sleep(ISOLATION)
    return times


def in_process_profile(log_dir: Path, repeats: int = 300) -> dict[str, float]:
    """Median CPU milliseconds of this thread (so the load of a shared machine weighs little) for
    100 `log.info` calls: with no handler writing anything (making the records), with a copy of
    the console handler writing to a file (as the worker's log at `-l info`), inside an
    attempt's capture (its own cost, over the first), and the write of the captured lines (COPY
    and summary in a transaction rolled back: without its commit, which is the completion's)."""
    from runs import logcapture

    logger = logging.getLogger("bench.tasks")
    logger.setLevel(logging.INFO)
    root = logging.getLogger()
    logcapture.install()
    console = next(h for h in root.handlers if isinstance(h, logging.StreamHandler))
    with (log_dir / "logcost-profile.log").open("w", buffering=1) as out:
        copy = logging.StreamHandler(out)
        copy.setFormatter(console.formatter)
        copy.filters = list(console.filters)
        saved = root.handlers
        root.handlers = [logcapture.HANDLER]
        try:
            res = _profile_rounds(logger, root, copy, repeats)
        finally:
            root.handlers = saved
    return {name: statistics.median(values) * 1000 for name, values in res.items()}


def _profile_rounds(
    logger: logging.Logger, root: logging.Logger, copy: logging.Handler, repeats: int
) -> dict[str, list[float]]:
    from django.db import transaction

    from runs import logcapture

    res: dict[str, list[float]] = {"records": [], "captured": [], "console": [], "write": [], "write_wall": []}

    def log100() -> float:
        began = time.thread_time()
        for n in range(LOGGED_LINES):
            logger.info("step %d done", n)
        return time.thread_time() - began

    for i in range(repeats):
        res["records"].append(log100())
        with logcapture.capturing(run_id=f"run_profile{i}", attempt=1, environment_id=0, resumed=False) as capture:
            res["captured"].append(log100())
        logcapture.WRITER.remove(capture)
        with transaction.atomic():
            began, wall = time.thread_time(), time.perf_counter()
            logcapture.write([capture])
            res["write"].append(time.thread_time() - began)
            res["write_wall"].append(time.perf_counter() - wall)
            transaction.set_rollback(True)
        root.handlers = [copy, logcapture.HANDLER]
        res["console"].append(log100())
        root.handlers = [logcapture.HANDLER]
    return res


def run(ctx: Context) -> list[Figure]:
    sizes = ctx.sizes
    count = sizes.e2e_runs
    timeout = max(60.0, count / 5)
    with stack.stack(KEY, ctx.template, ctx.log_dir) as bench:
        bench.start("engine", "worker")
        single = latencies(bench, max(50, count // 4), timeout)
        cpu: dict[str, list[dict[str, float]]] = {task: [] for task in SINGLE}
        rounds = {task: cpu_counted(task, cpu[task], count) for task in SINGLE}
        noops, logged = alternating(
            bench, rounds[TASK], rounds[LOGGING_TASK], count=count, rounds=sizes.e2e_rounds, timeout=timeout
        )
        alternating(bench, rounds[TASK], rounds[UNCAPTURED], count=count, rounds=sizes.e2e_rounds, timeout=timeout)
        checked = check_lines(bench, timeout)
        profile = in_process_profile(ctx.log_dir)
    base, got = statistics.median(noops) / count, statistics.median(logged) / count
    ratio = got / base
    noop, plain, captured = (statistics.median(single[task]) for task in SINGLE)
    single_ratio = captured / noop
    ours = profile["captured"] - profile["records"]
    cpu_noop, cpu_plain, cpu_logged = (statistics.median(sum(r.values()) for r in cpu[task]) * 1000 for task in SINGLE)
    parts = {
        task: ", ".join(f"{part} {statistics.median(r[part] for r in cpu[task]) * 1000:.2f}" for part in PARTS)
        for task in SINGLE
    }
    return [
        Figure(
            key=KEY,
            title=f"A run logging {LOGGED_LINES} lines, its end-to-end time",
            measured=f"{captured * 1000:.2f} ms (median)",
            baseline=f"{noop * 1000:.2f} ms (median no-op run)",
            ratio=f"{single_ratio:.2f}x",
            target="<= 1.20x",
            passed=single_ratio <= 1.2,
            details=[
                f"{len(single[TASK]):,} runs of each task, one at a time, interleaved (the order turns each"
                f" round), each triggered {ISOLATION * 1000:.0f} ms after the one before finished (so none waits"
                " for the engine's wake gap); each from its in-process trigger until its row is COMPLETED"
                " (its lines commit with its completion); medians",
                f"the same {LOGGED_LINES} lines with the capture paused ({UNCAPTURED}: Python's logging alone,"
                f" the worker printing them at `-l info`): {plain * 1000:.2f} ms, {plain / noop:.2f}x the no-op;"
                f" Runyard's capture and write add {(captured - plain) * 1000:.2f} ms"
                f" ({(captured - plain) / noop:.0%} of a no-op run), logging itself {(plain - noop) * 1000:.2f} ms"
                f" ({(plain - noop) / noop:.0%})",
                "no-op p10/p50/p90 (ms): " + _percentiles(single[TASK]),
                "logging, not captured, p10/p50/p90 (ms): " + _percentiles(single[UNCAPTURED]),
                "logging p10/p50/p90 (ms): " + _percentiles(single[LOGGING_TASK]),
                f"in-process CPU per {LOGGED_LINES} lines (ms, this thread's, medians): making the records"
                f" {profile['records']:.2f}, the worker's console handler {profile['console'] - profile['records']:.2f}"
                f" more, the capture {ours:.2f} more ({ours * 10:.1f} µs a line), their write {profile['write']:.2f}"
                f" ({profile['write_wall']:.2f} ms wall with the server's part, without the commit)",
            ],
        ),
        Figure(
            key=f"{KEY}-rate",
            title=f"Runs logging {LOGGED_LINES} lines, bursts on saturated cores",
            measured=f"{got * 1000:.2f} ms per run",
            baseline=f"{base * 1000:.2f} ms per run (no-op run)",
            ratio=f"{ratio:.2f}x",
            target="reported",
            passed=True,
            details=[
                f"{count:,} runs per round, {sizes.e2e_rounds} rounds of each, alternating; medians of the round"
                " times over the count; the e2e benchmark's stack (one worker, `--concurrency=2` prefork, one engine)",
                f"logging: {LOGGING_TASK} ({LOGGED_LINES} x `log.info('step %d done', n)`), s: "
                + ", ".join(f"{s:.2f}" for s in logged),
                f"no-op: {TASK}, s: " + ", ".join(f"{s:.2f}" for s in noops),
                f"CPU of the stack (worker and pool, engine, PostgreSQL) per run, ms (medians of the rounds):"
                f" no-op {cpu_noop:.2f}, logging with the capture paused {cpu_plain:.2f}, logging {cpu_logged:.2f};"
                f" logging itself adds {cpu_plain - cpu_noop:.2f} ({(cpu_plain - cpu_noop) / cpu_noop:.0%}),"
                f" Runyard's capture and write {cpu_logged - cpu_plain:.2f}"
                f" ({(cpu_logged - cpu_plain) / cpu_noop:.0%}); by process (ms per run): "
                + "; ".join(f"{task}: {parts[task]}" for task in SINGLE),
                f"checked: all {checked:,} logging runs COMPLETED with exactly {LOGGED_LINES} lines each, no-op"
                " runs with none",
            ],
        ),
    ]


def _percentiles(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    return "/".join(f"{ordered[int(q * (len(ordered) - 1))] * 1000:.2f}" for q in (0.1, 0.5, 0.9))
