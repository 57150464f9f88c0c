"""Trigger options that involve time and admission (delay, reschedule, cancel, TTL, queue
limits, concurrency keys), triggered over HTTP as the official SDK does and carried out by
real web, worker and engine processes. Timelines are read from the stack's database."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest

from runs.models import Run, RunAttempt, RunEvent
from runs.states import ACTIVE_STATUSES, FINAL_STATUSES, RunStatus
from tests.live import LiveStack, poll

pytestmark = pytest.mark.e2e

FINISH_TIMEOUT = 30.0
LOAD_TIMEOUT = 180.0


def is_final(run: dict[str, Any]) -> bool:
    return run["status"] in FINAL_STATUSES


def when(value: str) -> datetime:
    return datetime.fromisoformat(value)


def unique_queue(what: str) -> str:
    return f"e2e-{what}-{secrets.token_hex(4)}"


def timeline(stack: LiveStack, run_ids: Iterable[str]) -> list[tuple[str, str, str, str]]:
    """(run id, from, to, concurrency key) of every event of these runs, in insertion order.

    Insertion (id) order, not `at`: the engine stamps a tick's events with the time the tick
    began, so a run admitted into a slot freed during the tick can carry an earlier `at` than
    the completion that freed the slot. The id is taken inside the writing transaction, after
    the admission counted the active runs, so it orders what admission actually saw.
    """
    with stack.db() as conn:
        rows = conn.execute(
            f"SELECT e.run_id, e.from_status, e.to_status, r.concurrency_key"
            f" FROM {RunEvent._meta.db_table} e JOIN {Run._meta.db_table} r ON r.id = e.run_id"
            f" WHERE e.run_id = ANY(%s) ORDER BY e.id",
            (list(run_ids),),
        ).fetchall()
    return [tuple(row) for row in rows]


def peak_active(events: list[tuple[str, str, str, str]]) -> tuple[int, dict[str, int]]:
    """Replay a timeline: the most runs holding a slot at once, overall and per concurrency key."""
    running: Counter[str] = Counter()
    peak, peak_by_key = 0, Counter[str]()
    for _, from_status, to_status, key in events:
        if to_status == RunStatus.DEQUEUED:
            running[key] += 1
        elif from_status in ACTIVE_STATUSES and to_status not in ACTIVE_STATUSES:
            running[key] -= 1
        peak = max(peak, sum(running.values()))
        peak_by_key[key] = max(peak_by_key[key], running[key])
    return peak, dict(peak_by_key)


def statuses_of(stack: LiveStack, run_ids: list[str]) -> Counter[str]:
    with stack.db() as conn:
        rows = conn.execute(
            f"SELECT status, count(*) FROM {Run._meta.db_table} WHERE id = ANY(%s) GROUP BY status", (run_ids,)
        ).fetchall()
    return Counter(dict(rows))


def worker_logs(stack: LiveStack) -> list[str]:
    return [path.read_text(errors="replace") for name, path in stack.logs.items() if name.startswith("worker")]


def trigger_many(stack: LiveStack, count: int, options: list[dict[str, Any]]) -> list[str]:
    """Trigger `count` short sleeps at once from 16 threads; options[i % len(options)] each."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(
            pool.map(lambda i: stack.trigger("sleep", {"seconds": 0.05}, **options[i % len(options)]), range(count))
        )


def all_completed(stack: LiveStack, run_ids: list[str]) -> Counter[str]:
    """Wait until every run is final; fail unless all COMPLETED."""
    statuses = poll(
        lambda: statuses_of(stack, run_ids),
        lambda counts: sum(counts[s] for s in FINAL_STATUSES) == len(run_ids),
        f"{len(run_ids)} runs to finish",
        LOAD_TIMEOUT,
        interval=0.5,
    )
    assert statuses == {RunStatus.COMPLETED: len(run_ids)}, statuses
    return statuses


def test_a_delayed_run_waits_for_its_time_then_completes(live_stack: LiveStack) -> None:
    run_id = live_stack.trigger("hello-world", {"name": "Later"}, delay="2s")

    delayed = live_stack.run(run_id)
    assert delayed["status"] == "DELAYED", delayed
    # About 2 s after creation (the API reads the clock for the delay just before the engine does).
    assert when(delayed["delayedUntil"]) > when(delayed["createdAt"]) + timedelta(seconds=1), delayed

    run = live_stack.run_until(run_id, is_final, "to finish", FINISH_TIMEOUT)
    assert run["status"] == "COMPLETED", run
    assert run["output"] == {"message": "Hello, Later!"}
    assert when(run["startedAt"]) >= when(delayed["delayedUntil"]), run


def test_a_run_delayed_an_hour_and_rescheduled_to_a_second_completes(live_stack: LiveStack) -> None:
    run_id = live_stack.trigger("hello-world", {"name": "Sooner"}, delay="1h")
    delayed = live_stack.run(run_id)
    assert delayed["status"] == "DELAYED", delayed

    response = live_stack.api("POST", f"/api/v1/runs/{run_id}/reschedule", {"delay": "1s"})

    assert response.status_code == 200, response.text
    rescheduled = response.json()
    assert rescheduled["status"] == "DELAYED", rescheduled
    assert when(rescheduled["delayedUntil"]) < when(delayed["delayedUntil"]) - timedelta(minutes=50)
    run = live_stack.run_until(run_id, is_final, "to finish", FINISH_TIMEOUT)
    assert run["status"] == "COMPLETED", run
    assert when(run["startedAt"]) >= when(rescheduled["delayedUntil"]), run


