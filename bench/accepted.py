"""Nothing lost on the way: each trigger a client saw accepted is exactly one run in the ledger.

Every figure that triggers runs checks what it triggered with these before it reports, and
raises BenchError (the figure fails) when a run is missing, doubled or unfinished.
"""

from __future__ import annotations

import http.client
import json
from collections import Counter

from bench import stack
from dashboard.management.launcher import HOST

COMMIT_SAMPLES = 20  # triggers whose run is looked up the instant their 200 arrives


def run_count(bench: stack.Stack) -> int:
    with bench.db() as conn:
        row = conn.execute("SELECT count(*) FROM runs_run").fetchone()
    return int(row[0]) if row else 0


def check_stored(bench: stack.Stack, ids: list[str], *, created: int, in_flight: int) -> None:
    """ids (each 200's run id) are distinct runs, all stored; `created` runs were made in all,
    which may exceed the ids only by requests still in flight when the generator stopped."""
    doubled = [run_id for run_id, n in Counter(ids).items() if n > 1]
    if doubled:
        raise stack.BenchError(f"{len(doubled)} run ids answered twice, e.g. {doubled[0]}")
    with bench.db() as conn:
        row = conn.execute("SELECT count(*) FROM runs_run WHERE id = ANY(%s)", (ids,)).fetchone()
    stored = int(row[0]) if row else 0
    if stored != len(ids):
        raise stack.BenchError(f"{len(ids) - stored} of {len(ids)} accepted triggers have no run")
    if not len(ids) <= created <= len(ids) + in_flight:
        raise stack.BenchError(f"{created} runs made for {len(ids)} accepted triggers (+{in_flight} in flight)")


def check_completed(bench: stack.Stack, ids: list[str]) -> None:
    """Every run of ids COMPLETED, with exactly one attempt, itself COMPLETED."""
    with bench.db() as conn:
        rows = conn.execute(
            "SELECT r.status, count(a.id), count(a.id) FILTER (WHERE a.status = 'COMPLETED')"
            " FROM runs_run r LEFT JOIN runs_runattempt a ON a.run_id = r.id"
            " WHERE r.id = ANY(%s) GROUP BY r.id, r.status",
            (ids,),
        ).fetchall()
    bad = [row for row in rows if tuple(row) != ("COMPLETED", 1, 1)]
    if len(rows) != len(ids) or bad:
        example = bad[0] if bad else "missing"
        raise stack.BenchError(
            f"{len(bad) + len(ids) - len(rows)} of {len(ids)} runs not completed once"
            f" (status, attempts, completed attempts: {example})"
        )


def check_committed_before_response(
    bench: stack.Stack, port: int, path: str, body: bytes, headers: dict[str, str]
) -> int:
    """Trigger COMMIT_SAMPLES runs one by one; each must be in the database (read on another
    connection) the moment its 200 is read. Returns how many were checked."""
    client = http.client.HTTPConnection(HOST, port, timeout=30)
    with bench.db() as conn:
        for _ in range(COMMIT_SAMPLES):
            client.request("POST", path, body=body, headers=headers)
            response = client.getresponse()
            answer = response.read()
            if response.status != 200:
                raise stack.BenchError(f"trigger answered {response.status}: {answer[:300]!r}")
            run_id = json.loads(answer)["id"]
            if conn.execute("SELECT 1 FROM runs_run WHERE id = %s", (run_id,)).fetchone() is None:
                raise stack.BenchError(f"run {run_id} was answered 200 before it was committed")
    client.close()
    return COMMIT_SAMPLES
