"""1. Trigger API: POST /api/v1/tasks/{id}/trigger against a bare JSON view on the same daphne."""

from __future__ import annotations

import json
import statistics

from bench import stack
from bench.context import Context
from bench.loadgen import LoadResult, Request, run_load
from bench.report import Figure
from dashboard.management.launcher import HOST
from runs import engine, registry

KEY = "trigger"
TASK = "bench-noop"


def trigger_request(api_key: str, payload: object) -> Request:
    """The body and headers @trigger.dev/sdk sends for tasks.trigger (see tests/live.py)."""
    packet = json.dumps({"json": payload}, separators=(",", ":"))
    options = {"payloadType": "application/super+json", "payloadSize": len(packet)}
    body = json.dumps({"payload": packet, "options": options}, separators=(",", ":")).encode()
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    return Request("POST", f"/api/v1/tasks/{TASK}/trigger", body, headers)


def pretend_worker() -> None:
    """Record bench-noop as served (as a starting worker does) so triggered runs are QUEUED and
    the engine admits them, without a worker taking CPU from the web process."""
    import bench.tasks  # noqa: F401  (registers bench-noop)

    spec = registry.get(TASK)
    assert spec is not None
    engine.register_worker(hostname="bench-pretend@localhost", queues=registry.worker_queues(), specs=[spec])


def run(ctx: Context) -> list[Figure]:
    sizes = ctx.sizes
    with stack.stack(KEY, ctx.template, ctx.log_dir) as bench:
        pretend_worker()
        bench.start("web", "engine")
        ping = [Request("GET", "/bench/ping/")]
        trigger = [trigger_request(bench.api_key, {"n": 1, "name": "bench"})]

        def load(requests: list[Request], seconds: float) -> LoadResult:
            result = run_load(
                HOST,
                bench.port,
                requests,
                processes=sizes.http_processes,
                connections_per_process=sizes.http_connections,
                duration=seconds,
            )
            if result.errors:
                raise stack.BenchError(f"{result.errors} failed requests, e.g. {result.first_error}")
            return result

        load(ping, min(1.0, sizes.http_seconds))  # warm-up: imports, connections, caches
        load(trigger, min(1.0, sizes.http_seconds))
        baselines: list[LoadResult] = []
        targets: list[LoadResult] = []
        for i in range(sizes.http_rounds):
            order = [(ping, baselines), (trigger, targets)]
            for requests, results in order if i % 2 == 0 else order[::-1]:
                results.append(load(requests, sizes.http_seconds))
        with bench.db() as conn:
            stored, waiting = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE status = 'QUEUED') FROM runs_run"
            ).fetchone()  # type: ignore[misc]
    triggered = sum(r.ok for r in targets)
    base = statistics.median(r.rps for r in baselines)
    got = statistics.median(r.rps for r in targets)
    ratio = got / base if base else 0.0
    concurrency = sizes.http_processes * sizes.http_connections
    details = [
        f"{concurrency} keep-alive connections ({sizes.http_processes} client processes x {sizes.http_connections}),"
        f" {sizes.http_rounds} rounds of {sizes.http_seconds:g} s per side, alternating; medians",
        "bare view rounds (req/s): "
        + ", ".join(f"{r.rps:.0f}" for r in baselines)
        + f"; latency p50 {statistics.median(r.p50_ms for r in baselines):.1f} ms,"
        f" p99 {statistics.median(r.p99_ms for r in baselines):.1f} ms",
        "trigger rounds (req/s): "
        + ", ".join(f"{r.rps:.0f}" for r in targets)
        + f"; latency p50 {statistics.median(r.p50_ms for r in targets):.1f} ms,"
        f" p99 {statistics.median(r.p99_ms for r in targets):.1f} ms",
        f"runs stored after the rounds: {stored} (>= {triggered} answered 200 in the timed rounds, plus warm-up);"
        f" still QUEUED (not yet admitted by the engine) at the end: {waiting}",
    ]
    return [
        Figure(
            key=KEY,
            title="Trigger API throughput",
            measured=f"{got:.0f} triggers/s",
            baseline=f"{base:.0f} req/s (bare JSON view)",
            ratio=f"{ratio:.2f}x",
            target=">= 0.50x",
            passed=ratio >= 0.5 and stored >= triggered,
            details=details,
        )
    ]
