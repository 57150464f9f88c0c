"""GET and PUT /api/v1/runs/{runId}/metadata, in the shapes the official SDK 4.8's
apiClient.getRunMetadata / updateRunMetadata send and parse."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import time_machine

from runs import engine
from runs.models import Environment, Run
from tests import factories
from tests.api.conftest import Api

pytestmark = pytest.mark.django_db


def put(api: Api, run_id: str, body: Any) -> Any:
    data = body if isinstance(body, str) else json.dumps(body)
    return api.client.put(
        f"/api/v1/runs/{run_id}/metadata", data=data, content_type="application/json", headers=api.headers()
    )


def test_operations_apply_and_the_answer_is_the_metadata_after(api: Api, dev: Environment) -> None:
    run = factories.run(metadata={"done": 1})
    body = {
        "operations": [
            {"type": "increment", "key": "done", "value": 2},
            {"type": "set", "key": "progress", "value": 0.25},
            {"type": "append", "key": "seen", "value": "a"},
        ],
        "parentOperations": [],
        "rootOperations": [],
    }
    response = put(api, run.id, body)
    assert response.status_code == 200, response.json()
    assert response.json() == {"metadata": {"done": 3, "progress": 0.25, "seen": ["a"]}}
    assert api.get(f"/api/v1/runs/{run.id}/metadata").json() == response.json()


def test_metadata_without_operations_replaces_the_whole_object(api: Api, dev: Environment) -> None:
    run = factories.run(metadata={"old": True})
    assert put(api, run.id, {"metadata": {"new": 1}}).json() == {"metadata": {"new": 1}}
    assert Run.objects.get(pk=run.id).metadata == {"new": 1}


def test_a_run_without_metadata_reads_as_an_empty_object(api: Api, dev: Environment) -> None:
    run = factories.run()
    assert api.get(f"/api/v1/runs/{run.id}/metadata").json() == {"metadata": {}}


def test_parent_operations_change_the_parent(api: Api, dev: Environment) -> None:
    parent = factories.run()
    child = factories.run(parent_run_id=parent.id)
    put(api, child.id, {"parentOperations": [{"type": "increment", "key": "children", "value": 1}]})
    assert Run.objects.get(pk=parent.id).metadata == {"children": 1}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"operations": "set"}, "operations"),
        ({"operations": [{"type": "bump", "key": "a"}]}, "operations[0].type"),
        ({"operations": [{"type": "increment", "key": "a", "value": "x"}]}, "operations[0].value"),
        ({"rootOperations": [{"type": "set", "value": 1}]}, "rootOperations[0].key"),
        ({"metadata": "text"}, "metadata"),
    ],
)
def test_a_bad_body_is_a_400_naming_the_field(api: Api, dev: Environment, body: Any, param: str) -> None:
    run = factories.run()
    response = put(api, run.id, body)
    assert response.status_code == 400
    assert response.json()["param"] == param


def test_a_body_that_is_not_an_object_is_a_400(api: Api, dev: Environment) -> None:
    run = factories.run()
    assert put(api, run.id, "[1]").status_code == 400


def test_metadata_past_256_kib_is_a_413_and_nothing_changes(api: Api, dev: Environment) -> None:
    run = factories.run(metadata={"keep": 1})
    response = put(api, run.id, {"operations": [{"type": "set", "key": "big", "value": "x" * 300_000}]})
    assert response.status_code == 413
    assert "256 KiB" in response.json()["error"] and response.json()["param"] == "metadata"
    assert Run.objects.get(pk=run.id).metadata == {"keep": 1}


def test_another_environments_run_is_not_found(api: Api, dev: Environment, prod: Environment) -> None:
    run = factories.run(env="prod")
    assert put(api, run.id, {"metadata": {"a": 1}}).status_code == 404
    assert api.get(f"/api/v1/runs/{run.id}/metadata").status_code == 404
    assert Run.objects.get(pk=run.id).metadata is None


def test_a_run_finished_over_an_hour_ago_refuses_with_422(api: Api, dev: Environment) -> None:
    run = factories.run()
    engine.cancel_run(run_id=run.id, actor="test")
    finished = Run.objects.get(pk=run.id).finished_at
    assert finished is not None
    with time_machine.travel(finished + timedelta(minutes=30)):
        assert put(api, run.id, {"metadata": {"late": 1}}).status_code == 200
    with time_machine.travel(finished + timedelta(hours=2)):
        response = put(api, run.id, {"metadata": {"later": 1}})
    assert response.status_code == 422
    assert "finished over an hour ago" in response.json()["error"]
