"""What a Celery worker does: announce its tasks, and execute one attempt of a run."""

from __future__ import annotations

import logging
import os
import queue
import select
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from celery import current_app
from celery.signals import worker_init, worker_process_init, worker_process_shutdown, worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections, connection, connections, transaction

from runs import celery_serving, context, engine, logcapture, metadata_buffer, packets, registry
from runs.models import Run

log = logging.getLogger(__name__)


def execute(*, run_id: str, hostname: str, finish_in_background: bool = False) -> None:
    """Run one attempt of run_id if the engine lets it start.

    finish_in_background (the Celery task): a successful attempt's completion is written by the
    process's Finisher after this returns; otherwise before.
    """
    attempt = engine.start_attempt(run_id=run_id, worker=hostname)
    if attempt is None:
        log.info("run %s may not start (canceled or already handled); skipping", run_id)
        return
    run, number = attempt.run, attempt.number
    spec = registry.get(run.task_identifier)
    if spec is None:
        engine.system_failure(
            run_id=run_id,
            attempt=number,
            error=_error(f"task {run.task_identifier!r} is not served by worker {hostname}"),
        )
        return
    task_context = context.TaskContext(
        run_id=run_id, attempt=number, environment_id=run.environment_id, celery_id=run.celery_id
    )
    beat = Heartbeat(run_id, number)
    logs = logcapture.capturing(
        run_id=run_id, attempt=number, environment_id=run.environment_id, resumed=attempt.resumed
    )
    changes = metadata_buffer.buffering(run_id=run_id)
    try:
        with logs as capture, changes as pending, context.running(task_context):
            payload = packets.load(run.payload, run.payload_type, environment_id=run.environment_id)
            output, output_type = packets.encode(spec.call(payload))
            # Over the output limit fails like any task error, retries included: the output
            # may differ next time, as with an output that is not JSON.
            output, output_type = packets.store_output(
                output, output_type, environment_id=run.environment_id, run_id=run_id, attempt=number
            )
    except context.Suspend:
        beat.stop()
        write_logs(capture, pending)
        engine.suspend_run(run_id=run_id, attempt=number)
        return
    except registry.RetryLater as later:
        beat.stop()
        write_logs(capture, pending)
        error = error_from(later.cause)
        engine.fail_attempt(run_id=run_id, attempt=number, error=error, retry=None, retry_in=later.seconds)
        return
    except Exception as exc:  # noqa: BLE001 - any failure of task code fails the attempt
        beat.stop()
        write_logs(capture, pending)
        engine.fail_attempt(run_id=run_id, attempt=number, error=error_from(exc), retry=spec.retry)
        return
    except BaseException:
        beat.stop()
        raise
    completion = Completion(run_id, number, output, output_type, run.environment_id, beat, capture, pending)
    if finish_in_background:
        FINISHER.submit(completion)
    else:
        completion()


def write_logs(capture: logcapture.Capture, pending: metadata_buffer.Pending) -> None:
    """Write the attempt's last log lines and metadata changes, before its outcome: a failed
    write loses only them."""
    try:
        logcapture.finish(capture)
    except Exception:
        log.warning("could not write the last log lines of run %s", capture.run_id, exc_info=True)
        close_old_connections()
    try:
        metadata_buffer.finish(pending)
    except Exception:
        log.warning("could not write the last metadata changes of run %s", capture.run_id, exc_info=True)
        close_old_connections()


class Completion:
    """Writes a successful attempt's completion, then stops its heartbeat."""

    def __init__(
        self,
        run_id: str,
        attempt: int,
        output: str,
        output_type: str,
        environment_id: int,
        beat: Heartbeat,
        logs: logcapture.Capture,
        metadata: metadata_buffer.Pending,
    ) -> None:
        self.run_id, self.attempt, self.beat, self.logs, self.metadata = run_id, attempt, beat, logs, metadata
        self.output, self.output_type, self.environment_id = output, output_type, environment_id

    def __str__(self) -> str:
        return f"the completion of run {self.run_id} (attempt {self.attempt})"

    def __call__(self) -> None:
        try:
            done = self.complete()
            if done is None:  # a stale attempt: its offloaded output belongs to no run
                packets.discard(self.output, self.output_type, environment_id=self.environment_id)
        finally:
            self.beat.stop()

    def complete(self) -> Run | None:
        """The attempt's last log lines, its last metadata changes and its completion in one
        transaction: one commit (one WAL flush) for all, a good part of what 100 lines cost a
        run (docs/performance.md), and a finished run never misses its last progress. What
        cannot be written is given up, and the completion is written alone."""
        if not self.logs.unwritten_lines() and not self.metadata.unwritten():
            logcapture.finish(self.logs)  # nothing to write: no transaction around the completion
            metadata_buffer.finish(self.metadata)
            return self.record()
        try:
            with transaction.atomic():
                logcapture.finish(self.logs)
                metadata_buffer.finish(self.metadata)
                return self.record()
        except Exception:
            log.warning(
                "could not write run %s's last logs or metadata with its completion", self.run_id, exc_info=True
            )
            close_old_connections()
        return self.record()

    def record(self) -> Run | None:
        return engine.complete_attempt(
            run_id=self.run_id, attempt=self.attempt, output=self.output, output_type=self.output_type
        )


