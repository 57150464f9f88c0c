"""End to end as a user triggers: single triggers from 16 concurrent clients, over the REST
API (wrk) and in-process (runs.sdk `tasks.trigger` from 16 threads), each run executed by a
real Celery worker, against plain Celery `.delay()` of a no-op from 16 threads on the same
broker and the same worker (pool, concurrency, prefetch: one worker serves all three).

Each side sends for the same time, then waits until everything it sent has finished; its rate
is what it sent over the time from the first send to the last completion.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from django.conf import settings
from django.db import connection

from bench import accepted, end_to_end, stack, wrk
from bench.context import Context, Sizes
from bench.report import Figure
from bench.tasks import PLAIN_DONE_KEY
from bench.trigger_api import TASK, TRIGGER_PATH, trigger_body, trigger_headers
from dashboard.management.launcher import HOST

KEY = "e2e-api"
CLIENTS = 16
POLL = 0.05


@dataclass
class Side:
    name: str
    send: Callable[[stack.Stack, Sizes, float], tuple[int, float]]  # (sent, seconds until all done)
    rates: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    cpu: list[dict[str, float]] = field(default_factory=list)  # ms of CPU per item, by process, a round each

    def cpu_summary(self) -> str:
        """Median ms of CPU per item of each process over the rounds (load-independent, unlike a rate)."""
        parts = {part: statistics.median(round_[part] for round_ in self.cpu) for part in self.cpu[0]}
        split = ", ".join(f"{part} {ms:.2f}" for part, ms in parts.items())
        return f"{self.name}, ms of CPU per item: {split}; total {sum(parts.values()):.2f}"

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    def summary(self, unit: str) -> str:
        rounds = ", ".join(f"{rate:.0f} ({count:,})" for rate, count in zip(self.rates, self.counts, strict=True))
        return f"{self.name}, {unit} (items in the round): {rounds}"


PARTS = ("web", "engine", "worker", "PostgreSQL", "bench (the senders)")


def stack_cpu(bench: stack.Stack) -> dict[str, float]:
    """CPU seconds so far of each of the stack's processes: web, engine, the worker with its
    pool, PostgreSQL (its backends, ended ones included) and this process (its 16 senders)."""
    pids = {part: bench.pids(part) for part in ("web", "engine", "worker")}
    pid_file = Path(settings.VAR_DIR) / "pg" / "postmaster.pid"
    if not os.environ.get("DATABASE_URL") and pid_file.exists():
        pids["PostgreSQL"] = [int(pid_file.read_text().split()[0])]
    used = dict.fromkeys(PARTS, 0.0)
    for part, roots in pids.items():
        used[part] = sum(_tree_cpu(pid) for pid in roots)
    used["bench (the senders)"] = sum(os.times()[:2])
    return used


def _tree_cpu(pid: int) -> float:
    """CPU seconds of a process, its children and the children it reaped."""
    spent = 0.0
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(pid)
        for each in [proc, *proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = each.cpu_times()
                spent += times.user + times.system + times.children_user + times.children_system
    return spent


def in_threads(seconds: float, call: Callable[[], str | None]) -> list[str | None]:
    """call() from CLIENTS threads, back to back, for `seconds`; what each call returned."""
    results: list[list[str | None]] = [[] for _ in range(CLIENTS)]
    end = time.perf_counter() + seconds

    def client(out: list[str | None]) -> None:
        try:
            while time.perf_counter() < end:
                out.append(call())
        finally:
            connection.close()  # each thread's own Django connection

    threads = [threading.Thread(target=client, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [value for out in results for value in out]


def wait_runs_finished(bench: stack.Stack, began: float, timeout: float) -> float:
    """Seconds from `began` until no run of the dev environment is unfinished (none failed)."""
    deadline = began + timeout
    with bench.db() as conn:
        dev = end_to_end.dev_environment_id(conn)
        while left := end_to_end.count_in(conn, dev, end_to_end.UNFINISHED):
            if time.perf_counter() > deadline:
                raise stack.BenchError(f"{left} runs not finished {timeout:g}s after the first trigger")
            time.sleep(POLL)
        seconds = time.perf_counter() - began
        if failed := end_to_end.count_in(conn, dev, end_to_end.FAILED):
            raise stack.BenchError(f"{failed} runs did not complete; see {bench.log_dir}")
    return seconds


def plain_side(bench: stack.Stack, sizes: Sizes, seconds: float) -> tuple[int, float]:
    from bench.tasks import plain_noop

    client = bench.redis()
    client.delete(PLAIN_DONE_KEY)
    began = time.perf_counter()

    def send() -> None:
        plain_noop.delay()

    sent = len(in_threads(seconds, send))
    deadline = began + timeout_for(seconds)
    while int(client.get(PLAIN_DONE_KEY) or 0) < sent:
        if time.perf_counter() > deadline:
            raise stack.BenchError(f"only {client.get(PLAIN_DONE_KEY)!r} of {sent} plain tasks ran")
        time.sleep(POLL)
    done = time.perf_counter() - began
    time.sleep(0.2)
    if (ran := int(client.get(PLAIN_DONE_KEY) or 0)) != sent:
        raise stack.BenchError(f"{ran} plain tasks ran for {sent} sent")
    return sent, done


def api_side(bench: stack.Stack, sizes: Sizes, seconds: float) -> tuple[int, float]:
    body, _ = trigger_body({"n": 1})
    before = accepted.run_count(bench)
    began = time.perf_counter()
    result = wrk.run(
        f"http://{HOST}:{bench.port}{TRIGGER_PATH}",
        seconds=seconds,
        connections=CLIENTS,
        threads=sizes.http_threads,
        method="POST",
        body=body,
        headers=trigger_headers(bench.api_key),
    )
    if set(result.statuses) != {200} or result.socket_errors:
        raise stack.BenchError(f"trigger answered {dict(result.statuses)}; {result.socket_errors}")
    done = wait_runs_finished(bench, began, timeout_for(seconds))
    created = accepted.run_count(bench) - before
    accepted.check_stored(bench, result.ids, created=created, in_flight=CLIENTS)
    accepted.check_completed(bench, result.ids)
    return created, done


def sdk_side(bench: stack.Stack, sizes: Sizes, seconds: float) -> tuple[int, float]:
    from runs.sdk import tasks

    before = accepted.run_count(bench)
    began = time.perf_counter()
    ids = [run_id for run_id in in_threads(seconds, lambda: tasks.trigger(TASK, {"n": 1}).id) if run_id]
    done = wait_runs_finished(bench, began, timeout_for(seconds))
    accepted.check_stored(bench, ids, created=accepted.run_count(bench) - before, in_flight=0)
    accepted.check_completed(bench, ids)
    return len(ids), done


def timeout_for(seconds: float) -> float:
    return max(120.0, seconds * 30)


def run(ctx: Context) -> list[Figure]:
    sizes = ctx.sizes
    seconds = sizes.http_seconds
    plain = Side("plain Celery .delay() of bench.plain_noop from 16 threads", plain_side)
    api = Side("REST API: wrk, 16 keep-alive connections, one trigger per request", api_side)
    sdk = Side("in-process runs.sdk tasks.trigger from 16 threads", sdk_side)
    sides = [plain, api, sdk]
    with stack.stack(KEY, ctx.template, ctx.log_dir) as bench:
        bench.start("web", "engine", "worker")
        for side in sides:  # warm-up: imports, connections, the worker's pool
            side.send(bench, sizes, min(0.5, seconds))
        for i in range(sizes.e2e_rounds):
            for side in sides if i % 2 == 0 else sides[::-1]:
                before = stack_cpu(bench)
                count, took = side.send(bench, sizes, seconds)
                after = stack_cpu(bench)
                side.counts.append(count)
                side.rates.append(count / took)
                side.cpu.append({part: (after[part] - before[part]) * 1000 / count for part in PARTS})
    method = (
        f"{sizes.e2e_rounds} rounds a side of {seconds:g} s of sending, the order reversed every other round;"
        " a side's rate: items sent / seconds from the first send until all finished; medians; one worker"
        " (`--concurrency=2`, prefork, the queue runyard.small-1x), one engine, one daphne"
    )
    lost = (
        "nothing lost: every 200 (and every SDK handle) is one distinct run, COMPLETED with exactly one"
        " COMPLETED attempt, and no run was made beyond them (bar API requests in flight when wrk stopped);"
        " the plain tasks' Redis counter equals the tasks sent"
    )
    return [
        figure("No-op runs end to end, single triggers over the REST API", api, plain, 0.30, [method, lost]),
        figure("No-op runs end to end, single in-process tasks.trigger", sdk, plain, 0.50, [method, lost]),
    ]


def figure(title: str, side: Side, plain: Side, floor: float, details: list[str]) -> Figure:
    ratio = side.rate / plain.rate if plain.rate else 0.0
    return Figure(
        key=KEY,
        title=title,
        measured=f"{side.rate:.0f} runs/s",
        baseline=f"{plain.rate:.0f} tasks/s (plain Celery .delay(), 16 threads)",
        ratio=f"{ratio:.2f}x",
        target=f">= {floor:.2f}x",
        passed=ratio >= floor,
        details=[
            *details,
            side.summary("runs/s"),
            plain.summary("tasks/s"),
            side.cpu_summary(),
            plain.cpu_summary(),
            f"load average at the end: {' '.join(f'{n:.2f}' for n in os.getloadavg())}",
        ],
    )
