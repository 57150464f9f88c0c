"""Invariants under load on the live stack: two workers, two engines, a few hundred runs with
random options, random cancels and reschedules.

Afterwards, from the database: every run is final or legitimately still delayed, no queue
(per concurrency key) ever held more active runs than its limit, every timeline follows the
transition table, and no run completed twice.

RUNYARD_INVARIANT_RUNS sets how many runs are triggered (default 300, about a minute on two
cores); the acceptance size of issue 7 is 2,000:

    RUNYARD_INVARIANT_RUNS=2000 python -m pytest tests/e2e/test_invariants_live.py
"""

from __future__ import annotations

import itertools
import os
import random
from collections import Counter, defaultdict
from datetime import datetime

import pytest

from dashboard.management import launcher
from runs.states import ACTIVE_STATUSES, FINAL_STATUSES, can_transition
from tests.live import LiveStack, poll

pytestmark = [pytest.mark.e2e, pytest.mark.fault]

RUNS = int(os.environ.get("RUNYARD_INVARIANT_RUNS", "300"))
LIMITS = {"inv-one": 1, "inv-two": 2, "inv-three": 3}  # queue -> its concurrency limit
KEYS = ["", "tenant-a", "tenant-b"]
SETTLE_TIMEOUT = 60 + RUNS * 0.2  # seconds for every run to end

Event = tuple[str, datetime, str, str]  # run id, at, from status, to status


def random_options(rng: random.Random, number: int) -> tuple[str, dict[str, object]]:
    """A task and trigger options; some delayed (a few far ahead), retried, prioritised, keyed."""
    queue = rng.choice(sorted(LIMITS))
    options: dict[str, object] = {
        "queue": {"name": queue, "concurrencyLimit": LIMITS[queue]},
        "concurrencyKey": rng.choice(KEYS),
        "priority": rng.choice([0, 0, 5, 30]),
        "maxAttempts": rng.randint(1, 3),
    }
    if rng.random() < 0.15:
        options["delay"] = rng.choice(["1s", "2s", "1h"])
    if rng.random() < 0.1:
        options["ttl"] = rng.choice(["1s", "10m"])
    if rng.random() < 0.05:
        options["idempotencyKey"] = f"inv-{number % 3}"  # the same key returns the same run
    task = "always-fails" if rng.random() < 0.1 else "sleep"
    return task, options


def statuses(stack: LiveStack, run_ids: list[str]) -> dict[str, tuple[str, bool]]:
    """Each run's status and whether it is delayed into the future."""
    with stack.db() as conn:
        rows = conn.execute(
            "SELECT id, status, status = 'DELAYED' AND delay_until > now() FROM runs_run WHERE id = ANY(%s)",
            (run_ids,),
        ).fetchall()
    return {row[0]: (row[1], bool(row[2])) for row in rows}


def settled(seen: dict[str, tuple[str, bool]]) -> bool:
    return all(status in FINAL_STATUSES or later for status, later in seen.values())


class Timeline(list[Event]):
    """A run's events, shown one per line in an assertion message."""

    def __repr__(self) -> str:
        return "\n" + "\n".join(f"  {at.isoformat()} {frm or '-'} -> {to}" for _, at, frm, to in self)


def timelines(stack: LiveStack, run_ids: list[str]) -> dict[str, list[Event]]:
    """Each run's events in the order they were written (a run's events are written under its row
    lock, so their ids follow causality; `at` is each engine's tick clock and two engines' ticks
    overlap: an admission stamped by one tick can carry an earlier time than the promotion before it)."""
    with stack.db() as conn:
        rows = conn.execute(
            "SELECT run_id, at, from_status, to_status FROM runs_runevent WHERE run_id = ANY(%s) ORDER BY id",
            (run_ids,),
        ).fetchall()
    chains: dict[str, list[Event]] = defaultdict(list)
    for run_id, at, frm, to in rows:
        chains[run_id].append((run_id, at, frm, to))
    return chains