class Finisher:
    """Writes successful attempts' completions on a thread of its own, while Celery hands the
    process its next run.

    Between two runs a pool process waits for Celery's main process: the result goes there, the
    message is acknowledged in Redis, the next one is taken and handed over. The completion (one
    statement, flushed to the WAL) is written meanwhile instead of before; end to end, no-op runs
    went about 8% faster (docs/performance.md).

    It is no less safe. The run was EXECUTING in the ledger before its body ran, so Celery's
    message no longer guards it (delivered again, it finds the run started and is skipped): its
    heartbeat does, and beats until the completion is written. A process that dies first leaves
    the run EXECUTING without a heartbeat, and the engine takes it for crashed, as when it dies
    just before writing the completion in line.

    One completion at a time: the next waits for the one being written, so a slow database slows
    the worker down instead of piling up outputs. A pool process writes what waits before it
    exits (worker_process_shutdown). The thread has a database connection of its own.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid: int | None = None  # the process whose thread runs (threads do not survive a fork)
        self.jobs: queue.Queue[Callable[[], None]] = queue.Queue(maxsize=1)
        self.idle = threading.Event()  # set while no completion is submitted and unwritten
        self.idle.set()

    def submit(self, completion: Callable[[], None]) -> None:
        """Hand `completion` to the thread, once the one before it is written."""
        with self.lock:
            if self.pid != os.getpid():
                self.pid = os.getpid()
                self.jobs, self.idle = queue.Queue(maxsize=1), threading.Event()
                self.idle.set()
                thread = threading.Thread(target=self._work, args=(self.jobs, self.idle), daemon=True)
                thread.name = "runyard-finisher"
                thread.start()
            self.idle.wait()
            self.idle.clear()
            self.jobs.put(completion)

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until what was submitted is written; False if it still is not after `timeout` s."""
        return self.pid != os.getpid() or self.idle.wait(timeout)

    @staticmethod
    def _work(jobs: queue.Queue[Callable[[], None]], idle: threading.Event) -> None:
        while True:
            completion = jobs.get()
            try:
                drop_closed_connection()
                completion()
            except Exception:
                log.exception("could not record %s", completion)
                close_old_connections()  # a connection broken by the error is not used again
            finally:
                idle.set()


FINISHER = Finisher()


def error_from(exc: BaseException) -> dict[str, Any]:
    """The wire protocol's error shape: message, name, stackTrace."""
    return {
        "message": str(exc) or type(exc).__name__,
        "name": type(exc).__name__,
        "stackTrace": "".join(traceback.format_exception(exc)),
    }


def _error(message: str) -> dict[str, Any]:
    return {"message": message, "name": "SystemFailure"}


class Heartbeat:
    """Keeps the run's heartbeat fresh from now until stop() (see Beater)."""

    def __init__(self, run_id: str, attempt: int) -> None:
        self.key = (run_id, attempt)
        BEATER.add(self.key)

    def stop(self) -> None:
        BEATER.remove(self.key)


