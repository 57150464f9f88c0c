"""Fill the run ledger fast with COPY: `fill(connection, count)` adds `count` runs (and one
timeline event each) with realistic statuses, tags and creation times.

    python -m bench.fill 1000000      (into DATABASE_URL's database)
"""

from __future__ import annotations

import json
import os
import random
import secrets
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

# Status mix of a busy ledger; final statuses carry finished_at (a check constraint).
STATUSES = [
    ("COMPLETED", 80),
    ("FAILED", 8),
    ("CANCELED", 3),
    ("EXPIRED", 2),
    ("CRASHED", 1),
    ("QUEUED", 2),
    ("EXECUTING", 2),
    ("DELAYED", 1),
    ("WAITING", 1),
]
FINAL = {"COMPLETED", "FAILED", "CANCELED", "EXPIRED", "CRASHED"}
TASKS = [f"task-{n}" for n in range(20)]
# Tag customer-<n>: one run in 100 has each, so that a tag's first page is full with 10,000 runs
# as with 1,000,000 (one in 1,000 left 9 rows at the small size against 25: the figure measured
# the rows rendered, not the scale).
CUSTOMERS = 100
SPAN = timedelta(days=30)  # creation times spread over the last 30 days
COLUMNS = (
    "id, environment_id, task_identifier, status, payload, payload_type, output, output_type, metadata, tags,"
    " queue, concurrency_key, machine, region, priority_ms, max_attempts, ttl, options, idempotency_key_user,"
    " debounce_key, created_at, updated_at, delay_until, queued_at, started_at, finished_at, attempt_count,"
    " dispatch_count, worker, depth, trigger_function, resume_parent_on_completion, resuming, is_test,"
    " trigger_source, celery_id, celery_queue"
)


def fill(conn: psycopg.Connection[Any], count: int, *, environments: dict[str, int], seed: int = 0) -> None:
    """COPY `count` runs and one creation event each; 90% in dev, 10% in prod; newest is now."""
    rng = random.Random(seed)
    statuses = rng.choices([s for s, _ in STATUSES], weights=[w for _, w in STATUSES], k=count)
    now = datetime.now(UTC)
    step = SPAN / max(count, 1)
    dev, prod = environments["dev"], environments["prod"]
    prefix = secrets.token_hex(3)
    ids = []
    with conn.cursor() as cursor, cursor.copy(f"COPY runs_run ({COLUMNS}) FROM STDIN") as copy:
        for i in range(count):
            run_id = f"run_{prefix}{i:019d}"
            ids.append(run_id)
            created = now - step * (count - i)
            status = statuses[i]
            final = status in FINAL
            copy.write_row(
                (
                    run_id,
                    prod if i % 10 == 9 else dev,
                    TASKS[i % len(TASKS)],
                    status,
                    json.dumps({"json": {"n": i}}),
                    "application/super+json",
                    json.dumps({"json": {"ok": True}}) if status == "COMPLETED" else None,
                    "application/super+json" if status == "COMPLETED" else "",
                    None,
                    [f"customer-{i % CUSTOMERS}", f"batch-{i // 1000}"],
                    f"task/{TASKS[i % len(TASKS)]}",
                    "",
                    "small-1x",
                    "",
                    0,
                    3,
                    600,
                    "{}",
                    "",
                    "",
                    created,
                    created + timedelta(seconds=2),
                    created + timedelta(hours=1) if status == "DELAYED" else None,
                    created if status != "DELAYED" else None,
                    created + timedelta(seconds=1) if final or status in ("EXECUTING", "WAITING") else None,
                    created + timedelta(seconds=2) if final else None,
                    1 if final or status in ("EXECUTING", "WAITING") else 0,
                    1 if final or status in ("EXECUTING", "WAITING") else 0,
                    "",
                    0,
                    "trigger",
                    False,
                    False,
                    False,
                    "api",
                    "",
                    "",
                )
            )
    with (
        conn.cursor() as cursor,
        cursor.copy("COPY runs_runevent (run_id, at, from_status, to_status, actor, reason, data) FROM STDIN") as copy,
    ):
        for i, run_id in enumerate(ids):
            created = now - step * (count - i)
            copy.write_row((run_id, created, "", statuses[i], "api:tr_dev_xxxx", "triggered", "{}"))
    conn.commit()


def main() -> None:
    count = int(sys.argv[1])
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        environments: dict[str, int] = dict(conn.execute("SELECT slug, id FROM runs_environment").fetchall())
        fill(conn, count, environments=environments)
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE runs_run")
        conn.execute("VACUUM ANALYZE runs_runevent")


if __name__ == "__main__":
    main()
