"""A worker started without -Q serves every machine preset's queue."""

from __future__ import annotations

import sys

import pytest

from dashboard.management import launcher
from runs import registry
from runs.models import Worker
from tests.live import LiveStack, poll, worker_registrations

pytestmark = pytest.mark.e2e

HOSTNAME = "no-queues@e2e"


def test_a_worker_started_without_q_consumes_every_machine_queue(
    live_stack: LiveStack,
) -> None:
    processes = launcher.Processes(live_stack.env)
    argv = [sys.executable, "-m", "celery", "-A", "dashboard", "worker", "-l", "info", "-n", HOSTNAME]
    log = live_stack.logs["worker"].with_name("live-worker-no-queues.log")
    with log.open("w") as output:
        processes.start("worker-no-queues", argv, output)
    try:
        poll(lambda: worker_registrations(live_stack, HOSTNAME), bool, "the worker to register", 60)
        with live_stack.db() as conn:
            query = f"SELECT queues FROM {Worker._meta.db_table} WHERE hostname = %s"
            row = conn.execute(query, (HOSTNAME,)).fetchone()
        assert row is not None
        # Before task_queues was set, a worker without -Q consumed runyard.small-1x alone.
        assert set(registry.worker_queues()) <= set(row[0]), row[0]
    finally:
        processes.stop()
