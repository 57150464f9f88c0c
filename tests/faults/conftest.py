"""A live stack of its own for fault tests: they kill workers and stop PostgreSQL.

It runs on its own embedded PostgreSQL and Redis under a temporary directory, so stopping
them never disturbs pytest-django's database or the session's shared `live_stack`, and a
short heartbeat timeout makes a lost worker noticed in seconds.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from dashboard import embedded
from dashboard.management import launcher
from tests.live import LiveStack, poll, prepare, start

HEARTBEAT_INTERVAL = 0.5  # seconds
WORKER_TIMEOUT = 4.0  # seconds without a heartbeat before a run counts as lost
ENGINE_POLL = 0.2


@pytest.fixture(scope="package")
def fault_var() -> Iterator[Path]:
    # Short: the Redis and PostgreSQL sockets live here and must fit in a socket address.
    var = Path(tempfile.mkdtemp(prefix="ry-fault-"))
    (var / "static").mkdir()
    try:
        yield var
    finally:
        embedded.stop_all(var)
        shutil.rmtree(var, ignore_errors=True)


@pytest.fixture(scope="package")
def fault_stack(fault_var: Path) -> Iterator[LiveStack]:
    """Web, worker and engine on the fault stack's own PostgreSQL and Redis."""
    if os.environ.get("DATABASE_URL") or os.environ.get("REDIS_URL"):
        pytest.skip("fault tests stop servers: they need the embedded PostgreSQL and Redis")
    env = launcher.child_env(
        DATABASE_URL=start_postgres(fault_var),
        REDIS_URL=f"unix://{embedded.ensure_redis(fault_var)}",
        RUNYARD_VAR=str(fault_var),
        RUNYARD_TASK_MODULES="example_tasks,tests.faults.tasks",
        RUNYARD_HEARTBEAT_INTERVAL=str(HEARTBEAT_INTERVAL),
        RUNYARD_WORKER_TIMEOUT=str(WORKER_TIMEOUT),
        RUNYARD_ENGINE_POLL_INTERVAL=str(ENGINE_POLL),
    )
    stack = prepare(env)
    stack.logs = {name: fault_var / "logs" / f"{name}.log" for name in ("web", "worker", "engine")}
    stack.processes = start(stack)
    try:
        yield stack
    finally:
        if stack.processes is not None:
            stack.processes.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """A failing fault test's report ends with the fault stack's log tails."""
    report = yield
    stack = getattr(item, "funcargs", {}).get("fault_stack")
    if report.failed and isinstance(stack, LiveStack):
        report.sections.append(("fault stack logs", stack.log_tails(60)))
    return report


def start_postgres(var: Path) -> str:
    """Start (or start again) the stack's PostgreSQL; returns its URL, the same every time."""
    import pgserver

    server = pgserver.get_server(var / "pg", cleanup_mode=None)
    server.ensure_postgres_running()  # a cached server object does not notice it was stopped
    return str(server.get_uri())


def stop_postgres(var: Path) -> None:
    embedded.stop_postgres(var)


def pool_processes(stack: LiveStack) -> list[psutil.Process]:
    """The worker's pool processes (children of the Celery main process)."""
    assert stack.processes is not None
    main = psutil.Process(stack.processes.running["worker"].pid)
    return main.children()


def kill_whole_worker(stack: LiveStack) -> None:
    """SIGKILL the Celery worker and its pool: nothing gets a chance to clean up."""
    assert stack.processes is not None
    proc = stack.processes.running["worker"]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def events(stack: LiveStack, run_id: str) -> list[tuple[str, str, str]]:
    """The run's timeline: (from, to, reason) in order."""
    with stack.db() as conn:
        rows = conn.execute(
            "SELECT from_status, to_status, reason FROM runs_runevent WHERE run_id = %s ORDER BY at, id", (run_id,)
        ).fetchall()
    return [(row[0], row[1], row[2]) for row in rows]


def status_of(stack: LiveStack, run_id: str) -> str:
    with stack.db() as conn:
        row = conn.execute("SELECT status FROM runs_run WHERE id = %s", (run_id,)).fetchone()
    assert row is not None
    return str(row[0])


def wait_for_status(stack: LiveStack, run_id: str, done: set[str], timeout: float) -> str:
    return poll(lambda: status_of(stack, run_id), lambda status: status in done, f"{run_id} to be {done}", timeout)
