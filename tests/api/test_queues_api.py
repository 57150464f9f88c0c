"""queues.list / retrieve / pause / resume / overrideConcurrencyLimit / resetConcurrencyLimit
over the wire, in the shapes the official SDK 4.8 parses."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from runs import engine
from runs.models import AuditEntry, Environment, Queue, Run
from runs.states import RunStatus
from tests import factories
from tests.api.conftest import Api

pytestmark = pytest.mark.django_db
NO_OVERRIDE = {"override": None, "overriddenAt": None, "overriddenBy": None}


@pytest.fixture
def limited(dev: Environment) -> Queue:
    """The task queue of "limited" (limit 2), with three runs queued and one admitted."""
    factories.task_definition("limited", concurrency_limit=2)
    for _ in range(4):
        factories.run("limited")
    queue = Queue.objects.get(environment=dev, name="task/limited")
    engine.override_queue_limit(queue_id=queue.pk, limit=1, actor="test")
    engine.admit(now=timezone.now())
    engine.reset_queue_limit(queue_id=queue.pk, actor="test")
    AuditEntry.objects.all().delete()
    return queue


@pytest.fixture
def custom(dev: Environment) -> Queue:
    factories.task_definition("mailer")
    factories.run("mailer", queue="mail/outbox")
    return Queue.objects.get(environment=dev, name="mail/outbox")


def path(name: str) -> str:
    """A queue name as the SDK puts it in the URL: "/" written as %2F, then encoded."""
    from urllib.parse import quote

    return quote(name.replace("/", "%2F"), safe="")


def test_retrieve_by_id_answers_the_v1_queue_item(api: Api, limited: Queue) -> None:
    response = api.get(f"/api/v1/queues/{limited.public_id}?type=id")
    assert response.status_code == 200
    assert response.json() == {
        "id": limited.public_id,
        "name": "limited",
        "type": "task",
        "running": 1,
        "queued": 3,
        "paused": False,
        "concurrencyLimit": 2,
        "concurrency": {"current": 2, "base": 2, **NO_OVERRIDE},
    }


def test_retrieve_by_task_id_and_by_custom_name(api: Api, limited: Queue, custom: Queue) -> None:
    by_task = api.get("/api/v1/queues/limited?type=task").json()
    assert by_task["id"] == limited.public_id
    by_name = api.get(f"/api/v1/queues/{path('mail/outbox')}?type=custom").json()
    assert (by_name["id"], by_name["name"], by_name["type"]) == (custom.public_id, "mail/outbox", "custom")


def test_an_unknown_queue_or_one_of_another_environment_is_a_404(api: Api, prod_api: Api, limited: Queue) -> None:
    assert api.get("/api/v1/queues/nope?type=task").status_code == 404
    assert api.get("/api/v1/queues/queue_999999?type=id").status_code == 404
    assert api.get("/api/v1/queues/queue_abc?type=id").status_code == 404
    assert api.get("/api/v1/queues/queue_99999999999999999999999?type=id").status_code == 404
    assert api.get("/api/v1/queues/queue_%C2%B2?type=id").status_code == 404
    assert prod_api.get(f"/api/v1/queues/{limited.public_id}?type=id").status_code == 404
    assert prod_api.post(f"/api/v1/queues/{limited.public_id}/pause", {"action": "pause"}).status_code == 404
    assert not Queue.objects.get(pk=limited.pk).paused_at


def test_list_is_an_offset_limit_page_of_queues_by_name(api: Api, limited: Queue, custom: Queue) -> None:
    first = api.get("/api/v1/queues?page=1&perPage=1").json()
    assert first["pagination"] == {"currentPage": 1, "totalPages": 2, "count": 2}
    assert [item["name"] for item in first["data"]] == ["mail/outbox"]
    second = api.get("/api/v1/queues?page=2&perPage=1").json()
    assert [item["id"] for item in second["data"]] == [limited.public_id]
    everything = api.get("/api/v1/queues").json()
    assert [item["id"] for item in everything["data"]] == [custom.public_id, limited.public_id]


def test_pause_holds_the_queues_runs_and_resume_lets_them_go(api: Api, limited: Queue) -> None:
    paused = api.post(f"/api/v1/queues/{limited.public_id}/pause", {"type": "id", "action": "pause"})
    assert paused.status_code == 200 and paused.json()["paused"] is True
    Run.objects.filter(status=RunStatus.DEQUEUED).update(status=RunStatus.COMPLETED, finished_at=timezone.now())
    assert engine.admit(now=timezone.now()) == 0
    resumed = api.post("/api/v1/queues/limited/pause", {"type": "task", "action": "resume"})
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    assert engine.admit(now=timezone.now()) == 2


def test_override_and_reset_answer_the_queue_with_its_limits(api: Api, limited: Queue) -> None:
    url = f"/api/v1/queues/{limited.public_id}/concurrency"
    overridden = api.post(f"{url}/override", {"type": "id", "concurrencyLimit": 5}).json()
    concurrency = overridden["concurrency"]
    assert (overridden["concurrencyLimit"], concurrency["current"], concurrency["base"]) == (5, 5, 2)
    assert concurrency["override"] == 5 and concurrency["overriddenAt"] is not None
    assert concurrency["overriddenBy"] is None  # the reference's null for an API override
    reset = api.post(f"{url}/reset", {"type": "id"}).json()
    assert reset["concurrencyLimit"] == 2
    assert reset["concurrency"] == {"current": 2, "base": 2, **NO_OVERRIDE}


def test_an_override_by_a_dashboard_user_names_them(api: Api, limited: Queue) -> None:
    engine.override_queue_limit(queue_id=limited.pk, limit=3, actor="user:alice")
    assert api.get(f"/api/v1/queues/{limited.public_id}").json()["concurrency"]["overriddenBy"] == "alice"


def test_each_api_action_is_audited_once_as_the_api_key(api: Api, limited: Queue) -> None:
    api.post(f"/api/v1/queues/{limited.public_id}/pause", {"type": "id", "action": "pause"})
    api.post(f"/api/v1/queues/{limited.public_id}/pause", {"type": "id", "action": "resume"})
    api.post(f"/api/v1/queues/{limited.public_id}/concurrency/override", {"type": "id", "concurrencyLimit": 3})
    api.post(f"/api/v1/queues/{limited.public_id}/concurrency/reset", {"type": "id"})
    entries = list(AuditEntry.objects.order_by("id").values_list("action", "username", "target"))
    actions = ["queue.pause", "queue.resume", "queue.limit_override", "queue.limit_reset"]
    assert [action for action, *_ in entries] == actions
    assert all(user.startswith("api:") and target == limited.public_id for _, user, target in entries)


@pytest.mark.parametrize(
    ("suffix", "body", "status", "field"),
    [
        ("/pause", {"type": "id", "action": "stop"}, 400, "action"),
        ("/pause", {"type": "id"}, 400, "action"),
        ("/pause", {"type": "queue", "action": "pause"}, 400, "type"),
        ("/concurrency/override", {"type": "id"}, 400, "concurrencyLimit"),
        ("/concurrency/override", {"type": "id", "concurrencyLimit": "5"}, 400, "concurrencyLimit"),
        ("/concurrency/override", {"type": "id", "concurrencyLimit": True}, 400, "concurrencyLimit"),
        ("/concurrency/override", {"type": "id", "concurrencyLimit": 2.5}, 400, "concurrencyLimit"),
        ("/concurrency/override", {"type": "id", "concurrencyLimit": -1}, 422, "concurrencyLimit"),
        ("/concurrency/override", {"type": "id", "concurrencyLimit": 100_001}, 422, "concurrencyLimit"),
        ("/concurrency/reset", {"type": 7}, 400, "type"),
    ],
)
def test_bad_input_names_the_field_and_changes_nothing(
    api: Api, limited: Queue, suffix: str, body: dict[str, Any], status: int, field: str
) -> None:
    response = api.post(f"/api/v1/queues/{limited.public_id}{suffix}", body)
    assert response.status_code == status and response.json()["param"] == field
    assert field in response.json()["error"]
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize(
    "query", ["page=0", "page=x", "page=%C2%B2", "page=21696483490120425472", "perPage=0", "perPage=101", "perPage=-3"]
)
def test_a_bad_page_names_the_parameter(api: Api, limited: Queue, query: str) -> None:
    response = api.get(f"/api/v1/queues?{query}")
    assert response.status_code == 400 and response.json()["param"] == query.split("=")[0]


def test_a_bad_type_in_the_query_names_it(api: Api, limited: Queue) -> None:
    response = api.get("/api/v1/queues/limited?type=name")
    assert response.status_code == 400 and response.json()["param"] == "type"


def test_queues_need_an_api_key(client: Any, limited: Queue) -> None:
    assert client.get("/api/v1/queues").status_code == 401
    assert client.post(f"/api/v1/queues/{limited.public_id}/pause", {"action": "pause"}).status_code == 401
