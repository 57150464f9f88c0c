"""4b. Finding runs by their logs at scale: the runs list filtered by `logs=` and `log_errors=1`
with 50 log lines per run stored, against the same pages at the small fill (same database,
filled further in between), as the dashboard benchmark does for the plain list."""

from __future__ import annotations

import statistics
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.test import Client

from bench import stack
from bench.context import Context
from bench.dashboard import WARMUP, grow, render_times
from bench.report import Figure

KEY = "logs"
LINES = 50  # per run, one attempt
RARE = "chargeback"  # in RARE_RUNS runs of the first fill only: a handful at both sizes
RARE_RUNS = 5
PAGES = {
    "logs contain a common word": "/runs/?env=dev&logs=processing",
    "logs contain a rare word": f"/runs/?env=dev&logs={RARE}",
    "logs contain a word no run has": "/runs/?env=dev&logs=xylophone",
    "has ERROR logs": "/runs/?env=dev&log_errors=1",
}

# Runs without logs yet, numbered: the lines are made from the number, in the server.
FRESH = """
    CREATE TEMP TABLE fresh AS
    SELECT r.id, r.status, r.created_at, r.task_identifier, row_number() OVER (ORDER BY r.created_at) AS n
    FROM runs_run r WHERE NOT EXISTS (SELECT 1 FROM runs_runlogsummary s WHERE s.run_id = r.id)
"""
# A realistic mix: words on every run (processing, order, customer), customer-<k> on one run in
# 1,000, order numbers and request tokens unique to a line or a run; FAILED runs end on 3 ERRORs.
LINES_SQL = f"""
    INSERT INTO runs_runlog (run_id, attempt, seq, at, level, logger, message, extra)
    SELECT f.id, 1, g.seq, f.created_at + g.seq * interval '10 ms',
           CASE WHEN f.status = 'FAILED' AND g.seq > {LINES} - 3 THEN 40 ELSE 20 END,
           CASE WHEN g.seq = {LINES} THEN 'stdout' ELSE 'app.' || f.task_identifier END,
           CASE
             WHEN g.seq = 1 THEN 'starting ' || f.task_identifier || ' request ' || md5(f.id)
             WHEN g.seq = 2 AND %(first)s AND f.n %% (SELECT greatest(count(*) / {RARE_RUNS}, 1) FROM fresh) = 1
               THEN 'issuing {RARE} for customer-' || (f.n %% 1000)
             WHEN f.status = 'FAILED' AND g.seq > {LINES} - 3
               THEN 'payment gateway timeout after ' || (g.seq * 7) || ' ms: giving up on order ' || (f.n * 100 + g.seq)
             WHEN g.seq = {LINES} THEN 'done in ' || (f.n %% 997) || ' ms'
             ELSE 'processing order ' || (f.n * 100 + g.seq) || ' for customer-' || (f.n %% 1000)
           END,
           NULL
    FROM fresh f CROSS JOIN generate_series(1, {LINES}) AS g(seq)
"""
# What runs.logcapture writes: words = strip(to_tsvector('simple', runs.logsearch.words(...))).
SUMMARIES_SQL = """
    INSERT INTO runs_runlogsummary (run_id, attempt, lines, bytes, errors, dropped, words)
    SELECT l.run_id, 1, count(*), sum(octet_length(l.message)), count(*) FILTER (WHERE l.level >= 40), 0,
           strip(to_tsvector('simple', lower(regexp_replace(string_agg(l.message, ' '), '[^[:alnum:]]+', ' ', 'g'))))
    FROM fresh f JOIN runs_runlog l ON l.run_id = f.id
    GROUP BY l.run_id
"""


