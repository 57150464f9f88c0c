"""1. Trigger API and Runyard's HTTP stack against a bare Django project on the same daphne.

Runyard's web (daphne, dashboard.asgi, every middleware) and the bare project of bench/bare/
(no middleware, no apps, one JSON view) run side by side, each from the same daphne command
on its own port; wrk drives both with the same connections, rounds alternating. A raw asyncio
responder shows what wrk itself can drive, and a second Runyard web of two daphnes sharing one
socket (`up --web-processes 2`) what a second process adds.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from django.conf import settings

from bench import accepted, stack, wrk
from bench.context import Context, Sizes
from bench.loadgen import Request
from bench.report import Figure
from dashboard.management import launcher
from runs import engine, registry

KEY = "trigger"
TASK = "bench-noop"
TRIGGER_PATH = f"/api/v1/tasks/{TASK}/trigger"
NOT_FOUND_PATH = "/api/v1/no-such-endpoint"
BARE_APP = "bench.bare.asgi:application"
CAPACITY_FLOOR = 5.0  # wrk must drive at least this many times the bare view's rate


def trigger_body(payload: object) -> tuple[bytes, dict[str, str]]:
    """The body @trigger.dev/sdk sends for tasks.trigger (see tests/live.py), without the key."""
    packet = json.dumps({"json": payload}, separators=(",", ":"))
    options = {"payloadType": "application/super+json", "payloadSize": len(packet)}
    body = json.dumps({"payload": packet, "options": options}, separators=(",", ":")).encode()
    return body, {"Content-Type": "application/json"}


def trigger_headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}


def trigger_request(api_key: str, payload: object) -> Request:
    """The trigger as a request of bench/loadgen.py (the memory benchmark's client)."""
    return Request("POST", TRIGGER_PATH, trigger_body(payload)[0], trigger_headers(api_key))


def pretend_worker() -> None:
    """Record bench-noop as served (as a starting worker does) so triggered runs are QUEUED and
    the engine admits them, without a worker taking CPU from the web process."""
    import bench.tasks  # noqa: F401  (registers bench-noop)

    spec = registry.get(TASK)
    assert spec is not None
    engine.register_worker(hostname="bench-pretend@localhost", queues=registry.worker_queues(), specs=[spec])


@dataclass
class Side:
    """One thing loaded in the rounds: a URL, its request, the status it must answer."""

    name: str
    url: str
    status: int
    method: str = "GET"
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    results: list[wrk.WrkResult] = field(default_factory=list)

    def load(self, sizes: Sizes, seconds: float) -> wrk.WrkResult:
        result = wrk.run(
            self.url,
            seconds=seconds,
            connections=sizes.http_connections,
            threads=sizes.http_threads,
            method=self.method,
            body=self.body,
            headers=self.headers,
        )
        wrong = {code: n for code, n in result.statuses.items() if code != self.status}
        if wrong or result.socket_errors:
            raise stack.BenchError(f"{self.name}: answers {wrong} besides {self.status}; {result.socket_errors}")
        return result

    @property
    def rps(self) -> float:
        return statistics.median(r.rps for r in self.results)

    def summary(self) -> str:
        rates = ", ".join(f"{r.rps:.0f}" for r in self.results)
        p50 = statistics.median(r.p50_ms for r in self.results)
        p99 = statistics.median(r.p99_ms for r in self.results)
        return f"{self.name} rounds (req/s): {rates}; latency p50 {p50:.1f} ms, p99 {p99:.1f} ms"


def start_responder(bench: stack.Stack) -> int:
    port = launcher.free_port()
    procs = launcher.Processes(bench.env)
    with (bench.log_dir / f"{bench.name}-responder.log").open("a") as out:
        procs.start("responder", [sys.executable, "-m", "bench.responder", str(port)], out)
    bench.processes["responder"] = procs
    bench.wait_for(lambda: launcher.port_in_use(port), "the responder to listen")
    return port


def cpu_seconds(bench: stack.Stack) -> dict[str, float]:
    """CPU time so far of the bench's processes by role (user + system), and of wrk (our
    children reaped so far): a profile of who had the cores during a round."""
    spent: dict[str, float] = {}
    roles = {"web x1": "web", "web x2": "web2", "engine": "engine"}
    for role, name in roles.items():
        spent[role] = sum(_cpu(pid) for pid in bench.pids(name))
    pid_file = Path(settings.VAR_DIR) / "pg" / "postmaster.pid"
    if pid_file.exists():
        postmaster = int(pid_file.read_text().splitlines()[0])
        with contextlib.suppress(psutil.Error):
            procs = [psutil.Process(postmaster), *psutil.Process(postmaster).children()]
            spent["PostgreSQL"] = sum(_cpu(p.pid) for p in procs)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    spent["wrk"] = children.ru_utime + children.ru_stime
    spent["bench (this process)"] = sum(os.times()[:2])
    machine = psutil.cpu_times()
    spent["machine"] = machine.user + machine.system + machine.nice + machine.irq + machine.softirq
    return spent


def _cpu(pid: int) -> float:
    with contextlib.suppress(psutil.Error):
        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
    return 0.0


def run(ctx: Context) -> list[Figure]:
    sizes = ctx.sizes
    with stack.stack(KEY, ctx.template, ctx.log_dir) as bench:
        pretend_worker()
        bench.start("web", "engine")
        bare_port = bench.start_daphne("bare", BARE_APP, DJANGO_SETTINGS_MODULE="bench.bare.settings")
        web2_port = bench.start_daphne("web2", processes=2)
        responder_port = start_responder(bench)
        body, _ = trigger_body({"n": 1, "name": "bench"})
        auth = trigger_headers(bench.api_key)
        base = f"http://{launcher.HOST}"
        sides = {
            "bare-post": Side("bare view, POST", f"{base}:{bare_port}/ping", 200, "POST", body, auth),
            "trigger": Side("trigger", f"{base}:{bench.port}{TRIGGER_PATH}", 200, "POST", body, auth),
            "trigger-x2": Side(
                "trigger, 2 web processes", f"{base}:{web2_port}{TRIGGER_PATH}", 200, "POST", body, auth
            ),
            "bare-get": Side("bare view, GET", f"{base}:{bare_port}/ping", 200),
            "404": Side("404", f"{base}:{bench.port}{NOT_FOUND_PATH}", 404),
            "healthz": Side("/healthz", f"{base}:{bench.port}/healthz", 200),
            "responder": Side("raw asyncio responder", f"{base}:{responder_port}/ping", 200, "POST", body, auth),
        }
        before = accepted.run_count(bench)
        for side in sides.values():  # warm-up: imports, connections, caches
            side.load(sizes, min(1.0, sizes.http_seconds))
        warm_runs = accepted.run_count(bench) - before
        profile = rounds(bench, list(sides.values()), sizes)
        created = accepted.run_count(bench) - before - warm_runs
        triggers = [sides["trigger"], sides["trigger-x2"]]
        ids = [run_id for side in triggers for r in side.results for run_id in r.ids]
        in_flight = sizes.http_connections * len(triggers) * sizes.http_rounds
        accepted.check_stored(bench, ids, created=created, in_flight=in_flight)
        committed = accepted.check_committed_before_response(bench, bench.port, TRIGGER_PATH, body, auth)
    checks = (
        f"nothing lost: each of the {len(ids):,} 200s of the timed trigger rounds is one distinct run in the"
        f" ledger; {created:,} runs were made in those rounds (the difference: requests in flight when wrk"
        f" stopped, at most {in_flight}); {committed} triggers sent one by one were each found in the database"
        " from another connection as soon as their 200 was read (committed before the response)"
    )
    return figures(sides, sizes, profile, checks)


def rounds(bench: stack.Stack, sides: list[Side], sizes: Sizes) -> dict[str, float]:
    """`http_rounds` rounds of every side, the order reversed every other round; returns the
    CPU profile of the last round of the two-process web."""
    profile: dict[str, float] = {}
    for i in range(sizes.http_rounds):
        for side in sides if i % 2 == 0 else sides[::-1]:
            began = cpu_seconds(bench) if side.name.endswith("2 web processes") else None
            side.results.append(side.load(sizes, sizes.http_seconds))
            if began is not None:
                after = cpu_seconds(bench)
                profile = {role: after[role] - began.get(role, 0.0) for role in after}
                profile["wall"] = side.results[-1].seconds
    return profile


def ratio_figure(
    title: str, target: Side, base: Side, floor: float, unit: str, details: list[str], passed: Callable[[float], bool]
) -> Figure:
    ratio = target.rps / base.rps if base.rps else 0.0
    return Figure(
        key=KEY,
        title=title,
        measured=f"{target.rps:.0f} {unit}",
        baseline=f"{base.rps:.0f} req/s ({base.name})",
        ratio=f"{ratio:.2f}x",
        target=f">= {floor:.2f}x",
        passed=passed(ratio),
        details=[*details, target.summary(), base.summary()],
    )


def figures(sides: dict[str, Side], sizes: Sizes, profile: dict[str, float], checks: str) -> list[Figure]:
    method = (
        f"wrk -t{sizes.http_threads} -c{sizes.http_connections} --latency, keep-alive,"
        f" {sizes.http_rounds} rounds of {sizes.http_seconds:g} s per side, the order reversed every"
        " other round; medians"
    )
    wall = profile.pop("wall", 0.0) or 1.0
    cores = psutil.cpu_count() or 1
    machine = profile.pop("machine", 0.0)
    profile["everything else (other sessions on the machine)"] = max(0.0, machine - sum(profile.values()))
    split = ", ".join(f"{role} {spent / wall:.2f}" for role, spent in profile.items() if spent > 0.005)
    at_least = 1.6 if cores >= 4 else 1.0
    x2 = sides["trigger-x2"].rps / sides["trigger"].rps if sides["trigger"].rps else 0.0
    return [
        ratio_figure(
            "Load generator capacity (wrk against a raw asyncio responder)",
            sides["responder"],
            sides["bare-post"],
            CAPACITY_FLOOR,
            "req/s",
            [method + "; the same POST body and headers as the trigger; wrk is far from the bottleneck"],
            lambda ratio: ratio >= CAPACITY_FLOOR,
        ),
        ratio_figure(
            "Trigger API throughput",
            sides["trigger"],
            sides["bare-post"],
            0.75,
            "triggers/s",
            [method + "; the same body and headers to both", checks],
            lambda ratio: ratio >= 0.75,
        ),
        ratio_figure(
            "A 404 of Runyard's stack",
            sides["404"],
            sides["bare-get"],
            0.80,
            "req/s",
            [method + f"; GET {NOT_FOUND_PATH} (the API's JSON 404)"],
            lambda ratio: ratio >= 0.80,
        ),
        ratio_figure(
            "/healthz of Runyard's stack",
            sides["healthz"],
            sides["bare-get"],
            0.80,
            "req/s",
            [method + "; GET /healthz (database, Redis and worker checks)"],
            lambda ratio: ratio >= 0.80,
        ),
        Figure(
            key=KEY,
            title="Trigger API, 2 web processes against 1",
            measured=f"{sides['trigger-x2'].rps:.0f} triggers/s (2 daphnes, one socket)",
            baseline=f"{sides['trigger'].rps:.0f} triggers/s (1 daphne)",
            ratio=f"{x2:.2f}x",
            target=f">= {at_least:.2f}x on {cores} cores (1.60x needs 4)",
            passed=x2 >= at_least,
            details=[
                method + "; `up --web-processes 2`: two daphnes adopting one listening socket (--fd)",
                f"cores busy during the last 2-process round, by process (CPU s per wall s, of {cores}): {split}",
                sides["trigger-x2"].summary(),
                sides["trigger"].summary(),
            ],
        ),
    ]
