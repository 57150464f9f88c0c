"""6. The cost of logs: runs of a task that logs 100 INFO lines through `logging`, end to end,
against no-op runs on the same stack (bench/end_to_end.py's worker, engine and rounds)."""

from __future__ import annotations

import statistics
import time

from bench import stack
from bench.context import Context
from bench.end_to_end import TASK, alternating, runyard_round
from bench.report import Figure
from bench.tasks import LOGGED_LINES

KEY = "logcost"
LOGGING_TASK = "bench-log100"
POLL = 0.05


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


def run(ctx: Context) -> list[Figure]:
    sizes = ctx.sizes
    count = sizes.e2e_runs
    timeout = max(60.0, count / 5)
    with stack.stack(KEY, ctx.template, ctx.log_dir) as bench:
        bench.start("engine", "worker")
        noops, logged = alternating(
            bench, runyard_round, logged_round, count=count, rounds=sizes.e2e_rounds, timeout=timeout
        )
        checked = check_lines(bench, timeout)
    base, got = statistics.median(noops) / count, statistics.median(logged) / count
    ratio = got / base
    return [
        Figure(
            key=KEY,
            title=f"Run logging {LOGGED_LINES} lines, end to end",
            measured=f"{got * 1000:.2f} ms per run",
            baseline=f"{base * 1000:.2f} ms per run (no-op run)",
            ratio=f"{ratio:.2f}x",
            target="<= 1.20x",
            passed=ratio <= 1.2,
            details=[
                f"{count:,} runs per round, {sizes.e2e_rounds} rounds of each, alternating; medians of the round"
                " times over the count; the e2e benchmark's stack (one worker, `--concurrency=2` prefork, one engine)",
                f"logging: {LOGGING_TASK} ({LOGGED_LINES} x `log.info('step %d done', n)`), s: "
                + ", ".join(f"{s:.2f}" for s in logged),
                f"no-op: {TASK}, s: " + ", ".join(f"{s:.2f}" for s in noops),
                f"checked: all {checked:,} logging runs COMPLETED with exactly {LOGGED_LINES} lines each, no-op"
                " runs with none",
            ],
        )
    ]
