"""6. Realtime: logged-in websocket clients of the runs list see a state change in time, and a
storm of changes reaches each of them as a few messages a second."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import requests
import websockets
from asgiref.sync import sync_to_async

from bench import stack
from bench.context import Context
from bench.end_to_end import trigger_runs
from bench.loadgen import percentile
from bench.report import Figure
from bench.trigger_api import pretend_worker
from runs import engine
from runs.events import env_group
from runs.models import Environment, Run

KEY = "realtime"
CHANGE_TIMEOUT = 5.0  # seconds to wait for every client to see one change
CHANGE_GAP = 0.6  # seconds between timed changes: more than the consumers' flush interval
CONNECT_TIMEOUT = 60.0
CONNECT_WAVE = 10  # clients connecting at once
STORM_RUNS = 25  # a page of runs: the rows a storm keeps changing


def session_cookie(base_url: str) -> str:
    """Log in through the login form; the Cookie header of the logged-in session."""
    session = requests.Session()
    page = session.get(f"{base_url}/accounts/login/", timeout=30)
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert match, "no CSRF token on the login page"
    form = {"username": stack.USERNAME, "password": stack.PASSWORD, "csrfmiddlewaretoken": match.group(1)}
    answer = session.post(f"{base_url}/accounts/login/", data=form, timeout=30, allow_redirects=False)
    if "sessionid" not in session.cookies:
        raise stack.BenchError(f"login failed ({answer.status_code})")
    return "; ".join(f"{name}={value}" for name, value in session.cookies.items())


@dataclass
class Client:
    received: list[tuple[float, str]] = field(default_factory=list)  # (time, frame)


async def listen(url: str, cookie: str, origin: str, client: Client, ready: asyncio.Event, stop: asyncio.Event) -> None:
    headers = {"Cookie": cookie}
    connect = websockets.connect(
        url,
        additional_headers=headers,
        origin=origin,  # type: ignore[arg-type]
        max_size=None,
        open_timeout=CONNECT_TIMEOUT,
    )
    async with connect as ws:
        ready.set()
        while not stop.is_set():
            try:
                frame = await asyncio.wait_for(ws.recv(), timeout=0.2)
            except TimeoutError:
                continue
            client.received.append((time.time(), str(frame)))


async def measure(bench: stack.Stack, ctx: Context, run_ids: list[str], cookie: str) -> dict[str, object]:
    sizes = ctx.sizes
    url = f"ws://127.0.0.1:{bench.port}/ws/runs/?env=dev"
    origin = bench.base_url
    clients = [Client() for _ in range(sizes.ws_clients)]
    stop = asyncio.Event()
    readies = [asyncio.Event() for _ in clients]
    tasks: list[asyncio.Task[None]] = []
    try:
        # In waves: a hundred handshakes at once (each a session lookup on the server) time out
        # on a busy machine, and connecting is not what is measured.
        for start in range(0, len(clients), CONNECT_WAVE):
            wave = range(start, min(start + CONNECT_WAVE, len(clients)))
            tasks += [asyncio.create_task(listen(url, cookie, origin, clients[i], readies[i], stop)) for i in wave]
            await asyncio.wait_for(asyncio.gather(*(readies[i].wait() for i in wave)), timeout=CONNECT_TIMEOUT)
        await asyncio.sleep(1.0)  # every consumer has joined its group
        latencies, missed = await timed_changes(clients, run_ids[STORM_RUNS:][: sizes.ws_changes])
        storm = await storm_rates(bench, clients, run_ids[:STORM_RUNS], sizes.storm_rate, sizes.storm_seconds)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"latencies": latencies, "missed": missed, **storm}


async def timed_changes(clients: list[Client], run_ids: list[str]) -> tuple[list[float], int]:
    """Cancel each run (a real transition) and time until every client got its row."""
    latencies: list[float] = []
    missed = 0
    cancel = sync_to_async(engine.cancel_run, thread_sensitive=False)
    for run_id in run_ids:
        marks = [len(c.received) for c in clients]
        began = time.time()
        await cancel(run_id=run_id, actor="bench", reason="realtime benchmark")
        deadline = began + CHANGE_TIMEOUT
        seen: dict[int, float] = {}
        while len(seen) < len(clients) and time.time() < deadline:
            for i, client in enumerate(clients):
                if i not in seen:
                    hit = next((at for at, frame in client.received[marks[i] :] if run_id in frame), None)
                    if hit is not None:
                        seen[i] = hit - began
            await asyncio.sleep(0.01)
        latencies += seen.values()
        missed += len(clients) - len(seen)
        await asyncio.sleep(CHANGE_GAP)
    return latencies, missed


async def storm_rates(
    bench: stack.Stack, clients: list[Client], run_ids: list[str], rate: int, seconds: float
) -> dict[str, object]:
    """Messages each client received in each whole second of a storm of `rate` changes a second."""
    environment_id = await sync_to_async(lambda: Environment.objects.get(slug="dev").pk)()
    marks = [len(c.received) for c in clients]
    began = time.time()
    argv = [sys.executable, "-m", "bench.storm", env_group(environment_id), str(rate), str(seconds), *run_ids]
    proc = await asyncio.create_subprocess_exec(*argv, env=bench.env, stdout=subprocess.PIPE)
    out, _ = await proc.communicate()
    await asyncio.sleep(1.0)  # the last flush
    if proc.returncode != 0:
        raise stack.BenchError("the storm process failed")
    sent = json.loads(out.decode().strip().splitlines()[-1])
    per_second: list[int] = []
    totals: list[int] = []
    for client, mark in zip(clients, marks, strict=True):
        frames = client.received[mark:]
        totals.append(len(frames))
        windows = Counter(int(at - began) for at, _ in frames)
        per_second += windows.values()  # every whole second until the last flush, however long the storm took
    return {
        "sent": sent["sent"],
        "storm_seconds": sent["seconds"],
        "max_per_second": max(per_second, default=0),
        "totals": totals,
    }


def run(ctx: Context) -> list[Figure]:
    sizes = ctx.sizes
    with stack.stack(KEY, ctx.template, ctx.log_dir) as bench:
        pretend_worker()
        trigger_runs(STORM_RUNS + sizes.ws_changes)  # QUEUED (no engine): cancelable
        run_ids = list(Run.objects.order_by("created_at", "id").values_list("id", flat=True))
        bench.start("web")
        cookie = session_cookie(bench.base_url)
        result = asyncio.run(measure(bench, ctx, run_ids, cookie))
    latencies: list[float] = result["latencies"]  # type: ignore[assignment]
    missed: int = result["missed"]  # type: ignore[assignment]
    p95 = percentile(latencies + [float("inf")] * missed, 95)
    achieved = result["sent"] / result["storm_seconds"]  # type: ignore[operator]
    max_rate: int = result["max_per_second"]  # type: ignore[assignment]
    totals: list[int] = result["totals"]  # type: ignore[assignment]
    clients = f"{sizes.ws_clients} websocket clients of /ws/runs/?env=dev (logged in through the login form)"
    return [
        Figure(
            key=KEY,
            title="A state change reaches every client (p95)",
            measured=f"p95 {p95 * 1000:.0f} ms",
            baseline="-",
            ratio="-",
            target="<= 500 ms",
            passed=p95 <= 0.5 and missed == 0,
            details=[
                clients + "; asyncio clients (websockets) in one process, one daphne",
                f"{sizes.ws_changes} changes (engine.cancel_run of a queued run, {CHANGE_GAP:g} s apart), from the call"
                f" to each client's frame naming the run: p50 {percentile(latencies, 50) * 1000:.0f} ms,"
                f" p95 {p95 * 1000:.0f} ms, max {max(latencies, default=0) * 1000:.0f} ms; missed: {missed}",
            ],
        ),
        Figure(
            key=KEY,
            title=f"Messages a client gets under {sizes.storm_rate:,} changes/s",
            measured=f"at most {max_rate} messages/s",
            baseline="-",
            ratio="-",
            target="<= 5 messages/s",
            passed=max_rate <= 5 and max(totals, default=0) > 0,
            details=[
                f"a separate process (bench.storm) sent {result['sent']} run.changed messages for {STORM_RUNS} runs"
                f" to the environment's group in {result['storm_seconds']:.1f} s ({achieved:.0f}/s)",
                f"messages per client in the storm: min {min(totals, default=0)}, max {max(totals, default=0)};"
                f" the most any client got in one whole second: {max_rate}",
            ],
        ),
    ]
