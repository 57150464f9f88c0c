"""Workers over the REST API: any key reads them; only a production key drains and undrains,
audited as the key."""

from __future__ import annotations

import pytest

from runs import engine, registry
from runs.models import AuditEntry, Environment, Worker
from tests.api.conftest import Api

pytestmark = pytest.mark.django_db

HOST = "celery@box-1"


@pytest.fixture
def box(dev: Environment) -> Worker:
    return engine.register_worker(hostname=HOST, queues=["runyard.small-1x"], specs=list(registry.REGISTRY.values()))


def test_any_key_lists_and_retrieves_workers(api: Api, box: Worker) -> None:
    listed = api.get("/api/v1/workers")
    assert listed.status_code == 200
    (item,) = listed.json()["data"]
    assert item["hostname"] == HOST and item["queues"] == ["runyard.small-1x"]
    assert item["online"] is True and item["draining"] is False and item["drainingSince"] is None
    assert api.get(f"/api/v1/workers/{HOST}").json() == item


def test_a_production_key_drains_and_undrains_and_both_are_audited_as_the_key(prod_api: Api, box: Worker) -> None:
    drained = prod_api.post(f"/api/v1/workers/{HOST}/drain", {"reason": "kernel upgrade"})
    assert drained.status_code == 200, drained.content
    body = drained.json()
    assert body["draining"] is True and body["drainReason"] == "kernel upgrade"
    assert body["drainedBy"].startswith("api:") and body["drainingSince"]
    assert Worker.objects.get(hostname=HOST).draining
    undrained = prod_api.post(f"/api/v1/workers/{HOST}/undrain")
    assert undrained.status_code == 200 and undrained.json()["draining"] is False
    actions = list(AuditEntry.objects.order_by("id").values_list("action", "username", "reason"))
    assert [(a, r) for a, _, r in actions] == [("worker.drain", "kernel upgrade"), ("worker.undrain", "")]
    assert all(username.startswith("api:") for _, username, _ in actions)


def test_a_key_of_another_kind_of_environment_may_not_drain(api: Api, box: Worker) -> None:
    response = api.post(f"/api/v1/workers/{HOST}/drain")
    assert response.status_code == 403
    assert "production key" in response.json()["error"]
    assert not Worker.objects.get(hostname=HOST).draining and not AuditEntry.objects.exists()


def test_bad_input_names_the_field_and_changes_nothing(prod_api: Api, box: Worker) -> None:
    wrong_type = prod_api.post(f"/api/v1/workers/{HOST}/drain", {"reason": 5})
    assert wrong_type.status_code == 400 and wrong_type.json()["param"] == "reason"
    too_long = prod_api.post(f"/api/v1/workers/{HOST}/drain", {"reason": "x" * 513})
    assert too_long.status_code == 422 and too_long.json()["param"] == "reason"
    nul = prod_api.post("/api/v1/workers/a%00b/drain")
    assert nul.status_code == 400 and nul.json()["param"] == "hostname"
    assert not Worker.objects.get(hostname=HOST).draining and not AuditEntry.objects.exists()


def test_an_unknown_worker_is_not_found(prod_api: Api, api: Api) -> None:
    assert prod_api.post("/api/v1/workers/nobody/drain").status_code == 404
    assert api.get("/api/v1/workers/nobody").status_code == 404
