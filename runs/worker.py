"""What a Celery worker does: announce its tasks, and execute one attempt of a run."""

from __future__ import annotations

import logging
import threading
import traceback
from typing import Any

from celery.signals import worker_init, worker_process_init, worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections, connection, connections

from runs import context, engine, packets, registry

log = logging.getLogger(__name__)


def execute(*, run_id: str, hostname: str) -> None:
    """Run one attempt of run_id if the engine lets it start."""
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
    task_context = context.TaskContext(run_id=run_id, attempt=number, environment_id=run.environment_id)
    with Heartbeat(run_id, number), context.running(task_context):
        try:
            payload = packets.load(run.payload, run.payload_type, environment_id=run.environment_id)
            output, output_type = packets.encode(spec.call(payload))
            # Over the output limit fails like any task error, retries included: the output
            # may differ next time, as with an output that is not JSON.
            output, output_type = packets.store_output(
                output, output_type, environment_id=run.environment_id, run_id=run_id, attempt=number
            )
        except context.Suspend:
            engine.suspend_run(run_id=run_id, attempt=number)
            return
        except Exception as exc:  # noqa: BLE001 - any failure of task code fails the attempt
            engine.fail_attempt(run_id=run_id, attempt=number, error=error_from(exc), retry=spec.retry)
            return
    done = engine.complete_attempt(run_id=run_id, attempt=number, output=output, output_type=output_type)
    if done is None:  # a stale attempt: its offloaded output belongs to no run
        packets.discard(output, output_type, environment_id=run.environment_id)


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
    """Refreshes the run's heartbeat from a thread while the attempt runs."""

    def __init__(self, run_id: str, attempt: int) -> None:
        self.run_id, self.attempt = run_id, attempt
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name=f"heartbeat-{run_id}")

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)

    def _beat(self) -> None:
        try:
            while not self.stopped.wait(settings.RUNYARD_HEARTBEAT_INTERVAL):
                engine.heartbeat(run_id=self.run_id, attempt=self.attempt)
        except Exception:
            log.warning("heartbeat for %s failed", self.run_id, exc_info=True)
        finally:
            connection.close()


# --- worker life cycle --------------------------------------------------------------------

_alive = threading.Event()


@worker_init.connect
def load_tasks(**_: object) -> None:
    """Import task modules in the main process, before the pool forks."""
    registry.load_task_modules()


@worker_ready.connect
def announce(sender: Any = None, **_: object) -> None:
    hostname = getattr(sender, "hostname", None) or "unknown"
    queues = sorted(q.name for q in sender.task_consumer.queues) if sender is not None else []
    engine.register_worker(hostname=hostname, queues=queues, specs=list(registry.REGISTRY.values()))
    close_old_connections()
    threading.Thread(target=_keep_alive, args=(hostname,), daemon=True, name="runyard-alive").start()


@worker_shutdown.connect
def farewell(sender: Any = None, **_: object) -> None:
    _alive.set()
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


def persistent_connections(max_age: int = 60) -> None:
    """Keep this process's database connections open between units of work."""
    for conn in connections.all():
        conn.settings_dict["CONN_MAX_AGE"] = max_age
