"""An HTTP load generator: client processes, each with keep-alive connections (http.client) in
threads, sending requests back to back at a fixed concurrency for a fixed time or count."""

from __future__ import annotations

import http.client
import multiprocessing
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.db import connections

OK = (200, 201, 202)
START_DELAY = 0.5  # seconds between forking the clients and their common start


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class LoadResult:
    ok: int
    errors: int
    seconds: float
    latencies: list[float]  # seconds, of the successful requests
    first_error: str = ""

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies) * 1000 if self.latencies else 0.0

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies, 99) * 1000


def percentile(values: list[float], pct: float) -> float:
    """The nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def run_load(
    host: str,
    port: int,
    requests: list[Request],
    *,
    processes: int,
    connections_per_process: int,
    duration: float | None = None,
    total: int | None = None,
) -> LoadResult:
    """Send `requests` (cycled) for `duration` seconds, or `total` requests in all."""
    assert (duration is None) != (total is None), "give a duration or a total"
    connections.close_all()  # the children are forked: they must not share our database sockets
    ctx = multiprocessing.get_context("fork")
    results: Any = ctx.Queue()
    start_at = time.time() + START_DELAY
    slots = processes * connections_per_process
    quotas: list[int | None] = [None] * slots
    if total is not None:
        quotas = [total // slots + (i < total % slots) for i in range(slots)]
    children = [
        ctx.Process(
            target=_client,
            args=(
                results,
                host,
                port,
                requests,
                start_at,
                duration,
                quotas[p * connections_per_process :][:connections_per_process],
                p,
            ),
            daemon=True,
        )
        for p in range(processes)
    ]
    for child in children:
        child.start()
    parts = [results.get(timeout=(duration or 0) + 600) for _ in children]
    for child in children:
        child.join(timeout=10)
    ok = sum(part["ok"] for part in parts)
    errors = sum(part["errors"] for part in parts)
    end = start_at + duration if duration is not None else max(part["finished"] for part in parts)
    latencies = [lat for part in parts for lat in part["latencies"]]
    first_error = next((part["first_error"] for part in parts if part["first_error"]), "")
    return LoadResult(ok=ok, errors=errors, seconds=end - start_at, latencies=latencies, first_error=first_error)


def _client(
    results: Any,
    host: str,
    port: int,
    requests: list[Request],
    start_at: float,
    duration: float | None,
    quotas: list[int | None],
    offset: int,
) -> None:
    tallies: list[dict[str, Any]] = []
    threads = [
        threading.Thread(
            target=_connection, args=(tallies, host, port, requests, start_at, duration, quota, offset + i)
        )
        for i, quota in enumerate(quotas)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(
        {
            "ok": sum(t["ok"] for t in tallies),
            "errors": sum(t["errors"] for t in tallies),
            "latencies": [lat for t in tallies for lat in t["latencies"]],
            "finished": max((t["finished"] for t in tallies), default=start_at),
            "first_error": next((t["first_error"] for t in tallies if t["first_error"]), ""),
        }
    )


def _connection(
    tallies: list[dict[str, Any]],
    host: str,
    port: int,
    requests: list[Request],
    start_at: float,
    duration: float | None,
    quota: int | None,
    offset: int,
) -> None:
    tally: dict[str, Any] = {"ok": 0, "errors": 0, "latencies": [], "finished": start_at, "first_error": ""}
    conn = http.client.HTTPConnection(host, port, timeout=30)
    end = start_at + duration if duration is not None else float("inf")
    time.sleep(max(0.0, start_at - time.time()))
    sent = 0
    while (quota is None or sent < quota) and time.time() < end:
        req = requests[(offset + sent) % len(requests)]
        sent += 1
        began = time.time()
        try:
            conn.request(req.method, req.path, body=req.body, headers=req.headers)
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=30)
            tally["errors"] += 1
            tally["first_error"] = tally["first_error"] or repr(exc)
            continue
        done = time.time()
        if done > end:
            break  # finished after the window: not counted
        if response.status in OK:
            tally["ok"] += 1
            tally["latencies"].append(done - began)
        else:
            tally["errors"] += 1
            tally["first_error"] = tally["first_error"] or f"{response.status} {body[:300]!r}"
        tally["finished"] = done
        if response.will_close:
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.close()
    tallies.append(tally)
