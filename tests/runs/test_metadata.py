"""Run metadata while a run executes: the operations (runs.metadata), their write by the engine
(runs.engine.metadata) and `metadata` inside a task (runs.metadata_buffer)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from runs import engine, registry, worker
from runs import metadata as ops
from runs.metadata import MetadataChange, MetadataError
from runs.models import Environment, Run, RunEvent
from runs.sdk import ValidationError, metadata
from runs.states import RunStatus
from tests import factories

# --- the operations ------------------------------------------------------------------------


def test_each_operation_applies_as_the_reference_does() -> None:
    start = {"count": 2, "tags": ["a", "b", "a"], "gone": 1, "one": "x"}
    result = ops.apply(
        start,
        [
            {"type": "set", "key": "status", "value": "running"},
            {"type": "increment", "key": "count", "value": 3},
            {"type": "increment", "key": "count", "value": -1},
            {"type": "increment", "key": "new", "value": 1},
            {"type": "append", "key": "tags", "value": "c"},
            {"type": "append", "key": "one", "value": "y"},
            {"type": "append", "key": "list", "value": 1},
            {"type": "remove", "key": "tags", "value": "a"},
            {"type": "remove", "key": "status", "value": "running"},  # not a list: skipped
            {"type": "delete", "key": "gone"},
        ],
    )
    assert result == {"count": 4, "new": 1, "tags": ["b", "c"], "one": ["x", "y"], "list": [1], "status": "running"}
    assert start["count"] == 2, "the metadata given is not changed"


def test_update_replaces_the_whole_object_and_path_keys_reach_into_nested_objects() -> None:
    result = ops.apply(
        {"old": True},
        [
            {"type": "update", "value": {"stats": {"done": 1}}},
            {"type": "increment", "key": "$.stats.done", "value": 2},
            {"type": "set", "key": "$.stats.phase.name", "value": "load"},
        ],
    )
    assert result == {"stats": {"done": 3, "phase": {"name": "load"}}}


def test_runs_of_increments_and_sets_on_one_key_collapse_keeping_the_order() -> None:
    operations = [
        *({"type": "increment", "key": "n", "value": 1} for _ in range(1000)),
        {"type": "set", "key": "p", "value": 0.1},
        {"type": "set", "key": "p", "value": 0.2},
        {"type": "append", "key": "log", "value": 1},
        {"type": "append", "key": "log", "value": 2},
    ]
    collapsed = ops.collapse(operations)
    assert collapsed == [
        {"type": "increment", "key": "n", "value": 1000},
        {"type": "set", "key": "p", "value": 0.2},
        {"type": "append", "key": "log", "value": 1},
        {"type": "append", "key": "log", "value": 2},
    ]
    assert ops.apply({}, collapsed) == ops.apply({}, operations)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"operations": {"type": "set"}}, "operations"),
        ({"operations": [{"type": "set", "key": "a", "value": 1}, {"type": "rename"}]}, "operations[1].type"),
        ({"operations": [{"type": "set", "key": "", "value": 1}]}, "operations[0].key"),
        ({"operations": [{"type": "set", "key": "$.", "value": 1}]}, "operations[0].key"),
        ({"operations": [{"type": "set", "key": "a"}]}, "operations[0].value"),
        ({"operations": [{"type": "increment", "key": "a", "value": "1"}]}, "operations[0].value"),
        ({"operations": [{"type": "increment", "key": "a", "value": True}]}, "operations[0].value"),
        ({"operations": [{"type": "update", "value": [1]}]}, "operations[0].value"),
        ({"parentOperations": [{"type": "delete"}]}, "parentOperations[0].key"),
        ({"metadata": [1, 2]}, "metadata"),
        ({"metadata": {"a": "nul \x00"}}, "metadata.a"),
    ],
)
def test_a_bad_change_is_refused_naming_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(MetadataError) as caught:
        ops.parse_change(body)
    assert caught.value.field == field
    assert field.split("[")[0] in caught.value.message


def test_operations_win_over_metadata_as_in_the_reference() -> None:
    change = ops.parse_change({"metadata": {"a": 1}, "operations": [{"type": "set", "key": "b", "value": 2}]})
    assert change.replace is None and change.operations == [{"type": "set", "key": "b", "value": 2}]


@pytest.mark.parametrize(
    ("value", "shown"),
    [(0.5, 0.5), (1, 1.0), (-3, 0.0), (7.5, 1.0), ("0.5", None), (True, None), (None, None), (float("nan"), None)],
)
def test_progress_is_a_number_clamped_to_0_1_and_nothing_else(value: Any, shown: float | None) -> None:
    assert ops.progress({"progress": value}) == shown
    assert ops.progress(None) is None


# --- the engine ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_update_writes_the_metadata_without_a_timeline_event_and_publishes_it(
    dev: Environment, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    run = factories.run(metadata={"progress": 0})
    events_before = RunEvent.objects.filter(run=run).count()
    change = MetadataChange(operations=[{"type": "set", "key": "progress", "value": 0.5}])
    with django_capture_on_commit_callbacks() as callbacks:
        after = engine.update_metadata(run_id=run.id, change=change, environment_id=dev.id)
    assert after == {"progress": 0.5}
    run.refresh_from_db()
    assert run.metadata == {"progress": 0.5}
    assert RunEvent.objects.filter(run=run).count() == events_before
    published = [callback.args[0] for callback in callbacks if isinstance(callback, functools.partial)]
    assert [change.run_ids for change in published] == [[run.id]]


@pytest.mark.django_db
def test_parent_and_root_operations_change_those_runs_or_the_run_itself_without_them(dev: Environment) -> None:
    root = factories.run()
    parent = factories.run(parent_run_id=root.id)
    child = factories.run(parent_run_id=parent.id)
    bump = [{"type": "increment", "key": "children", "value": 1}]
    change = MetadataChange(parent_operations=bump, root_operations=bump)
    engine.update_metadata(run_id=child.id, change=change)
    assert Run.objects.get(pk=parent.id).metadata == {"children": 1}
    assert Run.objects.get(pk=root.id).metadata == {"children": 1}
    assert Run.objects.get(pk=child.id).metadata is None
    assert engine.update_metadata(run_id=root.id, change=change) == {"children": 3}


@pytest.mark.django_db
def test_metadata_past_256_kib_is_refused_and_nothing_is_written(dev: Environment) -> None:
    root = factories.run()
    child = factories.run(parent_run_id=root.id)
    change = MetadataChange(
        operations=[{"type": "set", "key": "ok", "value": 1}],
        root_operations=[{"type": "set", "key": "big", "value": "x" * (256 * 1024)}],
    )
    with pytest.raises(engine.MetadataTooLarge, match="at most 256 KiB"):
        engine.update_metadata(run_id=child.id, change=change)
    assert Run.objects.get(pk=child.id).metadata is None and Run.objects.get(pk=root.id).metadata is None


@pytest.mark.django_db
def test_another_environments_run_is_not_found(dev: Environment, prod: Environment) -> None:
    run = factories.run(env="prod")
    with pytest.raises(engine.RunNotFound):
        engine.update_metadata(run_id=run.id, change=MetadataChange(replace={"a": 1}), environment_id=dev.id)


@pytest.mark.django_db
def test_a_run_takes_changes_until_an_hour_after_it_finished(dev: Environment) -> None:
    run = factories.run()
    engine.cancel_run(run_id=run.id, actor="test")
    finished = Run.objects.get(pk=run.id).finished_at
    assert finished is not None
    change = MetadataChange(replace={"late": True})
    with time_machine.travel(finished + timedelta(minutes=59)):
        assert engine.update_metadata(run_id=run.id, change=change) == {"late": True}
    with time_machine.travel(finished + timedelta(minutes=61)), pytest.raises(engine.RunFinished):
        engine.update_metadata(run_id=run.id, change=MetadataChange(replace={"later": True}))
    assert Run.objects.get(pk=run.id).metadata == {"late": True}


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_both_land(dev: Environment) -> None:
    run = factories.run()
    bump = MetadataChange(operations=[{"type": "increment", "key": "n", "value": 1}])
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def writer() -> None:
        from django.db import connection

        try:
            start.wait(timeout=10)
            for _ in range(25):
                engine.update_metadata(run_id=run.id, change=bump)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert Run.objects.get(pk=run.id).metadata == {"n": 100}


# --- inside a task ---------------------------------------------------------------------------


@registry.task(id="test-metadata-storm")
def metadata_storm(payload: Any) -> dict[str, Any]:
    for n in range(1, payload["updates"] + 1):
        metadata.increment("done").set("progress", n / payload["updates"])
    metadata.append("phases", "end")
    return {"seen": metadata.current()}


@registry.task(id="test-metadata-parent-bump")
def parent_bump(payload: Any) -> None:
    metadata.parent.increment("children_done")
    metadata.root.append("seen", payload["me"])


@registry.task(id="test-metadata-fails")
def fails_after_progress(payload: Any) -> None:
    metadata.set("progress", 0.3)
    raise RuntimeError("broke at 30%")


@registry.task(id="test-metadata-not-json")
def not_json(payload: Any) -> str:
    try:
        metadata.set("when", object())
    except ValidationError as exc:
        return exc.field
    return "accepted"


@registry.task(id="test-metadata-too-large")
def too_large(payload: Any) -> str:
    metadata.set("fine", 1)
    metadata.flush()
    metadata.set("big", "x" * 300_000)
    metadata.flush()
    try:
        metadata.set("after", 1)
    except ValidationError as exc:
        return exc.message
    return "accepted"


@registry.task(id="test-metadata-last-progress")
def last_progress(payload: Any) -> None:
    metadata.set("progress", 1)


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[MetadataChange]]:
    """Every metadata write the engine makes (the real one, counted)."""
    made: list[MetadataChange] = []
    real = engine.update_metadata

    def counted(**kwargs: Any) -> dict[str, Any]:
        if not kwargs["change"].empty():
            made.append(kwargs["change"])
        return real(**kwargs)

    monkeypatch.setattr(engine, "update_metadata", counted)
    yield made


def executed(run: Run) -> Run:
    engine.admit(now=timezone.now())
    worker.execute(run_id=run.id, hostname="w1")
    return Run.objects.get(pk=run.id)


@pytest.mark.django_db(transaction=True)
def test_thousands_of_updates_from_a_task_are_a_handful_of_writes_with_the_right_result(
    dev: Environment, writes: list[MetadataChange]
) -> None:
    run = executed(factories.run("test-metadata-storm", payload={"updates": 5000}, metadata={"done": 10}))
    assert run.status == RunStatus.COMPLETED
    assert run.metadata == {"done": 5010, "progress": 1.0, "phases": ["end"]}
    assert factories.decode_output(run) == {"seen": run.metadata}, "the task sees its own changes at once"
    assert 1 <= len(writes) <= 5, f"{len(writes)} writes for 10,000 changes"


@pytest.mark.django_db(transaction=True)
def test_a_childs_parent_and_root_operations_reach_them(dev: Environment) -> None:
    root = factories.run()
    parent = factories.run(parent_run_id=root.id, metadata={"children_done": 1})
    executed(factories.run("test-metadata-parent-bump", payload={"me": "c1"}, parent_run_id=parent.id))
    assert Run.objects.get(pk=parent.id).metadata == {"children_done": 2}
    assert Run.objects.get(pk=root.id).metadata == {"seen": ["c1"]}


@pytest.mark.django_db(transaction=True)
def test_a_failed_attempt_keeps_the_progress_it_reported(dev: Environment) -> None:
    run = executed(factories.run("test-metadata-fails", max_attempts=1))
    assert run.status == RunStatus.FAILED
    assert run.metadata == {"progress": 0.3}


@pytest.mark.django_db(transaction=True)
def test_a_value_that_is_not_json_fails_at_the_call_naming_it(dev: Environment) -> None:
    run = executed(factories.run("test-metadata-not-json"))
    assert factories.decode_output(run) == "metadata.value"


def test_outside_a_task_changes_do_nothing_and_reads_are_none() -> None:
    assert metadata.set("progress", 0.5).increment("n") is not None
    assert metadata.get("progress") is None and metadata.current() is None
    metadata.flush()


@pytest.mark.django_db(transaction=True)
def test_metadata_past_256_kib_from_a_task_is_dropped_and_its_next_call_says_so(dev: Environment) -> None:
    run = executed(factories.run("test-metadata-too-large"))
    assert run.status == RunStatus.COMPLETED
    assert "at most 256 KiB" in factories.decode_output(run)
    assert run.metadata == {"fine": 1}


@pytest.mark.django_db
def test_the_last_progress_is_written_in_the_completions_transaction(dev: Environment) -> None:
    run = factories.run("test-metadata-last-progress")
    engine.admit(now=run.created_at)
    with override_settings(RUNYARD_LOG_FLUSH_INTERVAL=3600), CaptureQueriesContext(connection) as queries:
        worker.execute(run_id=run.id, hostname="w1")
    statements = [q["sql"].replace("1 times:", "").split()[0] for q in queries.captured_queries]
    # Inside the test's transaction, the completion's transaction is its first savepoint: the
    # metadata's read, its row lock and write, then the completion, released (committed) together.
    completion = statements.index("SAVEPOINT")
    assert statements[completion:] == [
        "SAVEPOINT",
        "SELECT",
        "SAVEPOINT",
        "SELECT",
        "UPDATE",
        "RELEASE",
        "WITH",
        "RELEASE",
    ]
    assert Run.objects.get(pk=run.id).metadata == {"progress": 1}
