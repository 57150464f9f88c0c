"""The @task decorator and its defaults."""

from __future__ import annotations

from typing import Any

import pytest

from runs import registry
from runs.registry import Retry, task


def test_a_decorated_function_is_registered_with_its_defaults() -> None:
    @task(id="test-registry-defaults", queue="reports", concurrency_limit=3, max_duration=60, machine="large-1x")
    def build_report(payload: Any) -> int:
        return 1

    spec = registry.get("test-registry-defaults")
    assert spec is not None
    assert (spec.queue, spec.concurrency_limit, spec.max_duration, spec.machine) == ("reports", 3, 60, "large-1x")
    assert spec.retry == Retry()
    assert spec.call({}) == 1


def test_the_default_queue_is_named_after_the_task() -> None:
    @task(id="test-registry-queue")
    def work() -> str:
        return "done"

    spec = registry.get("test-registry-queue")
    assert spec is not None and spec.queue == "task/test-registry-queue"
    assert spec.call({"ignored": True}) == "done"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"id": "has spaces"}, "task id"),
        ({"id": "ok-id", "machine": "huge"}, "machine 'huge'"),
        ({"id": "ok-id", "concurrency_limit": -1}, "concurrency_limit"),
    ],
)
def test_invalid_task_declarations_are_refused_with_the_rule(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        task(**kwargs)


def test_two_functions_cannot_share_a_task_id() -> None:
    @task(id="test-registry-dup")
    def first() -> None: ...

    with pytest.raises(ValueError, match="already registered"):

        @task(id="test-registry-dup")
        def second() -> None: ...


def test_each_machine_preset_has_its_own_celery_queue() -> None:
    assert registry.celery_queue("small-1x") == "runyard.small-1x"
    assert len({registry.celery_queue(m) for m in registry.MACHINES}) == len(registry.MACHINES)


def test_a_region_with_workers_of_its_own_routes_to_its_queue(settings: Any) -> None:
    settings.RUNYARD_REGIONS = ["eu-central-1"]
    assert registry.celery_queue("large-1x", "eu-central-1") == "runyard.large-1x.eu-central-1"
    assert "runyard.micro.eu-central-1" in registry.worker_queues("eu-central-1")


def test_an_unknown_region_is_recorded_but_runs_on_the_shared_queue(settings: Any) -> None:
    settings.RUNYARD_REGIONS = []
    assert registry.celery_queue("small-1x", "us-east-1") == "runyard.small-1x"
