"""runs.cancel and runs.reschedule over the wire protocol (reference 3.6, 3.7)."""

from __future__ import annotations

import pytest

from runs import engine
from runs.models import Run, RunEvent
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def hello_world(db):
    factories.task_definition("hello-world")


def delayed_run(api, delay="1h"):
    body = {"payload": '{"json":{}}', "options": {"payloadType": "application/super+json", "delay": delay}}
    return api.trigger(body=body).json()["id"]


def test_cancel_answers_the_id_and_the_run_is_canceled_by_the_api_key(api):
    run_id = delayed_run(api)
    response = api.post(f"/api/v2/runs/{run_id}/cancel", raw="")
    assert response.status_code == 200 and response.json() == {"id": run_id}
    run = Run.objects.get(pk=run_id)
    assert run.status == "CANCELED" and run.finished_at is not None
    assert RunEvent.objects.filter(run=run, to_status="CANCELED").get().actor.startswith("api:")


def test_canceling_a_final_run_is_a_harmless_200(api):
    run_id = delayed_run(api)
    api.post(f"/api/v2/runs/{run_id}/cancel", raw="")
    again = api.post(f"/api/v2/runs/{run_id}/cancel", raw="")
    assert again.status_code == 200 and again.json() == {"id": run_id}
    assert RunEvent.objects.filter(run_id=run_id, to_status="CANCELED").count() == 1


def test_cancel_of_an_unknown_or_foreign_run_is_404(api, prod):
    assert api.post("/api/v2/runs/run_nope/cancel", raw="").status_code == 404
    foreign = factories.run(env="prod")
    assert api.post(f"/api/v2/runs/{foreign.id}/cancel", raw="").status_code == 404
    assert Run.objects.get(pk=foreign.id).status == "QUEUED"


def test_reschedule_moves_a_delayed_run_and_answers_the_whole_run(api):
    run_id = delayed_run(api)
    response = api.post(f"/api/v1/runs/{run_id}/reschedule", {"delay": "2030-06-01T10:00:00Z"})
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == run_id and body["status"] == "DELAYED"
    assert body["delayedUntil"].startswith("2030-06-01T10:00:00")
    assert "relatedRuns" in body and "taskIdentifier" in body


def test_reschedule_takes_a_duration(api):
    run_id = delayed_run(api)
    before = Run.objects.get(pk=run_id).delay_until
    api.post(f"/api/v1/runs/{run_id}/reschedule", {"delay": "2h"})
    assert Run.objects.get(pk=run_id).delay_until > before


def test_rescheduling_a_run_that_is_not_delayed_is_a_400(api):
    run_id = api.trigger().json()["id"]
    response = api.post(f"/api/v1/runs/{run_id}/reschedule", {"delay": "1h"})
    assert response.status_code == 400
    assert response.json() == {"error": "Cannot reschedule a run that is not delayed"}


@pytest.mark.parametrize("delay", ["2001-01-01T00:00:00Z", "later", None])
def test_an_invalid_reschedule_delay_is_a_400_naming_it(api, delay):
    run_id = delayed_run(api)
    response = api.post(f"/api/v1/runs/{run_id}/reschedule", {"delay": delay})
    assert response.status_code == 400
    assert response.json()["error"].startswith("Invalid delay")


def test_an_executing_run_is_canceled_and_never_completes_afterwards(api):
    run_id = api.trigger().json()["id"]
    engine.admit(now=Run.objects.get(pk=run_id).created_at)
    attempt = engine.start_attempt(run_id=run_id, worker="w")
    assert attempt is not None
    assert api.post(f"/api/v2/runs/{run_id}/cancel", raw="").status_code == 200
    assert engine.complete_attempt(run_id=run_id, attempt=attempt.number, output="", output_type="") is None
    assert Run.objects.get(pk=run_id).status == "CANCELED"
