"""Channel groups and publish-after-commit. Called only by the engine (and, for new log lines,
by the worker's log capture).

Messages carry ids only; consumers render from current database state, so duplicates
and reordering are harmless.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from dataclasses import dataclass
from functools import partial

from channels.layers import get_channel_layer
from django.db import connection, transaction

log = logging.getLogger(__name__)

ENGINE_CHANNEL = "runyard_engine"
# Ids in one runs.changed message: well under channels-redis's message size, one frame per batch.
RUNS_PER_MESSAGE = 1000
SEND_TIMEOUT = 10.0  # seconds a publish may take before it is given up (and logged)
# Seconds the first change of a burst waits for more to send with it: well under what the
# dashboard's live pages wait to coalesce changes, and far under a person's notice.
PUBLISH_LINGER = 0.02
# Seconds from one send of a process's changes to its next, at the least: under a stream of
# changes (a busy worker) at most 10 sends a second, each with every change since the last.
# Sending every PUBLISH_LINGER cost a worker about a tenth of its no-op runs a second
# (docs/performance.md); the dashboard's pages coalesce changes over 250 ms anyway.
PUBLISH_INTERVAL = 0.1


@dataclass
class Change:
    """Runs of one environment that changed (or were `created`), to tell its group about."""

    environment_id: int
    run_ids: list[str]
    created: bool
    logs: bool = False  # new log lines of these runs, not a change of the runs

    def message(self) -> dict[str, object]:
        run_ids = list(dict.fromkeys(self.run_ids))  # a run that changed twice is named once
        if self.logs:
            return {"type": "run.logs", "run_ids": run_ids}
        if len(run_ids) == 1:
            return {"type": "run.changed", "run_id": run_ids[0], "created": self.created}
        return {"type": "runs.changed", "run_ids": run_ids, "created": self.created}

    def absorb(self, other: Change) -> bool:
        """Take `other`'s runs into this message if it is for the same audience and fits."""
        if (other.environment_id, other.created, other.logs) != (self.environment_id, self.created, self.logs):
            return False
        if len(self.run_ids) + len(other.run_ids) > RUNS_PER_MESSAGE:
            return False
        self.run_ids = [*self.run_ids, *other.run_ids]
        return True


