"""Operators drain a worker: it finishes what it runs, starts nothing else, and keeps draining
across its restarts; what it was handed goes back to the queue for another worker."""

from __future__ import annotations

import json
from typing import Any

import pytest

import example_tasks  # noqa: F401 - registers the example tasks
from runs import engine, registry, worker
from runs.models import AuditEntry, Environment, Run, RunEvent, Worker
from runs.states import RunStatus
from tests import factories

pytestmark = pytest.mark.django_db

QUEUES = ["runyard.small-1x"]


def registered(hostname: str) -> Worker:
    return engine.register_worker(hostname=hostname, queues=QUEUES, specs=list(registry.REGISTRY.values()))


def admitted(task_id: str = "hello-world", payload: Any = None) -> Run:
    run = factories.run(task_id, payload=payload or {"name": "Ada"})
    engine.admit(now=run.created_at)
    run.refresh_from_db()
    assert run.status == RunStatus.DEQUEUED
    return run


def test_draining_records_who_when_and_why_and_audits_it(dev: Environment) -> None:
    registered("w1")
    drained = engine.drain_worker(hostname="w1", actor="user:ops", reason="kernel upgrade")
    row = Worker.objects.get(hostname="w1")
    assert row.draining and row.draining_at == drained.draining_at
    assert (row.drained_by, row.drain_reason) == ("user:ops", "kernel upgrade")
    entry = AuditEntry.objects.get(action="worker.drain")
    assert (entry.username, entry.target, entry.reason, entry.environment) == ("ops", "w1", "kernel upgrade", None)
    assert entry.data == {"worker": "w1", "queues": QUEUES, "changed": True}


def test_draining_a_draining_worker_keeps_the_first_drain(dev: Environment) -> None:
    registered("w1")
    first = engine.drain_worker(hostname="w1", actor="user:ops", reason="first")
    engine.drain_worker(hostname="w1", actor="user:other", reason="second")
    row = Worker.objects.get(hostname="w1")
    assert (row.draining_at, row.drained_by, row.drain_reason) == (first.draining_at, "user:ops", "first")
    assert [e.data["changed"] for e in AuditEntry.objects.filter(action="worker.drain").order_by("id")] == [True, False]


def test_undraining_clears_the_drain_and_audits_it(dev: Environment) -> None:
    registered("w1")
    engine.drain_worker(hostname="w1", actor="user:ops")
    engine.undrain_worker(hostname="w1", actor="user:ops", reason="done")
    row = Worker.objects.get(hostname="w1")
    assert (row.draining_at, row.drained_by, row.drain_reason) == (None, "", "")
    entry = AuditEntry.objects.get(action="worker.undrain")
    assert (entry.reason, entry.data["changed"]) == ("done", True)


def test_an_unknown_worker_cannot_be_drained_and_nothing_is_audited(dev: Environment) -> None:
    with pytest.raises(engine.WorkerNotFound, match="No worker 'nope'"):
        engine.drain_worker(hostname="nope", actor="user:ops")
    with pytest.raises(engine.WorkerNotFound):
        engine.undrain_worker(hostname="nope", actor="user:ops")
    assert not AuditEntry.objects.exists()


def test_a_draining_worker_hands_its_run_back_and_another_worker_runs_it(dev: Environment) -> None:
    registered("w1")
    registered("w2")
    run = admitted()
    available_at = run.available_at
    engine.drain_worker(hostname="w1", actor="user:ops")
    worker.execute(run_id=run.id, hostname="w1")
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED and run.attempt_count == 0 and not run.attempts.exists()
    assert run.available_at == available_at  # its place in the queue is kept
    event = RunEvent.objects.filter(run=run).latest("id")
    assert (event.from_status, event.to_status, event.actor) == (RunStatus.DEQUEUED, RunStatus.QUEUED, "worker:w1")
    assert "w1 is draining" in event.reason
    engine.admit(now=run.updated_at)
    worker.execute(run_id=run.id, hostname="w2")
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED and json.loads(run.output or "") == {"message": "Hello, Ada!"}
    assert run.attempts.get().worker == "w2"


def test_an_undrained_worker_starts_runs_again(dev: Environment) -> None:
    registered("w1")
    engine.drain_worker(hostname="w1", actor="user:ops")
    engine.undrain_worker(hostname="w1", actor="user:ops")
    run = admitted()
    worker.execute(run_id=run.id, hostname="w1")
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED


def test_a_run_the_draining_worker_executes_finishes_there(dev: Environment) -> None:
    registered("w1")
    run = admitted()
    attempt = engine.start_attempt(run_id=run.id, worker="w1")
    assert attempt is not None
    engine.drain_worker(hostname="w1", actor="user:ops")
    assert engine.heartbeat(run_id=run.id, attempt=1)
    done = engine.complete_attempt(run_id=run.id, attempt=1, output="{}", output_type="application/json")
    assert done is not None and done.status == RunStatus.COMPLETED


def test_a_canceled_run_refused_to_a_draining_worker_stays_canceled(dev: Environment) -> None:
    registered("w1")
    run = admitted()
    engine.cancel_run(run_id=run.id, actor="test")
    engine.drain_worker(hostname="w1", actor="user:ops")
    assert engine.start_attempt(run_id=run.id, worker="w1") is None
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELED


def test_a_draining_worker_that_shuts_down_keeps_its_row_and_its_drain_on_restart(dev: Environment) -> None:
    registered("w1")
    registered("w2")
    engine.drain_worker(hostname="w1", actor="user:ops", reason="disk")
    engine.unregister_worker(hostname="w1")
    engine.unregister_worker(hostname="w2")
    assert list(Worker.objects.values_list("hostname", flat=True)) == ["w1"]
    again = registered("w1")
    assert again.draining and again.drain_reason == "disk"
    run = admitted()
    worker.execute(run_id=run.id, hostname="w1")
    assert Run.objects.get(pk=run.pk).status == RunStatus.QUEUED
