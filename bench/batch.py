"""2. Batch: a 1,000-item NDJSON batch accepted over HTTP, against one psycopg executemany of as
many rows into a copy of the runs table (same columns, indexes and constraints)."""

from __future__ import annotations

import http.client
import json
import statistics
import time
from collections.abc import Iterator
from typing import Any

from bench import stack
from bench.context import Context
from bench.report import Figure
from bench.trigger_api import TASK, pretend_worker
from dashboard.management.launcher import HOST

KEY = "batch"


def ndjson_items(count: int) -> Iterator[bytes]:
    """One item per chunk, as @trigger.dev/sdk streams batch items (tests/e2e/test_batches_live.py)."""
    for index in range(count):
        item = {
            "index": index,
            "task": TASK,
            "payload": json.dumps({"json": {"n": index}}),
            "options": {"payloadType": "application/super+json", "tags": [f"item-{index}"]},
        }
        yield (json.dumps(item) + "\n").encode()


def send_batch(bench: stack.Stack, count: int) -> float:
    """Create a batch and stream its items (chunked); seconds until the stream is answered sealed."""
    auth = {"Authorization": f"Bearer {bench.api_key}"}
    conn = http.client.HTTPConnection(HOST, bench.port, timeout=120)
    try:
        began = time.perf_counter()
        body = json.dumps({"runCount": count, "taskIdentifiers": [TASK]})
        conn.request("POST", "/api/v3/batches", body=body, headers={**auth, "Content-Type": "application/json"})
        created = conn.getresponse()
        answer = json.loads(created.read())
        if created.status != 202:
            raise stack.BenchError(f"batch create answered {created.status}: {answer}")
        headers = {**auth, "Content-Type": "application/x-ndjson"}
        path = f"/api/v3/batches/{answer['id']}/items"
        conn.request("POST", path, body=ndjson_items(count), headers=headers, encode_chunked=True)
        response = conn.getresponse()
        result = json.loads(response.read())
        seconds = time.perf_counter() - began
    finally:
        conn.close()
    if response.status != 200 or not result.get("sealed"):
        raise stack.BenchError(f"batch items answered {response.status}: {result}")
    return seconds


def sample_row(bench: stack.Stack) -> tuple[list[str], tuple[Any, ...]]:
    """The columns and values of a run the API created: the rows executemany inserts are like it."""
    with bench.db() as conn:
        cursor = conn.execute("SELECT * FROM runs_run LIMIT 1")
        row = cursor.fetchone()
        assert row is not None and cursor.description is not None
        return [col.name for col in cursor.description], row


def executemany_seconds(bench: stack.Stack, columns: list[str], row: tuple[Any, ...], count: int) -> float:
    """Seconds to insert `count` such rows with one executemany and commit."""
    from psycopg.types.json import Jsonb

    # JSON columns come back as dicts and lists; `tags` (a text array) is a list too but stays one.
    values = [
        Jsonb(v) if isinstance(v, dict) or (isinstance(v, list) and col != "tags") else v
        for col, v in zip(columns, row, strict=True)
    ]
    id_at = columns.index("id")
    rows = []
    for i in range(count):
        copy = list(values)
        copy[id_at] = f"run_bench{i:020d}"
        rows.append(copy)
    placeholders = ", ".join(["%s"] * len(columns))
    with bench.db() as conn:
        conn.execute("TRUNCATE bench_rows")
        conn.autocommit = False
        began = time.perf_counter()
        with conn.cursor() as cursor:
            cursor.executemany(f"INSERT INTO bench_rows ({', '.join(columns)}) VALUES ({placeholders})", rows)
        conn.commit()
        return time.perf_counter() - began


def run(ctx: Context) -> list[Figure]:
    sizes = ctx.sizes
    count = sizes.batch_items
    with stack.stack(KEY, ctx.template, ctx.log_dir) as bench:
        pretend_worker()
        bench.start("web")
        send_batch(bench, min(count, 10))  # warm-up, and a sample run row
        columns, row = sample_row(bench)
        with bench.db() as conn:
            conn.execute("CREATE TABLE bench_rows (LIKE runs_run INCLUDING ALL)")
        executemany_seconds(bench, columns, row, count)  # warm-up
        baselines: list[float] = []
        batches: list[float] = []
        for i in range(sizes.batch_rounds):
            steps = [
                (lambda: executemany_seconds(bench, columns, row, count), baselines),
                (lambda: send_batch(bench, count), batches),
            ]
            for measure, results in steps if i % 2 == 0 else steps[::-1]:
                results.append(measure())
        with bench.db() as conn:
            stored = conn.execute("SELECT count(*) FROM runs_run").fetchone()[0]  # type: ignore[index]
    base = statistics.median(baselines)
    got = statistics.median(batches)
    ratio = got / base if base else float("inf")
    expected = min(count, 10) + count * sizes.batch_rounds
    return [
        Figure(
            key=KEY,
            title=f"{count:,}-item NDJSON batch accepted",
            measured=f"{got * 1000:.0f} ms",
            baseline=f"{base * 1000:.0f} ms ({count:,}-row executemany)",
            ratio=f"{ratio:.1f}x",
            target="<= 10x",
            passed=ratio <= 10 and stored == expected,
            details=[
                "batch (create + chunked items stream until answered sealed), ms: "
                + ", ".join(f"{s * 1000:.0f}" for s in batches),
                "executemany into `CREATE TABLE bench_rows (LIKE runs_run INCLUDING ALL)` plus commit, ms: "
                + ", ".join(f"{s * 1000:.0f}" for s in baselines),
                f"{sizes.batch_rounds} rounds of each, alternating; medians;"
                f" runs stored: {stored} (expected {expected})",
            ],
        )
    ]
