"""Runs benchmarks in order and renders their figures (a benchmark that breaks is a FAIL row)."""

from __future__ import annotations

import importlib
import os
import sys
import time
import traceback
from collections.abc import Callable

from django.conf import settings

from bench import report, stack
from bench.context import Context, Sizes

LAST_RUN = "bench-last-run.json"  # the figures of the last run, under RUNYARD_VAR
# key -> module with run(ctx) -> list[Figure]; in the order they run.
BENCHMARKS = {
    "trigger": "bench.trigger_api",
    "batch": "bench.batch",
    "e2e": "bench.end_to_end",
    "e2e-api": "bench.api_end_to_end",
    "celery": "bench.celery_publish",
    "time": "bench.timing",
    "realtime": "bench.realtime",
    "memory": "bench.memory",
    "dashboard": "bench.dashboard",
    "logs": "bench.logs_scale",
    "logcost": "bench.log_cost",
}


def benchmark(key: str) -> Callable[[Context], list[report.Figure]]:
    run: Callable[[Context], list[report.Figure]] = importlib.import_module(BENCHMARKS[key]).run
    return run


def context(sizes: Sizes) -> Context:
    log_dir = settings.VAR_DIR / "logs" / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    template = stack.prepare_template(log_dir)
    return Context(sizes=sizes, api_key=template.api_key, log_dir=log_dir, template=template)


def run(keys: list[str], sizes: Sizes, *, command: str, quick: bool) -> tuple[str, bool]:
    """Run the benchmarks `keys`; returns the report and whether every target was met."""
    # The benchmarks' own process publishes as their workers are told to (bench/settings.py),
    # under whichever settings it runs (the smoke test's are Runyard's, which adopt every task).
    from bench import settings as bench_settings

    adopted, settings.RUNYARD_CELERY_TASKS = settings.RUNYARD_CELERY_TASKS, bench_settings.RUNYARD_CELERY_TASKS
    try:
        return _run(keys, sizes, command=command, quick=quick)
    finally:
        settings.RUNYARD_CELERY_TASKS = adopted


def _run(keys: list[str], sizes: Sizes, *, command: str, quick: bool) -> tuple[str, bool]:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    ctx = context(sizes)
    figures: list[report.Figure] = []
    for key in keys:
        began = time.monotonic()
        print(f"bench: {key} ...", file=sys.stderr, flush=True)
        try:
            figures += benchmark(key)(ctx)
        except Exception as exc:  # noqa: BLE001 - one broken benchmark is a FAIL row, the others still run
            traceback.print_exc()
            figures.append(report.Figure(key, "(benchmark failed)", f"error: {exc}", "-", "-", "-", False, [repr(exc)]))
        print(f"bench: {key} took {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
        # Saved after each benchmark: an interrupted run can still be rendered (--render).
        measured = report.Run(figures, report.Machine.here(postgres_version()), command, quick, load)
        measured.save(settings.VAR_DIR / LAST_RUN)
    stack.drop_database(stack.TEMPLATE)
    return report.render(measured), all(fig.passed for fig in figures)


def render_last() -> str:
    """The report of the last run again (after editing bench/findings.py), without measuring."""
    return report.render(report.Run.read(settings.VAR_DIR / LAST_RUN))


def postgres_version() -> str:
    with stack.admin_connection() as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]).split()[0] if row else "?"


def merge_last(existing: str) -> str:
    """existing (docs/performance.md) with the last run's keys replaced by its figures."""
    return report.merge(existing, report.Run.read(settings.VAR_DIR / LAST_RUN), list(BENCHMARKS))


def last_keys() -> set[str]:
    """The keys the last run measured."""
    return {fig.key for fig in report.Run.read(settings.VAR_DIR / LAST_RUN).figures}