class _Publisher:
    """This process's publishing loop (a thread of its own) and the changes waiting for it."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.pending: list[Change] = []
        self.asleep = True  # the loop waits for `wake`: the next change must set it
        self.idle = threading.Event()  # set while nothing waits to be sent or is being sent
        self.idle.set()
        self.loop = asyncio.new_event_loop()
        self.wake = asyncio.Event()
        self.drain = self.loop.create_task(self._drain())
        threading.Thread(target=self.loop.run_forever, daemon=True, name="runyard-publish").start()

    def put(self, change: Change) -> None:
        with self.lock:
            self.pending.append(change)
            self.idle.clear()
            if not self.asleep:
                return  # the loop takes it with the others: no thread switch per change
            self.asleep = False
        self.loop.call_soon_threadsafe(self.wake.set)

    def take(self) -> list[Change]:
        """The waiting changes, merged (`merge`); the loop sleeps if none."""
        with self.lock:
            taken, self.pending = self.pending, []
            self.asleep = not taken
            if self.asleep:
                self.wake.clear()
                self.idle.set()
        return merge(taken)

    async def _drain(self) -> None:
        """Send the changes one after another: a burst of them sent at once would open as many
        Redis connections as messages, past redis-py's limit (MaxConnectionsError). The first
        change of a burst waits PUBLISH_LINGER for the others, which go out merged with it:
        a worker's start and completion of a short run are one message. A busy process (a
        worker, a web process taking triggers, the engine) sends at most once per
        PUBLISH_INTERVAL, rather than once per change."""
        layer = get_channel_layer()
        sent_at = float("-inf")
        while True:
            await self.wake.wait()
            await asyncio.sleep(max(PUBLISH_LINGER, sent_at + PUBLISH_INTERVAL - self.loop.time()))
            sent_at = self.loop.time()
            for change in self.take():
                group = env_group(change.environment_id)
                try:
                    await asyncio.wait_for(layer.group_send(group, change.message()), SEND_TIMEOUT)
                except Exception:
                    log.warning("could not publish a change of %d runs", len(change.run_ids), exc_info=True)


def merge(changes: list[Change]) -> list[Change]:
    """Changes to send together as few messages: each in the first message of its kind
    (Change.absorb), in order within a kind; messages carry ids, so the order between kinds
    does not matter. New lines of a run that also changed are left out: a run's page takes any
    change of its run for new lines too (dashboard.consumers.RunConsumer.take), and no other
    page reads `run.logs`. A short run logging as it runs then costs one message, not three."""
    merged: list[Change] = []
    for change in changes:
        if not any(earlier.absorb(change) for earlier in merged):
            merged.append(change)
    changed = {(change.environment_id, run_id) for change in merged if not change.logs for run_id in change.run_ids}
    kept = []
    for change in merged:
        if change.logs:
            change.run_ids = [run_id for run_id in change.run_ids if (change.environment_id, run_id) not in changed]
        if change.run_ids:
            kept.append(change)
    return kept


_publisher: _Publisher | None = None
_publisher_lock = threading.Lock()


def flush(timeout: float = 5.0) -> bool:
    """Wait until this process has sent every change handed to it; False if it took longer."""
    publisher = _publisher
    return publisher is None or publisher.pid != os.getpid() or publisher.idle.wait(timeout)


def env_group(environment_id: int) -> str:
    return f"env-{environment_id}"


def publish_run_changed(*, environment_id: int, run_id: str, created: bool = False) -> None:
    """After the current transaction commits, tell subscribers that a run changed."""
    publish_runs_changed(environment_id=environment_id, run_ids=[run_id], created=created)


def publish_runs_changed(*, environment_id: int, run_ids: list[str], created: bool = False) -> None:
    """After the current transaction commits, tell subscribers that these runs changed (one
    message per RUNS_PER_MESSAGE of them)."""
    for start in range(0, len(run_ids), RUNS_PER_MESSAGE):
        change = Change(environment_id, run_ids[start : start + RUNS_PER_MESSAGE], created)
        transaction.on_commit(partial(_send, change))


def publish_run_logs(*, environment_id: int, run_ids: list[str]) -> None:
    """After the current transaction commits, tell subscribers that these runs have new log lines
    (written by a worker's log capture, which changes no run state)."""
    for start in range(0, len(run_ids), RUNS_PER_MESSAGE):
        change = Change(environment_id, run_ids[start : start + RUNS_PER_MESSAGE], created=False, logs=True)
        transaction.on_commit(partial(_send, change))


def _send(change: Change) -> None:
    """Hand the change to this process's publishing loop; it is sent in the order handed.

    The caller does not wait for Redis: waiting took a worker about a tenth of a no-op run's
    time (a thread switch there and back for each of its two messages). Messages are hints
    (ids only), so one lost when the process exits costs nothing the next render does not mend.
    """
    if get_channel_layer() is None:
        return
    try:
        _publisher_here().put(change)
    except Exception:
        log.warning("could not publish a change of %d runs", len(change.run_ids), exc_info=True)


def _publisher_here() -> _Publisher:
    """This process's publishing loop, in a thread of its own, and the queue it sends from.

    async_to_sync outside an event loop makes a new loop, and channels-redis a new connection,
    for every message: about 10 ms each, which made the engine's and the worker's transitions
    slow (docs/performance.md). One loop per process keeps one connection; a forked Celery pool
    process starts its own.
    """
    global _publisher
    with _publisher_lock:
        if _publisher is None or _publisher.pid != os.getpid():
            _publisher = _Publisher()
        return _publisher


def wake_engine() -> None:
    """NOTIFY engines that there is work; delivered by PostgreSQL at commit."""
    with connection.cursor() as cursor:
        cursor.execute(f"NOTIFY {ENGINE_CHANNEL}")


def wake_engine_for_slot(*, environment_id: int, queue: str) -> None:
    """wake_engine for a freed concurrency slot, only if the run's queue has a limit (its own
    or an operator's override).

    A slot of a queue without a limit holds back no queued run, so waking the engine for it
    only costs a tick: with every finished run waking it, the engine ticked back to back while
    runs completed and took the CPU and database from the workers (docs/performance.md).
    One round trip either way: the NOTIFY is a pg_notify of the queue's row, if limited.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_notify(%s, '') FROM runs_queue"
            " WHERE environment_id = %s AND name = %s"
            " AND (concurrency_limit IS NOT NULL OR limit_override IS NOT NULL)",
            [ENGINE_CHANNEL, environment_id, queue],
        )
