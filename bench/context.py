"""What every benchmark gets: its sizes, the template database, where logs go."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from bench.stack import Template


@dataclass(frozen=True)
class Sizes:
    http_seconds: float  # one round of the HTTP load generator
    http_rounds: int  # rounds of each side (baseline and target alternate)
    http_threads: int  # of the load generator (wrk -t)
    http_connections: int  # keep-alive connections in all (wrk -c)
    batch_items: int
    batch_rounds: int
    e2e_runs: int
    e2e_rounds: int
    delayed_runs: int  # due in the same second
    start_runs: int  # delayed runs whose start latency is measured
    ttl_runs: int
    time_spread: float  # seconds over which delays (and TTLs) are spread
    dashboard_small: int  # runs stored for the baseline
    dashboard_large: int
    page_requests: int  # timed renders of each page, after warm-up
    ws_clients: int
    ws_changes: int  # single changes timed
    storm_rate: int  # changes a second
    storm_seconds: float
    memory_runs: int
    memory_requests: int
    memory_warmup: int  # runs and requests before the first RSS reading


FULL = Sizes(
    http_seconds=8,
    http_rounds=3,
    http_threads=2,
    http_connections=16,
    batch_items=1000,
    batch_rounds=5,
    e2e_runs=2000,  # a rate: a round long enough that its start (the first batch's insert) weighs little
    e2e_rounds=5,  # medians of 5 alternating rounds a side: 3 moved the ratio by up to 0.1 from one run to the next
    delayed_runs=10_000,
    start_runs=200,
    ttl_runs=200,
    time_spread=5,
    dashboard_small=10_000,
    dashboard_large=1_000_000,
    page_requests=15,
    ws_clients=100,
    ws_changes=20,
    storm_rate=1000,
    storm_seconds=6,
    memory_runs=10_000,
    memory_requests=10_000,
    memory_warmup=1000,
)

QUICK = Sizes(
    http_seconds=3,
    http_rounds=2,
    http_threads=2,
    http_connections=16,
    batch_items=1000,
    batch_rounds=2,
    e2e_runs=300,
    e2e_rounds=1,
    delayed_runs=1000,
    start_runs=40,
    ttl_runs=40,
    time_spread=3,
    dashboard_small=2000,
    dashboard_large=50_000,
    page_requests=5,
    ws_clients=20,
    ws_changes=5,
    storm_rate=300,
    storm_seconds=3,
    memory_runs=400,
    memory_requests=800,
    memory_warmup=100,
)

# Between the two: the scale benchmarks at a tenth of their full size (minutes, not an hour).
MEDIUM = dataclasses.replace(FULL, dashboard_large=100_000, e2e_runs=500, e2e_rounds=3)

# The smoke test: every code path, nothing measured worth reading.
TINY = Sizes(
    http_seconds=0.5,
    http_rounds=1,
    http_threads=1,
    http_connections=2,
    batch_items=5,
    batch_rounds=1,
    e2e_runs=3,
    e2e_rounds=1,
    delayed_runs=20,
    start_runs=3,
    ttl_runs=3,
    time_spread=0.5,
    dashboard_small=50,
    dashboard_large=200,
    page_requests=1,
    ws_clients=2,
    ws_changes=1,
    storm_rate=20,
    storm_seconds=1,
    memory_runs=6,
    memory_requests=10,
    memory_warmup=2,
)


@dataclass
class Context:
    sizes: Sizes
    api_key: str
    log_dir: Path
    template: Template