def test_canceling_an_executing_run_stops_it_for_good_and_frees_the_worker(live_stack: LiveStack) -> None:
    run_id = live_stack.trigger("sleep", {"seconds": 5})
    live_stack.run_until(run_id, lambda run: run["status"] == "EXECUTING", "to execute", FINISH_TIMEOUT)
    executing_since = time.monotonic()

    response = live_stack.api("POST", f"/api/v2/runs/{run_id}/cancel")

    assert response.status_code == 200, response.text
    assert response.json() == {"id": run_id}
    assert live_stack.run(run_id)["status"] == "CANCELED"
    # Past the moment the 5 s sleep would have ended, it must still be canceled.
    poll(
        lambda: live_stack.run(run_id),
        lambda run: run["status"] != "CANCELED" or time.monotonic() - executing_since > 8,
        "the sleep to be long over",
        timeout=30,
        interval=0.25,
    )
    run = live_stack.run(run_id)
    assert run["status"] == "CANCELED", run
    assert "output" not in run
    with live_stack.db() as conn:
        events = conn.execute(
            f"SELECT from_status, to_status FROM {RunEvent._meta.db_table} WHERE run_id = %s ORDER BY at, id",
            (run_id,),
        ).fetchall()
        attempts = conn.execute(
            f"SELECT status, finished_at FROM {RunAttempt._meta.db_table} WHERE run_id = %s", (run_id,)
        ).fetchall()
    assert [to for _, to in events] == ["QUEUED", "DEQUEUED", "EXECUTING", "CANCELED"], events
    assert len(attempts) == 1 and attempts[0][0] == "CANCELED" and attempts[0][1] is not None, attempts
    # The attempt's code was stopped, not merely ignored when it reported back.
    assert any(f"Terminating {run_id}-1 " in worker_log for worker_log in worker_logs(live_stack)), "no revoke"
    hello = live_stack.trigger("hello-world", {"name": "again"})
    assert live_stack.run_until(hello, is_final, "to finish", FINISH_TIMEOUT)["status"] == "COMPLETED"


def test_a_run_its_queue_never_admits_expires_when_its_ttl_passes_without_starting(live_stack: LiveStack) -> None:
    closed = {"name": unique_queue("closed"), "concurrencyLimit": 0}
    run_id = live_stack.trigger("hello-world", {"name": "nobody"}, queue=closed, ttl="2s")

    run = live_stack.run_until(run_id, is_final, "to expire", FINISH_TIMEOUT)

    assert run["status"] == "EXPIRED", run
    assert run["ttl"] == "2s"
    assert when(run["expiredAt"]) >= when(run["createdAt"]) + timedelta(seconds=2), run
    assert "startedAt" not in run, run
    assert run["attemptCount"] == 0, run
    assert [to for _, _, to, _ in timeline(live_stack, [run_id])] == ["QUEUED", "EXPIRED"]


def test_a_queue_limit_of_three_holds_under_two_hundred_runs_on_two_workers(live_stack: LiveStack) -> None:
    queue = {"name": unique_queue("limit3"), "concurrencyLimit": 3}
    with live_stack.extra_worker("second") as second:
        run_ids = trigger_many(live_stack, 200, [{"queue": queue}])
        all_completed(live_stack, run_ids)

    peak, _ = peak_active(timeline(live_stack, run_ids))
    assert peak == 3, f"at most 3 runs of the queue may hold a slot at once; the timeline shows {peak}"
    with live_stack.db() as conn:
        workers = dict(
            conn.execute(
                f"SELECT worker, count(*) FROM {RunAttempt._meta.db_table} WHERE run_id = ANY(%s) GROUP BY worker",
                (run_ids,),
            ).fetchall()
        )
    assert sum(workers.values()) == 200, workers
    assert len(workers) == 2 and second in workers, f"both workers should have run some: {workers}"


def test_each_concurrency_key_gets_its_own_slot_of_a_queue_limited_to_one(live_stack: LiveStack) -> None:
    queue = {"name": unique_queue("per-key"), "concurrencyLimit": 1}
    keyed = [{"queue": queue, "concurrencyKey": "tenant-a"}, {"queue": queue, "concurrencyKey": "tenant-b"}]
    run_ids = trigger_many(live_stack, 20, keyed)
    all_completed(live_stack, run_ids)

    peak, peak_by_key = peak_active(timeline(live_stack, run_ids))

    assert peak_by_key == {"tenant-a": 1, "tenant-b": 1}, peak_by_key
    assert peak == 2, f"the two keys should have run side by side, at most one each; the timeline shows {peak}"


def test_a_run_past_its_max_duration_is_stopped_and_ends_timed_out(live_stack: LiveStack) -> None:
    run_id = live_stack.trigger("sleep", {"seconds": 60}, maxDuration=5, maxAttempts=3)
    run = live_stack.run_until(run_id, is_final, "to be stopped", timeout=FINISH_TIMEOUT)
    assert run["status"] == "TIMED_OUT" and "maxDuration" in run["error"]["message"]
    assert run["attemptCount"] == 1  # a timeout is never retried
    with live_stack.db() as conn:
        finished = conn.execute(
            f"SELECT status FROM {RunAttempt._meta.db_table} WHERE run_id = %s", (run_id,)
        ).fetchall()
    assert finished == [("TIMED_OUT",)]
