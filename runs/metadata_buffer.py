"""`metadata` inside a task: change the run's metadata while it runs, a few writes a second.

    from runs.sdk import metadata

    for n, item in enumerate(items, 1):
        handle(item)
        metadata.set("progress", n / len(items)).increment("handled")

Every call changes the task's own view at once (metadata.current(), metadata.get) and queues an
operation; operations in a row on one key merge (a thousand increments are one). The worker's
log writer thread (runs.logcapture.LogWriter, every RUNYARD_LOG_FLUSH_INTERVAL) writes what is
queued through runs.engine.update_metadata, and the attempt's end writes the rest before its
outcome, in the completion's transaction. A task updating a thousand times a second writes
its run two or three times a second.

Outside a task (code calling a task function directly, a test) every change does nothing and
get/current return None, as in the official SDK.

Metadata past 256 KiB is refused when written: the queued operations are dropped, the worker
logs a warning, and the task's next metadata call raises ValidationError saying so.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from runs import engine, logcapture
from runs import metadata as ops
from runs.sdk_types import ValidationError

log = logging.getLogger(__name__)

TARGETS = ("self", "parent", "root")
PENDING_WAKE = 1000  # queued operations (after merging) that wake the writer before its interval


class Pending:
    """One attempt's metadata as its code sees it, and the operations not written yet."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.lock = threading.Lock()  # guards store and queued
        self.writing = threading.Lock()  # one write at a time: the thread's, or the attempt end's
        # Read at the first use: most tasks never touch their metadata, and the worker's start
        # of a run does not read it (runs.engine.sql.STARTED_FIELDS).
        self._store: dict[str, Any] | None = None
        self.queued: dict[str, list[ops.Operation]] = {target: [] for target in TARGETS}
        self.refused: str = ""  # why the last write was refused, told to the task's next call

    def add(self, target: str, raw: dict[str, Any]) -> None:
        """Queue one operation (checked now, so a bad value fails where it was given)."""
        if self.refused:
            message, self.refused = self.refused, ""
            raise ValidationError("metadata", message)
        try:
            operation = ops.parse_operation(raw, "metadata")
        except ops.MetadataError as exc:
            raise ValidationError(exc.field, exc.message) from exc
        with self.lock:
            if target == "self":
                self._store = ops.apply_into(self.store(), [operation])
            queued = self.queued[target]
            ops.push(queued, operation)
            wake = len(queued) >= PENDING_WAKE
        if wake:
            logcapture.WRITER.wake()

    def store(self) -> dict[str, Any]:
        """The metadata as the task sees it (the caller holds the lock)."""
        if self._store is None:
            self._store = engine.read_metadata(run_id=self.run_id)
        return self._store

    def unwritten(self) -> bool:
        with self.lock:
            return any(self.queued.values())

    def write(self, *, reread: bool = False) -> None:
        """Write what is queued, in one engine call. A refused write (over 256 KiB) drops it.
        reread: with nothing queued, read the run's metadata anew (another writer's changes)."""
        with self.writing:
            with self.lock:
                taken, self.queued = self.queued, {target: [] for target in TARGETS}
            change = ops.MetadataChange(
                operations=taken["self"], parent_operations=taken["parent"], root_operations=taken["root"]
            )
            if change.empty() and not reread:
                return
            try:
                written = engine.update_metadata(run_id=self.run_id, change=change)  # a read if empty
            except engine.MetadataTooLarge as exc:
                self.refused = f"run metadata not saved: {exc}"
                log.warning("run %s: %d metadata changes dropped: %s", self.run_id, len(taken["self"]), exc)
                written = engine.read_metadata(run_id=self.run_id)
            except Exception:
                self._give_back(taken)
                raise
            with self.lock:
                # What another writer (an API client) changed, with what the task queued since.
                self._store = ops.apply_into(written, self.queued["self"])

    def _give_back(self, taken: dict[str, list[ops.Operation]]) -> None:
        with self.lock:
            for target in TARGETS:
                later, self.queued[target] = self.queued[target], []
                for operation in [*taken[target], *later]:
                    ops.push(self.queued[target], operation)


_current: ContextVar[Pending | None] = ContextVar("runyard_metadata", default=None)
_attempts: set[Pending] = set()  # what the writer thread writes
_attempts_lock = threading.Lock()


@contextmanager
def buffering(*, run_id: str) -> Iterator[Pending]:
    """The code run inside changes run_id's metadata; the caller writes what is left (finish)."""
    pending = Pending(run_id)
    token = _current.set(pending)
    with _attempts_lock:
        _attempts.add(pending)
    try:
        yield pending
    finally:
        _current.reset(token)


def finish(pending: Pending) -> None:
    """Stop writing the attempt's metadata in the background and write what is left."""
    with _attempts_lock:
        _attempts.discard(pending)
    pending.write()


def write_all() -> None:
    """Write every attempt's queued metadata (the log writer thread, each interval)."""
    with _attempts_lock:
        attempts = list(_attempts)
    for pending in attempts:
        try:
            pending.write()
        except Exception:
            log.warning("could not write run %s's metadata; trying again", pending.run_id, exc_info=True)


logcapture.WRITER.also(write_all)


class _Updater:
    """set/delete/increment/... of one target run: the task's own, its parent, its root."""

    def __init__(self, target: str) -> None:
        self._target = target

    def _queue(self, operation: dict[str, Any]) -> _Updater:
        pending = _current.get()
        if pending is not None:
            pending.add(self._target, operation)
        return self

    def set(self, key: str, value: Any) -> _Updater:
        return self._queue({"type": "set", "key": key, "value": value})

    def delete(self, key: str) -> _Updater:
        return self._queue({"type": "delete", "key": key})

    def increment(self, key: str, by: float = 1) -> _Updater:
        return self._queue({"type": "increment", "key": key, "value": by})

    def decrement(self, key: str, by: float = 1) -> _Updater:
        if isinstance(by, int | float) and not isinstance(by, bool):
            by = -abs(by)  # the reference's decrement never adds
        return self.increment(key, by)

    def append(self, key: str, value: Any) -> _Updater:
        return self._queue({"type": "append", "key": key, "value": value})

    def remove(self, key: str, value: Any) -> _Updater:
        return self._queue({"type": "remove", "key": key, "value": value})

    def replace(self, value: dict[str, Any]) -> _Updater:
        return self._queue({"type": "update", "value": value})


class Metadata(_Updater):
    """The running task's metadata: changes are queued and written a few times a second."""

    def __init__(self) -> None:
        super().__init__("self")
        self.parent = _Updater("parent")
        self.root = _Updater("root")

    def get(self, key: str) -> Any:
        """The value of a top-level key as the task last set it (None: no such key, or not in a task)."""
        pending = _current.get()
        if pending is None:
            return None
        with pending.lock:
            return copy.deepcopy(pending.store().get(key))

    def current(self) -> dict[str, Any] | None:
        """A copy of the whole metadata as the task sees it; None outside a task."""
        pending = _current.get()
        if pending is None:
            return None
        with pending.lock:
            return ops.apply(pending.store(), [])

    def flush(self) -> None:
        """Write what is queued now, instead of at the next interval."""
        pending = _current.get()
        if pending is not None:
            pending.write()

    def refresh(self) -> None:
        """Write what is queued, then see the run's metadata as stored: with what others (an
        API client, a child's parent operations) changed meanwhile."""
        pending = _current.get()
        if pending is not None:
            pending.write(reread=True)


metadata = Metadata()
