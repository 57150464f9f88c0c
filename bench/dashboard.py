"""5. Dashboard at scale: pages rendered server-side with many runs stored, against the same
pages with few runs stored (the same database, filled further in between)."""

from __future__ import annotations

import statistics
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.test import Client

from bench import stack
from bench.context import Context
from bench.fill import fill
from bench.report import Figure

KEY = "dashboard"
PAGES = {
    "runs list": "/runs/?env=dev",
    "runs list, status filter": "/runs/?env=dev&status=FAILED",
    "runs list, tag filter": "/runs/?env=dev&tag=customer-7",
    "run page": "/runs/{run_id}/?env=dev",
}
WARMUP = 3


def render_times(client: Client, run_id: str, repeat: int, pages: dict[str, str] = PAGES) -> dict[str, list[float]]:
    """Seconds per server-side render of each page (after WARMUP untimed renders)."""
    times: dict[str, list[float]] = {}
    for name, url in pages.items():
        path = url.format(run_id=run_id)
        for _ in range(WARMUP):
            _get(client, path)
        samples = []
        for _ in range(repeat):
            began = time.perf_counter()
            _get(client, path)
            samples.append(time.perf_counter() - began)
        times[name] = samples
    return times


def _get(client: Client, path: str) -> None:
    response = client.get(path)
    if response.status_code != 200:
        raise stack.BenchError(f"GET {path} answered {response.status_code}")


def grow(bench: stack.Stack, count: int) -> None:
    """Add `count` runs with COPY, then VACUUM ANALYZE as an operator's database would be."""
    with bench.db() as conn:
        environments = dict(conn.execute("SELECT slug, id FROM runs_environment").fetchall())
        conn.autocommit = False
        fill(conn, count, environments=environments)
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE runs_run")
        conn.execute("VACUUM ANALYZE runs_runevent")


def newest_completed(bench: stack.Stack) -> str:
    with bench.db() as conn:
        row = conn.execute(
            "SELECT r.id FROM runs_run r JOIN runs_environment e ON e.id = r.environment_id"
            " WHERE e.slug = 'dev' AND r.status = 'COMPLETED' ORDER BY r.created_at DESC LIMIT 1"
        ).fetchone()
    assert row is not None
    return str(row[0])


def run(ctx: Context) -> list[Figure]:
    sizes = ctx.sizes
    with stack.stack(KEY, ctx.template, ctx.log_dir) as bench:
        client = Client()
        client.force_login(get_user_model().objects.get(username=stack.USERNAME))
        began = time.perf_counter()
        grow(bench, sizes.dashboard_small)
        small_fill = time.perf_counter() - began
        small = render_times(client, newest_completed(bench), sizes.page_requests)
        began = time.perf_counter()
        grow(bench, sizes.dashboard_large - sizes.dashboard_small)
        large_fill = time.perf_counter() - began
        large = render_times(client, newest_completed(bench), sizes.page_requests)
    figures = []
    for name in PAGES:
        base, got = statistics.median(small[name]), statistics.median(large[name])
        ratio = got / base
        figures.append(
            Figure(
                key=KEY,
                title=f"{name} with {sizes.dashboard_large:,} runs",
                measured=f"{got * 1000:.1f} ms",
                baseline=f"{base * 1000:.1f} ms with {sizes.dashboard_small:,} runs",
                ratio=f"{ratio:.2f}x",
                target="<= 2x",
                passed=ratio <= 2,
                details=_details(name, small[name], large[name]),
            )
        )
    figures[0].details.insert(
        0,
        f"filled with COPY (bench/fill.py): {sizes.dashboard_small:,} runs in {small_fill:.1f} s, then"
        f" {sizes.dashboard_large - sizes.dashboard_small:,} more in {large_fill:.1f} s (each with one timeline"
        " event; 90% in dev; VACUUM ANALYZE after each fill); Django's test Client in-process, logged-in"
        f" superuser, {WARMUP} warm-up renders then the median of {sizes.page_requests}",
    )
    return figures


def _details(name: str, small: list[float], large: list[float]) -> list[str]:
    def ms(values: list[Any]) -> str:
        return ", ".join(f"{v * 1000:.1f}" for v in values)

    return [f"`{PAGES[name]}` small (ms): {ms(small)}", f"`{PAGES[name]}` large (ms): {ms(large)}"]