class Beater:
    """One thread per process refreshes the heartbeat of every attempt the process runs.

    An attempt beats every RUNYARD_HEARTBEAT_INTERVAL from its start. A thread per attempt
    (started, stopped and joined for each run) cost a no-op run more than its own work; this
    thread starts with the first attempt of a process (again after a fork: threads do not
    survive one) and sleeps while no attempt is due.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.due: dict[tuple[str, int], float] = {}  # (run id, attempt) -> monotonic time of its next beat
        self.added = threading.Event()  # wakes the thread for an attempt due before it wakes
        self.wakes_at = 0.0  # monotonic time the thread wakes up next
        self.pid: int | None = None

    def add(self, key: tuple[str, int]) -> None:
        with self.lock:
            due = self.due[key] = time.monotonic() + settings.RUNYARD_HEARTBEAT_INTERVAL
            if self.pid != os.getpid():
                self.pid = os.getpid()
                threading.Thread(target=self._beat, daemon=True, name="runyard-heartbeat").start()
            elif due < self.wakes_at:  # only if the interval changed: no wake-up per attempt
                self.added.set()

    def remove(self, key: tuple[str, int]) -> None:
        with self.lock:
            self.due.pop(key, None)

    def _beat(self) -> None:
        while True:
            interval = settings.RUNYARD_HEARTBEAT_INTERVAL
            with self.lock:
                self.added.clear()
                now = time.monotonic()
                beating = [key for key, at in self.due.items() if at <= now]
                for key in beating:
                    self.due[key] = now + interval
                self.wakes_at = min(self.due.values(), default=now + interval)
                wait = self.wakes_at - now
            for run_id, attempt in beating:
                try:
                    engine.heartbeat(run_id=run_id, attempt=attempt)
                except Exception:
                    log.warning("heartbeat for %s failed", run_id, exc_info=True)
            if beating:
                connection.close()  # a beat every few seconds needs no open connection in between
            self.added.wait(max(wait, 0.01))


BEATER = Beater()


# --- worker life cycle --------------------------------------------------------------------

_alive = threading.Event()


@worker_init.connect
def load_tasks(sender: Any = None, **_: object) -> None:
    """Import task modules in the main process, before the pool forks; the plain Celery tasks
    RUNYARD_CELERY_TASKS adopts become Runyard tasks too."""
    registry.load_task_modules()
    celery_serving.serve(sender.app if sender is not None else current_app)


@worker_ready.connect
def announce(sender: Any = None, **_: object) -> None:
    hostname = getattr(sender, "hostname", None) or "unknown"
    queues = sorted(q.name for q in sender.task_consumer.queues) if sender is not None else []
    worker = engine.register_worker(hostname=hostname, queues=queues, specs=list(registry.REGISTRY.values()))
    if worker.draining and sender is not None:
        # Drained before this start: it consumes nothing until undrained (runs.engine.workers).
        # As the cancel_consumer control command does it: in the consumer's event loop.
        for name in queues:
            sender.call_soon(sender.cancel_task_queue, name)
        log.info("worker %s is draining (since %s): not consuming %s", hostname, worker.draining_at, queues)
    close_old_connections()
    threading.Thread(target=_keep_alive, args=(hostname,), daemon=True, name="runyard-alive").start()


@worker_shutdown.connect
def farewell(sender: Any = None, **_: object) -> None:
    _alive.set()
    finish_completions()
    hostname = getattr(sender, "hostname", None)
    if hostname:
        engine.unregister_worker(hostname=hostname)


def _keep_alive(hostname: str) -> None:
    while not _alive.wait(settings.RUNYARD_HEARTBEAT_INTERVAL):
        try:
            engine.worker_seen(hostname=hostname)
        except Exception:
            log.warning("could not record worker liveness", exc_info=True)
            close_old_connections()


@worker_process_init.connect
def keep_connections(**_: object) -> None:
    """A pool process runs one task at a time: reuse its database connection between tasks."""
    persistent_connections()


@worker_process_shutdown.connect
def finish_completions(**_: object) -> None:
    """Write the completion that waits before the process exits."""
    if not FINISHER.drain():
        log.warning("a completion was still being written when the process exited")


def drop_closed_connection() -> None:
    """Close this thread's database connection if PostgreSQL ended it (a restart, a timeout).

    An idle connection has nothing to read unless the server closed it: one poll of its socket
    instead of a health-check query, or a new connection, per run.
    """
    raw = connection.connection
    if raw is None:
        return
    try:
        readable = bool(select.select([raw.fileno()], [], [], 0)[0])
    except Exception:  # noqa: BLE001 - a socket that cannot be polled is as good as closed
        readable = True
    if readable:
        connection.close()


def persistent_connections(max_age: int = 60) -> None:
    """Keep this process's database connections open between units of work."""
    for conn in connections.all():
        conn.settings_dict["CONN_MAX_AGE"] = max_age