def fill_logs(bench: stack.Stack, *, first: bool) -> dict[str, float]:
    """LINES lines and a summary for every run without logs; seconds of each step."""
    steps: dict[str, float] = {}
    with bench.db() as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute("SET work_mem = '256MB'")
        conn.execute(FRESH)
        conn.execute("ANALYZE fresh")
        # Rows go in without their indexes and foreign-key checks (every run id comes from
        # runs_run): building an index once over sorted rows is far cheaper than 50 inserts a run.
        began = time.perf_counter()
        conn.execute("ALTER TABLE runs_runlog DROP CONSTRAINT runs_runlog_pkey")
        conn.execute("DROP INDEX runlogsummary_words")
        conn.execute("SET session_replication_role = replica")
        conn.execute(LINES_SQL, {"first": first})
        steps["lines"] = time.perf_counter() - began
        began = time.perf_counter()
        conn.execute("ALTER TABLE runs_runlog ADD CONSTRAINT runs_runlog_pkey PRIMARY KEY (run_id, attempt, seq)")
        steps["primary key"] = time.perf_counter() - began
        began = time.perf_counter()
        conn.execute(SUMMARIES_SQL)
        conn.execute("SET session_replication_role = origin")
        conn.execute("CREATE INDEX runlogsummary_words ON runs_runlogsummary USING gin (words)")
        steps["summaries"] = time.perf_counter() - began
        began = time.perf_counter()
        conn.execute("VACUUM ANALYZE runs_runlog")
        conn.execute("VACUUM ANALYZE runs_runlogsummary")
        steps["vacuum analyze"] = time.perf_counter() - began
        _check(conn)
    return steps


def _check(conn: Any) -> None:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM runs_run), (SELECT count(*) FROM runs_runlogsummary WHERE lines = %s),"
        " (SELECT count(*) FROM runs_runlog)",
        (LINES,),
    ).fetchone()
    runs, summaries, lines = row
    if runs != summaries or lines != runs * LINES:
        raise stack.BenchError(f"{runs} runs, {summaries} with {LINES} lines, {lines} lines")


def run(ctx: Context) -> list[Figure]:
    sizes = ctx.sizes
    with stack.stack(KEY, ctx.template, ctx.log_dir) as bench:
        client = Client()
        client.force_login(get_user_model().objects.get(username=stack.USERNAME))
        grow(bench, sizes.dashboard_small)
        small_fill = fill_logs(bench, first=True)
        small = render_times(client, "", sizes.page_requests, PAGES)
        grow(bench, sizes.dashboard_large - sizes.dashboard_small)
        large_fill = fill_logs(bench, first=False)
        large = render_times(client, "", sizes.page_requests, PAGES)
    figures = []
    for name, path in PAGES.items():
        base, got = statistics.median(small[name]), statistics.median(large[name])
        figures.append(
            Figure(
                key=KEY,
                title=f"runs list, {name}, with {sizes.dashboard_large:,} runs",
                measured=f"{got * 1000:.1f} ms",
                baseline=f"{base * 1000:.1f} ms with {sizes.dashboard_small:,} runs",
                ratio=f"{got / base:.2f}x",
                target="<= 2x",
                passed=got / base <= 2,
                details=[f"`{path}` small (ms): {_ms(small[name])}", f"`{path}` large (ms): {_ms(large[name])}"],
            )
        )
    figures[0].details.insert(0, _fill_note(sizes.dashboard_small, sizes.dashboard_large, small_fill, large_fill))
    return figures


def _fill_note(small: int, large: int, small_fill: dict[str, float], large_fill: dict[str, float]) -> str:
    def steps(fill: dict[str, float]) -> str:
        return f"{sum(fill.values()):.1f} s (" + ", ".join(f"{k} {v:.1f} s" for k, v in fill.items()) + ")"

    return (
        f"runs by bench/fill.py as in the dashboard benchmark, then {LINES} log lines and a summary per run"
        f" made in the server (INSERT ... SELECT): {small * LINES:,} lines for {small:,} runs in {steps(small_fill)},"
        f" then {(large - small) * LINES:,} more in {steps(large_fill)}; {WARMUP} warm-up renders, then medians"
    )


def _ms(values: list[float]) -> str:
    return ", ".join(f"{v * 1000:.1f}" for v in values)
