"""Pausing a task or the key's environment over the REST API (Runyard's own endpoints)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from runs import engine
from runs.models import AuditEntry, Environment, Run, TaskPause
from runs.states import RunStatus
from tests import factories
from tests.api.conftest import Api

pytestmark = pytest.mark.django_db


@pytest.fixture
def held(dev: Environment) -> list[Run]:
    return [factories.run("mailer"), factories.run("mailer")]


def test_pausing_a_task_answers_its_pause_with_who_since_when_and_the_runs_it_holds(api: Api, held: list[Run]) -> None:
    later = (timezone.now() + timedelta(hours=1)).replace(microsecond=0)
    response = api.post("/api/v1/tasks/mailer/pause", {"reason": "smtp down", "resumeAt": later.isoformat()})
    assert response.status_code == 200
    body = response.json()
    assert body["task"] == "mailer" and body["paused"] is True and body["heldRuns"] == 2
    assert body["reason"] == "smtp down" and body["resumeAt"] == later.isoformat()
    assert body["pausedBy"].startswith("api:tr_dev_") and "pausedAt" in body
    assert api.get("/api/v1/tasks/mailer/pause").json() == body
    entry = AuditEntry.objects.get(action="task.pause")
    assert (entry.target, entry.reason, entry.username) == ("task:mailer", "smtp down", body["pausedBy"])


def test_resuming_a_task_answers_it_unpaused(api: Api, held: list[Run]) -> None:
    api.post("/api/v1/tasks/mailer/pause")
    response = api.post("/api/v1/tasks/mailer/resume", {"reason": "fixed"})
    assert response.status_code == 200 and response.json() == {"task": "mailer", "paused": False}
    assert AuditEntry.objects.filter(action="task.resume", reason="fixed").exists()


def test_pausing_the_environment_holds_every_run_of_the_key_environment_only(
    api: Api, prod_api: Api, held: list[Run]
) -> None:
    body = api.post("/api/v1/environment/pause", {"reason": "freeze"}).json()
    assert (body["environment"], body["paused"], body["heldRuns"], body["reason"]) == ("dev", True, 2, "freeze")
    assert "resumeAt" not in body
    assert prod_api.get("/api/v1/environment/pause").json() == {"environment": "prod", "paused": False}
    assert api.post("/api/v1/environment/resume").json() == {"environment": "dev", "paused": False}
    assert list(AuditEntry.objects.order_by("id").values_list("action", flat=True)) == [
        "environment.pause",
        "environment.resume",
    ]


def test_a_task_paused_in_one_environment_is_not_paused_in_another(api: Api, prod_api: Api, held: list[Run]) -> None:
    api.post("/api/v1/tasks/mailer/pause")
    assert prod_api.get("/api/v1/tasks/mailer/pause").json() == {"task": "mailer", "paused": False}


@pytest.mark.parametrize(
    ("url", "body", "status", "field"),
    [
        ("/api/v1/tasks/mailer/pause", {"reason": "x" * 513}, 422, "reason"),
        ("/api/v1/tasks/mailer/pause", {"reason": 7}, 400, "reason"),
        ("/api/v1/tasks/mailer/pause", {"resumeAt": "tomorrow"}, 400, "resumeAt"),
        ("/api/v1/tasks/mailer/pause", {"resumeAt": "2026-13-40T99:00:00Z"}, 400, "resumeAt"),
        ("/api/v1/tasks/mailer/pause", {"resumeAt": 1234}, 400, "resumeAt"),
        ("/api/v1/tasks/mailer/pause", {"resumeAt": "2020-01-01T00:00:00Z"}, 422, "resumeAt"),
        ("/api/v1/environment/pause", {"resumeAt": "2020-01-01T00:00:00Z"}, 422, "resumeAt"),
        ("/api/v1/environment/pause", {"reason": "x" * 513}, 422, "reason"),
        ("/api/v1/environment/resume", {"reason": ["no"]}, 400, "reason"),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_changes_nothing(
    api: Api, held: list[Run], dev: Environment, url: str, body: dict[str, object], status: int, field: str
) -> None:
    response = api.post(url, body)
    assert response.status_code == status
    assert field in response.json()["error"]
    dev.refresh_from_db()
    assert dev.paused_at is None and not TaskPause.objects.exists() and not AuditEntry.objects.exists()


def test_an_unknown_task_is_a_404(api: Api, dev: Environment) -> None:
    assert api.get("/api/v1/tasks/nope/pause").status_code == 404
    assert api.post("/api/v1/tasks/nope/pause").status_code == 404
    assert api.post("/api/v1/tasks/nope/resume").status_code == 404
    assert not TaskPause.objects.exists()


def test_a_task_id_with_a_slash_is_paused_by_its_encoded_id(api: Api, dev: Environment) -> None:
    factories.run("emails/send")
    assert api.post("/api/v1/tasks/emails%2Fsend/pause").json()["task"] == "emails/send"
    assert TaskPause.objects.get().task_id == "emails/send"


def test_the_paused_task_runs_stay_queued(api: Api, held: list[Run]) -> None:
    api.post("/api/v1/tasks/mailer/pause")
    engine.admit(now=timezone.now())
    assert {Run.objects.get(pk=run.pk).status for run in held} == {RunStatus.QUEUED}
