"""6. The cost of logs: runs of a task that logs 100 INFO lines through `logging`, end to end,
against no-op runs on the same stack (bench/end_to_end.py's worker, engine and rounds).

Two figures. A run's end-to-end time: single runs one after another, each from its trigger
until it is COMPLETED with its lines, the two tasks interleaved run by run. And the rate of
bursts of runs, where the machine's two cores are saturated and the figure is CPU per run."""

from __future__ import annotations

import logging
import statistics
import time

from bench import stack
from bench.context import Context
from bench.end_to_end import TASK, alternating, runyard_round
from bench.report import Figure
from bench.tasks import LOGGED_LINES
from runs import engine
from runs.models import Environment

KEY = "logcost"
LOGGING_TASK = "bench-log100"
POLL = 0.05
LATENCY_POLL = 0.0005  # the same for both tasks; a finer poll only takes CPU from the stack


def logged_round(bench: stack.Stack, count: int, timeout: float) -> float:
    return runyard_round(bench, count, timeout, task=LOGGING_TASK)


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
    if wrong.get(TASK, (0, 0))[0] != wrong.get(TASK, (0, 0))[1]:
        raise stack.BenchError(f"no-op runs logged lines: {wrong}")
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


def latencies(bench: stack.Stack, count: int, timeout: float) -> tuple[list[float], list[float]]:
    """End-to-end seconds of `count` single no-op runs and `count` logging runs, interleaved
    one by one (which goes first flips each pair), after a warm-up of each."""
    environment = Environment.objects.get(slug="dev")
    times: tuple[list[float], list[float]] = ([], [])
    with bench.db() as conn:
        for task in (TASK, LOGGING_TASK) * 5:
            single_run_seconds(bench, conn, environment, task, timeout)
        for i in range(count):
            pair = [(TASK, times[0]), (LOGGING_TASK, times[1])]
            for task, results in pair if i % 2 == 0 else pair[::-1]:
                results.append(single_run_seconds(bench, conn, environment, task, timeout))
    return times


def in_process_profile(repeats: int = 300) -> dict[str, float]:
    """Median milliseconds, in this process, of 100 `log.info` calls with no capture (the cost
    of logging itself), the same calls inside an attempt's capture, and the write of the
    captured lines (COPY and summary, in a transaction rolled back, so without its commit)."""
    from django.db import transaction

    from runs import logcapture

    logger = logging.getLogger("bench.tasks")
    logger.setLevel(logging.INFO)
    plain, captured, written = [], [], []
    for i in range(repeats):
        began = time.perf_counter()
        for n in range(LOGGED_LINES):
            logger.info("step %d done", n)
        plain.append(time.perf_counter() - began)
        with logcapture.capturing(run_id=f"run_profile{i}", attempt=1, environment_id=0, resumed=False) as capture:
            began = time.perf_counter()
            for n in range(LOGGED_LINES):
                logger.info("step %d done", n)
            captured.append(time.perf_counter() - began)
        logcapture.WRITER.remove(capture)
        with transaction.atomic():
            began = time.perf_counter()
            logcapture.write([capture])
            written.append(time.perf_counter() - began)
            transaction.set_rollback(True)
    return {
        "logging": statistics.median(plain) * 1000,
        "capture": (statistics.median(captured) - statistics.median(plain)) * 1000,
        "write": statistics.median(written) * 1000,
    }


def run(ctx: Context) -> list[Figure]:
    sizes = ctx.sizes
    count = sizes.e2e_runs
    timeout = max(60.0, count / 5)
    with stack.stack(KEY, ctx.template, ctx.log_dir) as bench:
        bench.start("engine", "worker")
        single_noops, single_logged = latencies(bench, max(50, count // 4), timeout)
        noops, logged = alternating(
            bench, runyard_round, logged_round, count=count, rounds=sizes.e2e_rounds, timeout=timeout
        )
        checked = check_lines(bench, timeout)
        profile = in_process_profile()
    base, got = statistics.median(noops) / count, statistics.median(logged) / count
    ratio = got / base
    single_base, single_got = statistics.median(single_noops), statistics.median(single_logged)
    single_ratio = single_got / single_base
    return [
        Figure(
            key=KEY,
            title=f"A run logging {LOGGED_LINES} lines, its end-to-end time",
            measured=f"{single_got * 1000:.2f} ms (median)",
            baseline=f"{single_base * 1000:.2f} ms (median no-op run)",
            ratio=f"{single_ratio:.2f}x",
            target="<= 1.20x",
            passed=single_ratio <= 1.2,
            details=[
                f"{len(single_noops):,} runs of each, one at a time, interleaved; each from its in-process trigger"
                " until its row is COMPLETED (its lines commit with its completion); medians",
                "no-op p10/p50/p90 (ms): " + _percentiles(single_noops),
                "logging p10/p50/p90 (ms): " + _percentiles(single_logged),
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
                f"in-process, per run of 100 lines (ms, medians): Python's logging itself {profile['logging']:.2f},"
                f" the capture {profile['capture']:.2f}, their write {profile['write']:.2f} (without its commit,"
                f" which is the completion's); against {base * 1000:.2f} ms of a no-op run here",
                f"checked: all {checked:,} logging runs COMPLETED with exactly {LOGGED_LINES} lines each, no-op"
                " runs with none",
            ],
        ),
    ]


def _percentiles(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    return "/".join(f"{ordered[int(q * (len(ordered) - 1))] * 1000:.2f}" for q in (0.1, 0.5, 0.9))
