"""7. Memory: resident memory of a worker over many runs and of the web process over many requests."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from bench import stack
from bench.context import Context
from bench.end_to_end import count_status, trigger_runs
from bench.loadgen import Request, run_load
from bench.realtime import session_cookie
from bench.report import Figure
from bench.timing import UNSERVED
from bench.trigger_api import trigger_request
from dashboard.management.launcher import HOST
from runs import engine
from runs.models import Environment

KEY = "memory"
MB = 2**20


def worker_rss(bench: stack.Stack, runs: int, warmup: int) -> tuple[int, int]:
    """Worker RSS (main process and its pool) after `warmup` runs completed and after `runs`."""
    timeout = 60 + runs / 2

    def complete(count: int) -> None:
        trigger_runs(count)
        bench.wait_for(lambda: count_status(bench, "COMPLETED") >= done + count, f"{count} runs to complete", timeout)

    done = 0
    complete(warmup)
    done += warmup
    time.sleep(0.5)
    after_warmup = bench.rss("worker")
    complete(runs - warmup)
    time.sleep(0.5)
    return after_warmup, bench.rss("worker")


def web_requests(bench: stack.Stack) -> list[Request]:
    """A mix: triggers (of a task no worker serves), the runs list page, a run over the API."""
    cookie = session_cookie(bench.base_url)
    environment = Environment.objects.get(slug="dev")
    run_id = engine.trigger(environment=environment, task_id=UNSERVED, actor="bench").run.id
    api = {"Authorization": f"Bearer {bench.api_key}"}
    trigger = trigger_request(bench.api_key, {"n": 1})
    return [
        Request(trigger.method, f"/api/v1/tasks/{UNSERVED}/trigger", trigger.body, trigger.headers),
        Request("GET", "/runs/?env=dev", headers={"Cookie": cookie}),
        Request("GET", f"/api/v3/runs/{run_id}", headers=api),
    ]


def web_rss(bench: stack.Stack, requests: list[Request], total: int, warmup: int) -> tuple[int, int]:
    def send(count: int) -> None:
        result = run_load(HOST, bench.port, requests, processes=2, connections_per_process=2, total=count)
        if result.errors:
            raise stack.BenchError(f"{result.errors} failed requests, e.g. {result.first_error}")

    send(warmup)
    after_warmup = bench.rss("web")
    send(total - warmup)
    return after_warmup, bench.rss("web")


def run(ctx: Context) -> list[Figure]:
    sizes = ctx.sizes
    with stack.stack(KEY, ctx.template, ctx.log_dir) as bench:
        bench.start("web", "engine", "worker")
        requests = web_requests(bench)
        # The runs and the requests go on at the same time (the machine has two cores to share).
        with ThreadPoolExecutor(1) as pool:
            worker_phase = pool.submit(worker_rss, bench, sizes.memory_runs, sizes.memory_warmup)
            web = web_rss(bench, requests, sizes.memory_requests, sizes.memory_warmup)
            worker = worker_phase.result()
    figures = []
    for name, (before, after), what in (
        ("worker", worker, f"{sizes.memory_runs:,} no-op runs"),
        ("web", web, f"{sizes.memory_requests:,} requests"),
    ):
        growth = after / before - 1
        figures.append(
            Figure(
                key=KEY,
                title=f"{name} RSS over {what}",
                measured=f"{after / MB:.0f} MiB at the end",
                baseline=f"{before / MB:.0f} MiB after the first {sizes.memory_warmup:,}",
                ratio=f"{after / before:.2f}x",
                target="growth <= 10%",
                passed=growth <= 0.10,
                details=[
                    f"{name}: growth {growth * 100:+.1f}% (psutil RSS of the process"
                    + (" and its prefork pool, summed)" if name == "worker" else ", daphne)"),
                ]
                + (
                    [
                        "requests cycle through a trigger (POST /api/v1/tasks/.../trigger), the runs list page"
                        " (logged in) and GET /api/v3/runs/{id}, 4 keep-alive connections"
                    ]
                    if name == "web"
                    else ["runs triggered in-process in batches of 1,000; the worker has `--concurrency=2`"]
                ),
            )
        )
    return figures
