"""Actions on runs are audited by the engine (runs.engine.actions), once each, whoever asks:
the in-process Python SDK as `sdk`, like the dashboard and the REST API; never the engine's own
consequences (a canceled parent's children, the runs of a bulk action). Replay says whether it
created a run; nothing guesses it from created_at."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from runs import engine, worker
from runs.engine.bulk import create_bulk_action, work_bulk_actions
from runs.models import AuditEntry, Environment, Run
from runs.sdk import runs
from tests import factories
from tests.runs.test_child_runs import define_all

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def entries() -> list[tuple[str, str, str, str]]:
    return list(AuditEntry.objects.order_by("id").values_list("action", "target", "username", "reason"))


def test_an_sdk_cancel_is_audited_once_as_the_sdk(dev: Environment) -> None:
    run = factories.run()
    runs.cancel(run.id)
    runs.cancel(run.id)  # already final: nothing done, nothing audited
    assert entries() == [("run.cancel", run.id, "sdk", "canceled through the Python SDK")]
    entry = AuditEntry.objects.get()
    assert entry.environment_id == dev.pk and entry.user is None


def test_an_sdk_reschedule_is_audited_with_from_and_to(dev: Environment) -> None:
    run = factories.run(delay_until=timezone.now() + timedelta(hours=1))
    later = timezone.now() + timedelta(hours=5)
    runs.reschedule(run.id, later)
    assert entries() == [("run.reschedule", run.id, "sdk", "rescheduled through the Python SDK")]
    data = AuditEntry.objects.get().data
    assert data == {"from": run.delay_until.isoformat(), "to": later.isoformat()}


def test_an_sdk_replay_is_audited_on_the_original_with_the_new_run_and_what_changed(dev: Environment) -> None:
    original = factories.run()
    handle = runs.replay(original.id, payload={"n": 2}, tags=["again"])
    assert entries() == [("run.replay", original.id, "sdk", "replayed through the Python SDK")]
    assert AuditEntry.objects.get().data == {"replay": handle.id, "changed": ["payload", "tags"]}


def test_a_refused_sdk_reschedule_is_not_audited(dev: Environment) -> None:
    run = factories.run()  # queued, not delayed
    with pytest.raises(Exception, match="not delayed"):
        runs.reschedule(run.id, "2h")
    assert entries() == []


def test_canceling_a_waiting_parent_audits_the_parent_only(dev: Environment) -> None:
    define_all()
    parent = factories.run("fan-out", payload={"n": 2})
    engine.admit(now=parent.created_at)
    worker.execute(run_id=parent.id, hostname="w1")  # it waits on two children
    engine.cancel_run(run_id=parent.id, actor="user:ada", reason="wrong input")
    assert set(Run.objects.filter(parent=parent).values_list("status", flat=True)) == {"CANCELED"}
    assert entries() == [("run.cancel", parent.id, "ada", "wrong input")]


@pytest.mark.parametrize("action", ["cancel", "replay"])
def test_the_runs_of_a_bulk_action_are_not_audited_one_by_one(dev: Environment, action: str) -> None:
    made = [factories.run().id for _ in range(3)]
    create_bulk_action(environment=dev, action=action, reason="cleanup", username="ada", run_ids=made)
    while work_bulk_actions(now=timezone.now()):
        pass
    assert entries() == []  # the dashboard audits the bulk action itself (bulk.<action>), once


def test_replay_says_it_created_a_run_even_when_time_stands_still(dev: Environment) -> None:
    original = factories.run()
    with time_machine.travel(T0, tick=False):
        first = engine.replay_run(run_id=original.id, actor="sdk", options=engine.TriggerOptions(), request_key="r")
        again = engine.replay_run(run_id=original.id, actor="sdk", options=engine.TriggerOptions(), request_key="r")
    # Same request key, same frozen instant: the second answers the first's run, created at "now".
    assert again.run.id == first.run.id and again.run.created_at == T0
    assert (first.created, again.created) == (True, False)
    assert [action for action, *_ in entries()] == ["run.replay"]


def test_a_replay_an_idempotency_key_answers_is_not_created(dev: Environment) -> None:
    original = factories.run()
    holder = factories.run(idempotency_key="order-7")
    replay = engine.replay_run(
        run_id=original.id, actor="sdk", options=engine.TriggerOptions(idempotency_key="order-7")
    )
    assert (replay.run.id, replay.created) == (holder.id, False)
    assert entries() == []