def peaks(stack: LiveStack, chains: dict[str, list[Event]]) -> dict[tuple[str, str], int]:
    """The most runs holding a slot at once per (queue, concurrency key): +1 on entering DEQUEUED,
    -1 on leaving the active statuses (a slot freed at the same instant counts as freed first)."""
    with stack.db() as conn:
        slots = dict(
            (row[0], (row[1], row[2]))
            for row in conn.execute(
                "SELECT id, queue, concurrency_key FROM runs_run WHERE id = ANY(%s)", (list(chains),)
            )
        )
    steps: dict[tuple[str, str], list[tuple[datetime, int]]] = defaultdict(list)
    for run_id, chain in chains.items():
        for _, at, frm, to in chain:
            if to in ACTIVE_STATUSES and frm not in ACTIVE_STATUSES:
                steps[slots[run_id]].append((at, 1))
            elif frm in ACTIVE_STATUSES and to not in ACTIVE_STATUSES:
                steps[slots[run_id]].append((at, -1))
    result = {}
    for slot, changes in steps.items():
        running = peak = 0
        for _, step in sorted(changes):
            running += step
            peak = max(peak, running)
        result[slot] = peak
    return result


def test_limits_timelines_and_single_completion_hold_under_load(live_stack: LiveStack) -> None:
    rng = random.Random(20261129)
    engine = launcher.Processes(live_stack.env)
    log_path = live_stack.logs["engine"].with_name("live-engine-2.log")
    live_stack.logs["engine-2"] = log_path
    with live_stack.extra_worker("invariants"), log_path.open("w") as log:
        engine.start("engine-2", launcher.commands(0)["engine"], log)
        try:
            run_ids: list[str] = []
            for number in range(RUNS):
                task, options = random_options(rng, number)
                payload = {"seconds": rng.choice([0, 0.02, 0.1])}
                run_id = live_stack.trigger(task, payload, **options)
                if run_id not in run_ids:
                    run_ids.append(run_id)
                if rng.random() < 0.08:  # cancel an earlier run, whatever it is doing now
                    response = live_stack.api("POST", f"/api/v2/runs/{rng.choice(run_ids)}/cancel")
                    assert response.status_code == 200, response.text
                if rng.random() < 0.08:  # move a run's start; only delayed runs may be moved
                    delay = rng.choice(["1s", "3s", "2h"])
                    target = rng.choice(run_ids)
                    response = live_stack.api("POST", f"/api/v1/runs/{target}/reschedule", {"delay": delay})
                    assert response.status_code in {200, 400}, response.text
                    if response.status_code == 400:
                        assert "delayed" in response.text, response.text
            assert engine.exited() is None, "the second engine stopped"
            final = poll(
                lambda: statuses(live_stack, run_ids),
                settled,
                f"all {len(run_ids)} runs to end or wait for their delay",
                SETTLE_TIMEOUT,
                interval=0.5,
            )
        finally:
            engine.stop()

    counts = Counter(status for status, _ in final.values())
    assert counts["COMPLETED"] > len(run_ids) // 3, counts  # it did run the load
    chains = timelines(live_stack, run_ids)
    assert set(chains) == set(run_ids)
    for run_id, events in chains.items():
        chain = Timeline(events)
        assert chain[0][2] == "", chain
        for (_, _, _, previous), (_, _, frm, to) in itertools.pairwise(chain):
            assert frm == previous, chain
            assert frm == to or can_transition(frm, to), chain
        status, delayed_later = final[run_id]
        if not delayed_later:  # a run still delayed when the load settled may have started since
            assert chain[-1][3] == status, chain
        assert sum(1 for *_, to in chain if to == "COMPLETED") <= 1, chain
    for (queue, key), peak in peaks(live_stack, chains).items():
        assert peak <= LIMITS[queue], f"{peak} runs active at once in {queue}/{key!r}, limit {LIMITS[queue]}"
    assert any(peak == LIMITS[queue] for (queue, _), peak in peaks(live_stack, chains).items())
